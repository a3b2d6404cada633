// Runs the real `openssl` CLI on PEM text, through files in a fresh temp dir (removed after
// each call). Shared by every test that checks certificates with openssl.
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

type Pems = string | readonly string[];

function joinPems(p: Pems): string {
  return typeof p === 'string' ? p : p.join('');
}

/** A fresh temp dir; call the returned function to remove it. */
export function makeTempDir(prefix = 'castellan-test-'): { dir: string; remove: () => void } {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  return { dir, remove: () => rmSync(dir, { recursive: true, force: true }) };
}

/** Runs openssl with `args`; returns stdout, or throws with stderr when it exits non-zero. */
export function openssl(args: readonly string[], input?: string | Uint8Array): string {
  return execFileSync('openssl', args, {
    input,
    encoding: 'utf8',
    stdio: ['pipe', 'pipe', 'pipe'],
  });
}

/** Like openssl() for binary output (e.g. `-outform DER`). */
export function opensslBinary(args: readonly string[], input?: string | Uint8Array): Buffer {
  return execFileSync('openssl', args, { input, stdio: ['pipe', 'pipe', 'pipe'] });
}

export interface VerifyOptions {
  /** Trusted root(s), PEM (one string or several). */
  root: Pems;
  /** Intermediates that are not trusted, PEM. */
  untrusted?: Pems;
  /** The certificate to verify, PEM. */
  leaf: string;
  /** Adds -x509_strict. Default true. */
  strict?: boolean;
  /** e.g. 'sslserver', 'sslclient'. */
  purpose?: string;
  /** Verification time (openssl -attime). */
  at?: Date;
}

export interface VerifyResult {
  ok: boolean;
  /** stdout + stderr, for assertion messages. */
  output: string;
}

/** `openssl verify` of a leaf against roots (+ untrusted intermediates). Never throws. */
export function opensslVerify(o: VerifyOptions): VerifyResult {
  const t = makeTempDir('castellan-verify-');
  try {
    const rootFile = join(t.dir, 'root.pem');
    const leafFile = join(t.dir, 'leaf.pem');
    writeFileSync(rootFile, joinPems(o.root));
    writeFileSync(leafFile, o.leaf);
    const args = ['verify', '-CAfile', rootFile];
    if (o.strict !== false) args.push('-x509_strict');
    if (o.purpose) args.push('-purpose', o.purpose);
    if (o.at) args.push('-attime', String(Math.floor(o.at.getTime() / 1000)));
    if (o.untrusted !== undefined && joinPems(o.untrusted).trim() !== '') {
      const untrustedFile = join(t.dir, 'untrusted.pem');
      writeFileSync(untrustedFile, joinPems(o.untrusted));
      args.push('-untrusted', untrustedFile);
    }
    args.push(leafFile);
    const r = spawnSync('openssl', args, { encoding: 'utf8' });
    const output = `${r.stdout}${r.stderr}`;
    return { ok: r.status === 0 && /: OK\s*$/.test(r.stdout), output };
  } finally {
    t.remove();
  }
}

/** `openssl x509 -text -noout` of one certificate PEM. */
export function opensslText(pem: string): string {
  return openssl(['x509', '-text', '-noout'], pem);
}

/**
 * The extensions section of `openssl x509 -text`, as { name: { critical, value } }, where
 * value is the (trimmed) text openssl prints under the extension name.
 */
export function opensslExtensions(pem: string): Map<string, { critical: boolean; value: string }> {
  const text = opensslText(pem);
  const start = text.indexOf('X509v3 extensions:');
  const out = new Map<string, { critical: boolean; value: string }>();
  if (start < 0) return out;
  const end = text.indexOf('Signature Algorithm:', start);
  const lines = text
    .slice(start, end < 0 ? undefined : end)
    .split('\n')
    .slice(1);
  let current: { name: string; critical: boolean; value: string[] } | undefined;
  const flush = (): void => {
    if (current)
      out.set(current.name, { critical: current.critical, value: current.value.join('\n') });
  };
  for (const line of lines) {
    const header = /^ {12}(\S.*?):( critical)?\s*$/.exec(line);
    if (header) {
      flush();
      current = { name: header[1]!, critical: header[2] !== undefined, value: [] };
    } else if (current && line.trim() !== '') {
      current.value.push(line.trim());
    }
  }
  flush();
  return out;
}
