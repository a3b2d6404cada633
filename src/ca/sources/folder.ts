import { readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import type { Clock } from '../../clock.js';
import { CastellanError } from '../../errors.js';
import type { KeyCertBundle } from '../key-cert-bundle.js';
import {
  bundleFromCacertsWithKeys,
  CACERTS_FILE_NAMES,
  type CacertsKeyOptions,
} from '../cacerts-layout.js';

/** Reads whichever plugged-in CA files exist in `dir` (file name → text). */
export async function readCacertsFolder(dir: string): Promise<Map<string, string>> {
  // A mistyped path must not read as "a folder with no CA files in it".
  const isDir = await stat(dir).then(
    (s) => s.isDirectory(),
    () => false,
  );
  if (!isDir) {
    throw new CastellanError('invalid-argument', 'no such folder', { subject: dir });
  }
  const files = new Map<string, string>();
  for (const name of CACERTS_FILE_NAMES) {
    try {
      files.set(name, await readFile(join(dir, name), 'utf8'));
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') continue;
      throw new CastellanError(
        'internal',
        `cannot read ${join(dir, name)}: ${(e as Error).message}`,
        { cause: e },
      );
    }
  }
  return files;
}

/** What a folder's CA set is compared by: every CA file's name and content. */
export function cacertsFingerprint(files: ReadonlyMap<string, string>): string {
  return JSON.stringify([...files.entries()].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)));
}

/** Options of a folder load: the key in a token, and whether `ca-crl.pem` is read. */
export type CacertsFolderKeys = CacertsKeyOptions & {
  readonly keyUri?: string | undefined;
  readonly readCrl?: boolean | undefined;
};

/**
 * Loads a plugged-in CA from a folder (Istio's layout or kubernetes.io/tls). Returns undefined
 * when the folder holds none of the files; a partial set or a bad set is an error naming the
 * file — never a silent fallback to self-signed. The key is `ca-key.pem` (`tls.key`), or in a
 * PKCS#11 token named by the folder's `ca-key.uri` or by `keys.keyUri`, opened through
 * `keys.signers` and probed against `ca-cert.pem` before the set is accepted. `readCrl: false`
 * ignores `ca-crl.pem`.
 */
export async function loadCacertsFolder(
  dir: string,
  clock: Clock,
  keys: CacertsFolderKeys = {},
): Promise<KeyCertBundle | undefined> {
  return (await loadCacertsFolderRead(dir, clock, keys)).bundle;
}

/**
 * loadCacertsFolder, with the fingerprint of the very files the bundle was built from: a
 * watcher started after this load compares the folder with what is served, not with whatever
 * the folder holds at its first poll (a set replaced between the two would otherwise never be
 * noticed).
 */
export async function loadCacertsFolderRead(
  dir: string,
  clock: Clock,
  keys: CacertsFolderKeys = {},
): Promise<{ readonly bundle: KeyCertBundle | undefined; readonly fingerprint: string }> {
  const files = await readCacertsFolder(dir);
  const bundle = await bundleFromCacertsFolderFiles(dir, files, clock, keys);
  return { bundle, fingerprint: cacertsFingerprint(files) };
}

/** The CA set of files already read from `dir` (readCacertsFolder), as loadCacertsFolder. */
export function bundleFromCacertsFolderFiles(
  dir: string,
  files: ReadonlyMap<string, string>,
  clock: Clock,
  keys: CacertsFolderKeys = {},
): Promise<KeyCertBundle | undefined> {
  return bundleFromCacertsWithKeys(
    files,
    {
      source: `cacerts-dir:${dir}`,
      where: dir,
      keyUri: keys.keyUri,
      signers: keys.signers,
      readCrl: keys.readCrl,
    },
    clock,
  );
}
