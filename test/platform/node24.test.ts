// The tests whose outcome depends on the runtime, run again on Node 24: the container image's
// runtime (Dockerfile), while the machines and the rest of the suite run Node 20.
import { passesOnNode, RUNTIME_SENSITIVE } from './support/other-node.js';

passesOnNode(
  24,
  'the runtime-sensitive tests pass on Node 24, the image runtime',
  RUNTIME_SENSITIVE,
  40,
);
