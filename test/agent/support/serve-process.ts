// Runs the real `castellan serve` (compiled CLI) for CLI tests: a fresh data dir, port 0.
import { execFileSync } from 'node:child_process';
import { join } from 'node:path';
import { cliPath } from '../../support/paths.js';
import {
  runCli as runCliProcess,
  startServe as startServeProcess,
} from '../../server/support/serve-process.js';

export interface ServeProcess {
  readonly address: string;
  readonly dataDir: string;
  token(namespace: string, serviceAccount: string): string;
  stop(): Promise<void>;
}

/** `castellan serve` on a fresh data dir (test/server/support/serve-process.ts starts it). */
export async function startServe(dataDir: string, extra: string[] = []): Promise<ServeProcess> {
  const serve = await startServeProcess(['--data-dir', dataDir, '--log-level', 'warn', ...extra]);
  return {
    address: `127.0.0.1:${serve.grpcPort}`,
    dataDir,
    token: (ns, sa) =>
      execFileSync(
        process.execPath,
        [cliPath, 'token', '--namespace', ns, '--service-account', sa, '--data-dir', dataDir],
        { encoding: 'utf8' },
      ),
    stop: async () => {
      if (serve.child.exitCode !== null) return;
      serve.child.kill('SIGTERM');
      await serve.exited;
    },
  };
}

export interface CliResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs the compiled CLI to completion (killed after `timeoutMs`). */
export function runCli(args: string[], timeoutMs = 30_000): Promise<CliResult> {
  return runCliProcess(args, undefined, timeoutMs);
}

export const dataFile = (serve: ServeProcess, f: string): string => join(serve.dataDir, f);
