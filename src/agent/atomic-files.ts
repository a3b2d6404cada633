import { randomBytes } from 'node:crypto';
import {
  lstat,
  mkdir,
  readFile,
  readdir,
  readlink,
  realpath,
  rename,
  rm,
  symlink,
} from 'node:fs/promises';
import { join } from 'node:path';
import { syncFolder, writeFileDurably } from '../atomic-write.js';
import type { Clock } from '../clock.js';
import { CastellanError } from '../errors.js';

export const CERT_CHAIN_FILE = 'cert-chain.pem';
export const KEY_FILE = 'key.pem';
export const ROOT_CERT_FILE = 'root-cert.pem';
/** The link that names the current version directory (the layout of Kubernetes volumes). */
export const DATA_LINK = '..data';

export interface CertificateFiles {
  readonly certChainPem: string;
  readonly keyPem: string;
  readonly rootCertPem: string;
}

const FILES: ReadonlyArray<{ name: string; field: keyof CertificateFiles; mode: number }> = [
  { name: CERT_CHAIN_FILE, field: 'certChainPem', mode: 0o644 },
  { name: KEY_FILE, field: 'keyPem', mode: 0o600 },
  { name: ROOT_CERT_FILE, field: 'rootCertPem', mode: 0o644 },
];

/*
 * The layout, and why. Two files cannot be replaced together by renames alone: whatever the
 * order, a reader that opens the certificate, then the key, can land between the two renames
 * and pair a new certificate with an old key. So the files are never replaced one by one:
 *
 *   out/..2026-…-a1b2c3/{cert-chain.pem,key.pem,root-cert.pem}   one complete version
 *   out/..data          -> ..2026-…-a1b2c3                       swapped by one rename
 *   out/cert-chain.pem  -> ..data/cert-chain.pem                 stable names, made once
 *   out/key.pem         -> ..data/key.pem
 *   out/root-cert.pem   -> ..data/root-cert.pem
 *
 * Invariant: `..data` always names a version directory whose three files are complete
 * (written, fsynced, closed before the swap) and whose key matches its certificate (the
 * agent checks the response against its key before writing). A version is never modified
 * after the swap. Consequences for readers:
 *  - every single file read sees a whole file of one version (never a half-written one);
 *  - a reader that resolves `..data` once and reads the files of that directory always gets
 *    a matching pair (readCertificateFiles does this); the previous version is kept until
 *    the next swap, so a reader that resolved just before a swap can finish its reads;
 *  - a reader that opens `cert-chain.pem` and `key.pem` by their top-level names can only be
 *    torn by a swap landing between its two opens; it can detect that by reading the
 *    certificate again after the key and retrying when it changed.
 * Tools that understand Kubernetes' atomic writer (Envoy's watched_directory, kubelet-style
 * watchers) already handle this layout.
 */

function versionName(now: number): string {
  const stamp = new Date(now).toISOString().replace(/[:.]/g, '-');
  return `..${stamp}-${randomBytes(4).toString('hex')}`;
}

/** Replaces `path` with a symlink to `target` in one rename (never a moment without it). */
async function replaceWithSymlink(dir: string, name: string, target: string): Promise<void> {
  const tmp = join(dir, `.${name}.tmp-${randomBytes(4).toString('hex')}`);
  await symlink(target, tmp);
  try {
    await rename(tmp, join(dir, name));
  } catch (e) {
    await rm(tmp, { force: true });
    throw e;
  }
}

async function currentVersion(dir: string): Promise<string | undefined> {
  try {
    return await readlink(join(dir, DATA_LINK));
  } catch {
    return undefined;
  }
}

/** Files that make a folder a CA's (a cacerts folder, `ca root`'s): never written over. */
const CA_FILES = ['ca-key.pem', 'ca-cert.pem', 'root-key.pem'];

/**
 * What may already be in a folder certificates are written to:
 * - `'ours'`: only what castellan wrote there (the `..data` links), as `castellan request`
 *   expects: a folder holding files of the same names (a cacerts folder given by mistake, a
 *   hand-made key) is refused, not written over;
 * - `'provisioned'`: also a workload certificate and key put there by hand, which the agent
 *   renews over mTLS and then replaces — but not a CA's folder.
 */
export type ExistingFiles = 'ours' | 'provisioned';

/**
 * Refuses (`invalid-argument`, before anything is written or requested) a folder whose
 * cert-chain.pem, key.pem or root-cert.pem were not written by castellan and may not be
 * replaced (ExistingFiles). Found by a new user: `castellan request --out` pointed at a cacerts
 * folder replaced its cert-chain.pem and root-cert.pem, and that CA no longer loaded.
 */
