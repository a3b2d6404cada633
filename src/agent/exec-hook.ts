import { spawn } from 'node:child_process';

export interface ExecResult {
  /** Exit code, or undefined when the command was killed (signal or timeout). */
  readonly code: number | undefined;
  readonly signal: NodeJS.Signals | undefined;
  readonly timedOut: boolean;
}

/**
 * Runs the `--exec` command after new files are in place (e.g. `nginx -s reload`), through
 * /bin/sh like a shell line, with CASTELLAN_CERT_DIR set to the output directory. Its output
 * goes to ours. A command that hangs is killed after `timeoutMs`: the agent must get back to
 * renewing.
 */
export function runExecHook(
  command: string,
  certDir: string,
  timeoutMs = 60_000,
): Promise<ExecResult> {
  return new Promise((resolve) => {
    const child = spawn('/bin/sh', ['-c', command], {
      stdio: ['ignore', 'inherit', 'inherit'],
      env: { ...process.env, CASTELLAN_CERT_DIR: certDir },
    });
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      child.kill('SIGKILL');
    }, timeoutMs);
    child.on('error', () => {
      clearTimeout(timer);
      resolve({ code: 127, signal: undefined, timedOut: false });
    });
    child.on('exit', (code, signal) => {
      clearTimeout(timer);
      resolve({ code: code ?? undefined, signal: signal ?? undefined, timedOut });
    });
  });
}
