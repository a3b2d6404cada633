import { execFileSync } from 'node:child_process';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { protosDir } from './paths.js';

/**
 * Debian's Python, which has `python3-grpcio` (scripts/setup-test-deps.sh); a `python3` earlier
 * on PATH may be a build blind to Debian's packages.
 */
export const PYTHON = '/usr/bin/python3';

/** Compiles istioca_pb2*.py from protos/istioca.proto into `dir` (made if missing) with grpc_tools. */
export function compileIstioCaStubs(dir: string): void {
  mkdirSync(dir, { recursive: true });
  execFileSync(PYTHON, [
    '-m',
    'grpc_tools.protoc',
    `-I${protosDir}`,
    `--python_out=${dir}`,
    `--grpc_python_out=${dir}`,
    join(protosDir, 'istioca.proto'),
  ]);
}
