// Runs the compiled `castellan serve` as a child process (build first: npx tsc -p tsconfig.json).
// The bench (bench/server.ts) starts its servers through here too.
import { waitFor } from '../../support/wait-for.js';
import { spawn, type ChildProcess } from 'node:child_process';
import { cliPath } from '../../support/paths.js';

export interface ServeProcess {
  readonly child: ChildProcess;
  readonly grpcPort: number;
  readonly monitoringPort: number;
  /** The start line printed on stdout (the waiting line, with `acceptWaiting`). */
  readonly startLine: string;
  /** Resolves with the start line once serve serves: at once, unless it started waiting. */
  readonly serving: Promise<string>;
  stderr(): string;
  /** Resolves with the exit code (or the signal name). */
  readonly exited: Promise<number | string>;
  /** SIGTERM, then SIGKILL if it has not exited after `graceMs`; resolves with `exited`. */
  stop(graceMs?: number): Promise<number | string>;
}

/**
 * Starts `castellan serve` on free loopback ports and waits for its start line (at most
 * `timeoutMs`; a serve that does not start in time is killed). `entry` is the script node runs
 * (default: the compiled CLI; bin/castellan.js is the installed command), after `nodeArgs`.
 * `acceptWaiting`: the line serve prints when it starts without a CA will do too (then
 * `grpcPort` is NaN, `monitoringPort` read from it, and `serving` resolves later).
 */
export async function startServe(
  args: string[],
  cwd?: string,
  options: {
    entry?: string;
    env?: NodeJS.ProcessEnv;
    nodeArgs?: readonly string[];
    timeoutMs?: number;
    acceptWaiting?: boolean;
  } = {},
): Promise<ServeProcess> {
  const child = spawn(
    process.execPath,
    [
      ...(options.nodeArgs ?? []),
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
  child.stderr.on('data', (d: Buffer) => (err += d.toString()));
  const exited = new Promise<number | string>((resolve) =>
    child.once('exit', (code, signal) => resolve(code ?? signal ?? -1)),
  );
  const stop = async (graceMs = 5000): Promise<number | string> => {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), graceMs);
      await exited;
      clearTimeout(timer);
    }
    return exited;
  };
  const timeoutMs = options.timeoutMs ?? 20_000;
  const lineOf = (prefix: string): string | undefined =>
    out.split('\n').find((l, i, all) => l.startsWith(prefix) && i < all.length - 1);
  let markServing: (line: string) => void = () => {};
  const serving = new Promise<string>((resolve) => (markServing = resolve));
  child.stdout.on('data', (d: Buffer) => {
    out += d.toString();
    const line = lineOf('castellan: CA serving on');
    if (line) markServing(line);
  });
  const startLine = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => {
      reject(new Error(`serve did not start in ${timeoutMs} ms:\n${err}`));
      child.kill('SIGKILL');
    }, timeoutMs);
    child.stdout.on('data', () => {
      const line =
        lineOf('castellan: CA serving on') ??
        (options.acceptWaiting ? lineOf('castellan: waiting for a CA') : undefined);
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
  const monitoringPort = Number(/(?:monitoring|\/ready on) [^:]+:(\d+)/.exec(startLine)?.[1]);
  return { child, grpcPort, monitoringPort, startLine, serving, stderr: () => err, exited, stop };
}

/**
 * Polls GET /ready on the server's monitoring port until it answers 200; false if it has not
 * within `timeoutMs`, or the server has exited. Each request is bounded to a second.
 */
export async function waitForReady(serve: ServeProcess, timeoutMs = 5000): Promise<boolean> {
  const ready = await waitFor(
    '/ready answering 200, or the process exiting',
    async () => {
      const r = await fetch(`http://127.0.0.1:${serve.monitoringPort}/ready`, {
        signal: AbortSignal.timeout(1000),
      }).catch(() => null);
      await r?.body?.cancel();
      if (r?.status === 200) return 'ready';
      const exited = serve.child.exitCode !== null || serve.child.signalCode !== null;
      return exited ? 'exited' : undefined;
    },
    timeoutMs,
  ).catch(() => 'timed out');
  return ready === 'ready';
}

/** The Prometheus text of a serve's GET /metrics (monitoring port). */
export async function scrapeMetrics(monitoringPort: number): Promise<string> {
  const r = await fetch(`http://127.0.0.1:${monitoringPort}/metrics`, {
    signal: AbortSignal.timeout(10_000),
  });
  return r.text();
}

/** Runs `castellan <args>` to completion; killed (code null) if it runs past `timeoutMs`. */
export function runCli(
  args: string[],
  cwd?: string,
  timeoutMs = 60_000,
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
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.once('exit', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}
