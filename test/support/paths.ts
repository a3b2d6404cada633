import { fileURLToPath } from 'node:url';
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';

// Tests run compiled (dist/test/…): find the root by its package.json.
function findRoot(): string {
  let dir = dirname(fileURLToPath(import.meta.url));
  while (!existsSync(join(dir, 'package.json')) || !existsSync(join(dir, 'tsconfig.json'))) {
    const up = dirname(dir);
    if (up === dir) throw new Error('project root not found');
    dir = up;
  }
  return dir;
}

export const projectRoot = findRoot();
export const sharedTestdata = join(projectRoot, '..', 'shared', 'testdata');
export const istioSampleCerts = join(sharedTestdata, 'istio-sample-certs');
/** The compiled CLI entry (build first: `npm run build`); spawn with process.execPath. */
export const cliPath = join(projectRoot, 'dist', 'src', 'cli', 'main.js');
/** The `castellan` command as installed (bin/castellan.js: sizes libuv's pool, then cliPath). */
export const binPath = join(projectRoot, 'bin', 'castellan.js');
export const protosDir = join(projectRoot, 'protos');
