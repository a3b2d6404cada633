import { fileURLToPath } from 'node:url';
import { join } from 'node:path';

// Tests run compiled from dist/test/…; paths are resolved from the project root, not the file.
export const projectRoot = fileURLToPath(new URL('../../../', import.meta.url));
export const sharedTestdata = join(projectRoot, '..', 'shared', 'testdata');
export const istioSampleCerts = join(sharedTestdata, 'istio-sample-certs');
/** The compiled CLI entry; spawn with process.execPath. */
export const cliPath = join(projectRoot, 'dist', 'src', 'cli', 'main.js');
export const protosDir = join(projectRoot, 'protos');
