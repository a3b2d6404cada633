// The runtime-sensitive tests, and the clients that dial the CA by IP address, run again on Node
// 26, the current LTS line (docs/performance.md, "On Node 26"). Node 26 refuses an IP address as
// the TLS server name, which grpc-js sends: the agent and the tests' clients make their own TLS
// credentials (src/agent/tls-channel-credentials.ts) and are held to it here.
// Left out: test/cli/heap-growth, which fails there: Node 26's V8 ignores --heap-growing-percent
// (set at run time or at start), so serve's bound on its old generation does nothing on it.
import { passesOnNode, RUNTIME_SENSITIVE } from './support/other-node.js';

passesOnNode(
  26,
  'the runtime-sensitive tests and the CA clients pass on Node 26',
  [
    ...RUNTIME_SENSITIVE.filter((f) => f !== 'test/cli/heap-growth.test'),
    'test/agent/', // the agent's TLS to the CA, by address and by name
    'test/cli/agent', // castellan agent, a real process
    'test/cli/request', // castellan request
    'test/kube/serve-kube-bundles', // a bundle Watch over TLS to 127.0.0.1
  ],
  80,
);
