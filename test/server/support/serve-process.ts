// Runs the compiled `castellan serve` as a child process (build first: npx tsc -p tsconfig.json).
import { spawn, type ChildProcess } from 'node:child_process';
import { cliPath } from '../../support/paths.js';

export interface ServeProcess {
  readonly child: ChildProcess;
  readonly grpcPort: number;
  readonly monitoringPort: number;
  /** The start line printed on stdout. */
  readonly startLine: string;
  stderr(): string;
  /** Resolves with the exit code (or the signal name). */
  readonly exited: Promise<number | string>;
}

/**
 * Starts `castellan serve` on free loopback ports and waits for its start line. `entry` is the
 * script node runs (default: the compiled CLI; bin/castellan.js is the installed command).
 */
export async function startServe(
  args: string[],
  cwd?: string,
  options: { entry?: string; env?: NodeJS.ProcessEnv } = {},
): Promise<ServeProcess> {
  const child = spawn(
    process.execPath,
    [
      options.entry ?? cliPath,
      'serve',
      '--grpc-addr',
      '127.0.0.1:0',
      '--monitoring-addr',
      '127.0.0.1:0',
      ...args,
    ],
    { cwd, stdio: ['ignore', 'pipe', 'pipe'], ...(options.env ? { env: options.env } : {}) },
  );
  let out = '';
  let err = '';
  child.stderr!.on('data', (d: Buffer) => (err += d.toString()));
  const exited = new Promise<number | string>((resolve) =>
    child.once('exit', (code, signal) => resolve(code ?? signal ?? -1)),
  );
  const startLine = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`serve did not start:\n${err}`)), 20_000);
    child.stdout!.on('data', (d: Buffer) => {
      out += d.toString();
      const line = out.split('\n').find((l) => l.startsWith('castellan: CA serving on'));
      if (line) {
        clearTimeout(timer);
        resolve(line);
      }
    });
    void exited.then((code) => {
      clearTimeout(timer);
      reject(new Error(`serve exited (${code}) before starting:\n${err}`));
    });
  });
  const grpcPort = Number(/serving on [^:]+:(\d+)/.exec(startLine)?.[1]);
  const monitoringPort = Number(/monitoring [^:]+:(\d+)/.exec(startLine)?.[1]);
  return { child, grpcPort, monitoringPort, startLine, stderr: () => err, exited };
}

/** Runs `castellan <args>` to completion. */
export function runCli(
  args: string[],
  cwd?: string,
): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [cliPath, ...args], {
      cwd,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    child.once('exit', (code) => resolve({ code, stdout, stderr }));
  });
}