export async function checkCertificateFolder(dir: string, existing: ExistingFiles): Promise<void> {
  const foreign: string[] = [];
  for (const f of FILES) {
    const path = join(dir, f.name);
    // Absent (or unreadable: the write reports that): nothing to keep.
    const st = await lstat(path).catch(() => undefined);
    if (!st) continue;
    // Ours: a link to ..data. Anything else (a file, another link) is not.
    const ours = st.isSymbolicLink() && (await readlink(path)) === join(DATA_LINK, f.name);
    if (!ours) foreign.push(f.name);
  }
  // A CA's folder is refused whatever its three files look like: a copy of a mounted cacerts
  // Secret has `..data` links of its own, and a write would prune the version its CA key
  // lives in (found in review).
  const caFiles: string[] = [];
  for (const name of CA_FILES) {
    const present = await lstat(join(dir, name)).then(
      () => true,
      () => false,
    );
    if (present) caFiles.push(name);
  }
  if (caFiles.length > 0) {
    throw new CastellanError(
      'invalid-argument',
      `holds a CA (${caFiles.join(', ')}): certificates are never written into a CA's folder (choose another folder)`,
      { subject: dir },
    );
  }
  if (foreign.length === 0) return;
  if (existing === 'provisioned' && foreign.includes(KEY_FILE)) return;
  throw new CastellanError(
    'invalid-argument',
    `would replace ${foreign.join(', ')}, which castellan did not write here: refusing (choose another folder, or move them away first)`,
    { subject: dir },
  );
}

/**
 * Writes a certificate, its key and the trust bundle into `dir` as one new version and
 * makes it current in a single rename. Returns the version directory's name. A folder holding
 * files it may not replace is refused first (checkCertificateFolder).
 */
export async function writeCertificateFiles(
  dir: string,
  files: CertificateFiles,
  /** Stamps the version directory's name. */
  clock: Clock,
  existing: ExistingFiles = 'ours',
): Promise<string> {
  await checkCertificateFolder(dir, existing);
  try {
    await mkdir(dir, { recursive: true, mode: 0o755 });
    const previous = await currentVersion(dir);
    const version = versionName(clock.now());
    const versionDir = join(dir, version);
    await mkdir(versionDir, { mode: 0o755 });
    for (const f of FILES) await writeFileDurably(join(versionDir, f.name), files[f.field], f.mode);
    await syncFolder(versionDir);

    await replaceWithSymlink(dir, DATA_LINK, version);
    for (const f of FILES) {
      const target = join(DATA_LINK, f.name);
      const existing = await readlink(join(dir, f.name)).catch(() => undefined);
      if (existing !== target) await replaceWithSymlink(dir, f.name, target);
    }
    await syncFolder(dir);

    // Keep the version just replaced (a reader may have resolved ..data a moment ago);
    // anything older has had a full rotation period to be read.
    for (const entry of await readdir(dir)) {
      if (
        entry.startsWith('..') &&
        entry !== DATA_LINK &&
        entry !== version &&
        entry !== previous
      ) {
        await rm(join(dir, entry), { recursive: true, force: true });
      }
    }
    return version;
  } catch (e) {
    throw new CastellanError(
      'internal',
      `cannot write certificate files: ${(e as NodeJS.ErrnoException).code ?? String(e)}`,
      { subject: dir, cause: e },
    );
  }
}

/**
 * Reads the current certificate, key and trust bundle as one consistent version: `..data` is
 * resolved once and the three files read from that directory. A directory without `..data`
 * (files provisioned by hand) is read by the plain names. Returns undefined when the files
 * are not there.
 */
export async function readCertificateFiles(dir: string): Promise<CertificateFiles | undefined> {
  for (let attempt = 0; attempt < 3; attempt++) {
    let base = dir;
    try {
      base = await realpath(join(dir, DATA_LINK));
    } catch {
      base = dir;
    }
    try {
      const [certChainPem, keyPem, rootCertPem] = await Promise.all(
        FILES.map((f) => readFile(join(base, f.name), 'utf8')),
      );
      return {
        certChainPem: certChainPem as string,
        keyPem: keyPem as string,
        rootCertPem: rootCertPem as string,
      };
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'ENOENT') {
        throw new CastellanError(
          'internal',
          `cannot read certificate files: ${(e as NodeJS.ErrnoException).code ?? String(e)}`,
          { subject: dir, cause: e },
        );
      }
      // The version we resolved was pruned while we read (two swaps meanwhile): try again.
      if (base === dir) return undefined;
    }
  }
  return undefined;
}
