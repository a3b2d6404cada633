// Runs the real `castellan serve` (compiled CLI) for CLI tests: a fresh data dir, port 0.
import { join } from 'node:path';
import { DevTokenIssuer } from '../../../src/authn/dev-token-issuer.js';
import {
  runCli as runCliProcess,
  startServe as startServeProcess,
} from '../../server/support/serve-process.js';

export interface ServeProcess {
  readonly address: string;
  readonly dataDir: string;
  /** A development token for `namespace/serviceAccount`, as `castellan token` prints it. */
  token(namespace: string, serviceAccount: string): Promise<string>;
  stop(): Promise<void>;
}

/** `castellan serve` on a fresh data dir (test/server/support/serve-process.ts starts it). */
export async function startServe(dataDir: string, extra: string[] = []): Promise<ServeProcess> {
  const serve = await startServeProcess(['--data-dir', dataDir, '--log-level', 'warn', ...extra]);
  return {
    address: `127.0.0.1:${serve.grpcPort}`,
    dataDir,
    // Minted here with the data dir's issuer, as `castellan token` does (test/cli/token.test.ts
    // runs the command): a spawned CLI would cost ~0.7 s of CPU per token.
    token: async (ns, sa) => {
      const issuer = await DevTokenIssuer.open(dataDir);
      const ttlMs = 3_600_000; // the command's default
      return `${await issuer.mintToken({ namespace: ns, serviceAccount: sa, ttlMs })}\n`;
    },
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
