import type { KeyObject } from 'node:crypto';
import { link, mkdir, readFile, readdir, rename, rm, rmdir, unlink } from 'node:fs/promises';
import { join } from 'node:path';
import { X509Certificate as PeculiarX509Certificate, type X509Certificate } from '@peculiar/x509';
import { syncFolder, temporaryPathFor, writeFileDurably } from '../../atomic-write.js';
import type { Clock } from '../../clock.js';
import { CastellanError } from '../../errors.js';
import { issueCertificate } from '../../pki/issue.js';
import { pemBlocks } from '../../pki/pem.js';
import type { CaKeyType } from '../../pki/key-type.js';
import { generateKeyPair, privateKeyToPem } from '../../pki/keys.js';
import type { SubjectName } from '../../pki/profiles.js';
import { isCaSigner, type SigningKey } from '../../pki/signer.js';
import { validateTrustDomain } from '../../pki/spiffe.js';
import type { KeyCertBundle } from '../key-cert-bundle.js';
import { buildKeyCertBundle, certificatePem } from '../build-key-cert-bundle.js';
import { NOT_BEFORE_BACKDATE_MS } from '../issue-workload.js';

/** Ten years, Istio's self-signed root lifetime. */
export const DEFAULT_SELF_SIGNED_TTL_MS = 10 * 365 * 24 * 3_600_000;

/**
 * ECDSA P-256 by default: signing a leaf costs a small fraction of an RSA-2048 signature, and certificates
 * and chains are smaller; every Istio/Envoy version verifies it. Istio itself only makes
 * RSA-2048 self-signed roots, which stays available as an option.
 */
export const DEFAULT_SELF_SIGNED_KEY_TYPE: CaKeyType = 'ec-p256';

const CERT = 'ca-cert.pem';
const KEY = 'ca-key.pem';
const ROOT = 'root-cert.pem';

export interface SelfSignedOptions {
  readonly dataDir: string;
  readonly trustDomain: string;
  readonly keyType?: CaKeyType;
  readonly ttlMs?: number;
  /**
   * Told when the data dir's root-cert.pem held another CA's roots, left by a run on a
   * plugged-in CA (selfSignedRoots): the message says what was set aside.
   */
  readonly onForeignRoots?: ((message: string) => void) | undefined;
}

async function readIfExists(path: string): Promise<string | undefined> {
  try {
    return await readFile(path, 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return undefined;
    throw new CastellanError('internal', `cannot read ${path}: ${(e as Error).message}`, {
      cause: e,
    });
  }
}

/**
 * A self-signed root in the root profile: subject O=<trust domain>. `publicKey` is the key's
 * public half (a signer alone does not give it out); `key` itself when it is a KeyObject.
 */
export async function makeSelfSignedRoot(
  key: SigningKey,
  subject: SubjectName,
  clock: Clock,
  ttlMs: number,
  publicKey?: KeyObject | Uint8Array,
): Promise<X509Certificate> {
  const now = clock.now();
  if (!publicKey && isCaSigner(key)) {
    throw new CastellanError('internal', 'a root signed by a signer needs its public key given');
  }
  return issueCertificate({
    profile: { kind: 'root', subject },
    publicKey: publicKey ?? (key as KeyObject),
    selfKey: key,
    notBefore: new Date(now - NOT_BEFORE_BACKDATE_MS),
    notAfter: new Date(now + ttlMs),
  });
}

/**
 * The self-signed CA used when nothing is plugged in: created once in `dataDir`
 * (`ca-cert.pem`, `ca-key.pem` mode 0600, `root-cert.pem`) and reused on every restart. An
 * existing set is loaded and verified; a half set or a corrupt file is an error, never a
 * reason to make a new root (that would silently break every workload's trust).
 *
 * A new set appears all at once or not at all (issue 15): its files are written into a private
 * staging folder, which is renamed to `.self-signed-ca.ready` (the one atomic commit), and only
 * then moved into place. A start killed before the commit leaves a staging folder the next
 * start removes (src/atomic-write.ts: removeStaleTemporaries) and makes a new set; one killed
 * after it finds the committed set and finishes moving it.
 */
export async function loadOrCreateSelfSignedCa(
  options: SelfSignedOptions,
  clock: Clock,
): Promise<KeyCertBundle> {
  const dir = options.dataDir;
  await finishCommittedSet(dir);
  const existing = await loadInPlaceSet(dir, clock, options.onForeignRoots);
  if (existing) return existing;
  await refuseToReplaceLostRoot(dir);
  const raced = await loadInPlaceSet(dir, clock, options.onForeignRoots);
  if (raced) return raced;
  validateTrustDomain(options.trustDomain);
  const { privateKey } = await generateKeyPair(options.keyType ?? DEFAULT_SELF_SIGNED_KEY_TYPE);
  const root = await makeSelfSignedRoot(
    privateKey,
    [['O', options.trustDomain]],
    clock,
    options.ttlMs ?? DEFAULT_SELF_SIGNED_TTL_MS,
  );
  const certPem = certificatePem(root);
  await mkdir(dir, { recursive: true, mode: 0o700 });
  await commitSet(dir, [
    [KEY, privateKeyToPem(privateKey), 0o600],
    [CERT, certPem, 0o644],
    [ROOT, certPem, 0o644],
  ]);
  await finishCommittedSet(dir);
  // Read back what is on disk: the set just written, or, had another process committed its set
  // first, that one (so both serve the same root).
  const written = await loadInPlaceSet(dir, clock, options.onForeignRoots);
  if (!written) {
    throw new CastellanError('internal', 'the self-signed CA just written is not there', {
      subject: dir,
    });
  }
  return written;
}

/**
 * loadSelfSignedSet, for a start that may meet another process moving its committed set into
 * place (separate processes first-starting on one data dir): the files arrive one link at a
 * time, so a read between two links sees half a set. Half a set is therefore read again once
 * any committed set is finished here too; a half set that stays half is the real error.
 */
async function loadInPlaceSet(
  dir: string,
  clock: Clock,
  onForeignRoots: SelfSignedOptions['onForeignRoots'],
): Promise<KeyCertBundle | undefined> {
  try {
    return await loadSelfSignedSet(dir, clock, onForeignRoots);
  } catch (e) {
    if (!(e instanceof CastellanError) || e.kind !== 'incomplete-ca') throw e;
    await finishCommittedSet(dir);
    return loadSelfSignedSet(dir, clock, onForeignRoots);
  }
}

async function loadSelfSignedSet(
  dir: string,
  clock: Clock,
  onForeignRoots: SelfSignedOptions['onForeignRoots'],
): Promise<KeyCertBundle | undefined> {
  const certPem = await readIfExists(join(dir, CERT));
  const keyPem = await readIfExists(join(dir, KEY));
  if (certPem === undefined && keyPem === undefined) return undefined;
  if (certPem === undefined || keyPem === undefined) {
    const rootPem = await readIfExists(join(dir, ROOT));
    const fix =
      certPem === undefined && rootPem === undefined
        ? // What a start of an earlier version killed between its writes left: no certificate
          // of this key was ever written, so none can have been trusted.
          `; a first start of an earlier version was interrupted here and no root of this key was ever written: remove ${KEY} to make a new root`
        : '; restore it or remove both to make a new root';
    throw new CastellanError(
      'incomplete-ca',
      `self-signed CA: ${certPem === undefined ? CERT : KEY} is missing next to ${certPem === undefined ? KEY : CERT}${fix}`,
      { subject: dir },
    );
  }
  const rootFile = await readIfExists(join(dir, ROOT));
  const roots = rootFile === undefined ? undefined : rootsOf(rootFile, certPem);
  if (roots?.own === false && roots.selfSignedLike.length > 0) {
    throw new CastellanError(
      'chain-invalid',
      `self-signed CA: ${ROOT} holds a self-signed CA root (${roots.selfSignedLike.join('; ')}) of another key than ${CERT}: it may be an earlier self-signed root that workloads still trust, so it is not replaced silently; restore the ${KEY} and ${CERT} that go with it, or remove ${ROOT} to serve this one's root`,
      { subject: dir },
    );
  }
  if (roots?.own === false) {
    onForeignRoots?.(
      `${join(dir, ROOT)} holds the roots of another CA (published by an earlier run on a plugged-in CA, --cacerts-dir), none of them this self-signed root: serving ${join(dir, CERT)} as the only root, and publishing it in their place`,
    );
  }
  const rootPem = rootFile === undefined || roots?.own === false ? certPem : rootFile;
  return buildKeyCertBundle(
    {
      certPem,
      keyPem,
      rootPem,
      source: `self-signed:${dir}`,
      fileNames: { cert: join(dir, CERT), key: join(dir, KEY), root: join(dir, ROOT) },
    },
    clock,
  );
}

/**
 * What root-cert.pem holds, beside ca-cert.pem. `own`: whether it holds a certificate of
 * ca-cert.pem's key (the root itself, or the old and the new root of a rotation, which share the
 * key). The data dir's root-cert.pem is also where serve publishes the trust bundle of whichever
 * CA it serves (local-runtime.ts), so after a run on a plugged-in CA it holds that CA's roots;
 * read as this set's roots, they made every later self-signed start fail ("does not lead to any
 * of the trusted roots"), and only removing the file mended it. `selfSignedLike`: its roots that
 * may be a self-signed CA's own (Castellan's, or istiod's istio-ca-secret): self-issued, with a
 * subject of one O attribute (O=<trust domain>), as both make them; a plugged-in CA's root names
 * itself otherwise (`castellan ca root`: O and CN; Istio's sample and tool roots: O and CN), so
 * its roots can be set aside, and anything that may be an earlier self-signed root is refused.
 * Undefined when a file does not parse: buildKeyCertBundle then refuses it with the precise
 * reason, as before. `certPem` undefined: no set in place (own is false).
 */
function rootsOf(
  rootPem: string,
  certPem: string | undefined,
): { own: boolean; selfSignedLike: string[] } | undefined {
  try {
    const certificates = (pem: string): PeculiarX509Certificate[] =>
      pemBlocks(pem)
        .filter((b) => b.label === 'CERTIFICATE')
        .map((b) => new PeculiarX509Certificate(b.der));
    const spki = (c: PeculiarX509Certificate): Buffer => Buffer.from(c.publicKey.rawData);
    const roots = certificates(rootPem);
    const [cert] = certPem === undefined ? [] : certificates(certPem);
    if (roots.length === 0 || (certPem !== undefined && !cert)) return undefined;
    const selfSignedLike = roots
      .filter((c) => {
        const rdns = c.subjectName.toJSON();
        return (
          c.subject === c.issuer &&
          rdns.length === 1 &&
          Object.keys(rdns[0] ?? {}).join() === 'O' &&
          rdns[0]?.['O']?.length === 1
        );
      })
      .map((c) => `"${c.subject}"`);
    const own = cert !== undefined && roots.some((r) => spki(r).equals(spki(cert)));
    return { own, selfSignedLike };
  } catch {
    return undefined;
  }
}

/**
 * With no set in place, a root-cert.pem holding a self-signed CA root means the key and
 * certificate of that root are gone (deleted, a partial restore): workloads may still trust it,
 * and a new root made now would silently break them, which is exactly what a self-signed CA must
 * never do (see loadOrCreateSelfSignedCa). A plugged-in CA's roots left there are no such root
 * (rootsOf) and do not stop a first start. Another process may be moving its new set
 * into place at this moment, root first: that set is finished first, and the caller looks again.
 */
async function refuseToReplaceLostRoot(dir: string): Promise<void> {
  const lostRoots = async (): Promise<string[]> => {
    await finishCommittedSet(dir);
    const [certPem, keyPem, rootPem] = await Promise.all(
      [CERT, KEY, ROOT].map((f) => readIfExists(join(dir, f))),
    );
    if (certPem !== undefined || keyPem !== undefined || rootPem === undefined) return [];
    return rootsOf(rootPem, undefined)?.selfSignedLike ?? [];
  };
  // Twice: each file of a set being moved into place is in place or still committed, so a
  // second finish completes a set whose root arrived between the first finish and the reads.
  if ((await lostRoots()).length === 0) return;
  const lost = await lostRoots();
  if (lost.length === 0) return;
  throw new CastellanError(
    'incomplete-ca',
    `self-signed CA: ${ROOT} holds a self-signed CA root (${lost.join('; ')}) but ${KEY} and ${CERT} are gone: workloads may still trust it, so no new root is made silently; restore ${KEY} and ${CERT}, or remove ${ROOT} to start a new root deliberately`,
    { subject: dir },
  );
}

/** The committed new set, while its files are being moved into the data dir. */
const COMMITTED = '.self-signed-ca.ready';

/**
 * Writes every file (synced) into a staging folder named like a temporary file, then renames it
 * to COMMITTED: after the rename the set exists as a whole, before it not at all. A set another
 * process committed first wins; ours is dropped.
 */
async function commitSet(
  dir: string,
  files: readonly (readonly [name: string, text: string, mode: number])[],
): Promise<void> {
  const staging = temporaryPathFor(join(dir, '.self-signed-ca'));
  await mkdir(staging, { mode: 0o700 });
  try {
    for (const [name, text, mode] of files) await writeFileDurably(join(staging, name), text, mode);
    await syncFolder(staging);
    await rename(staging, join(dir, COMMITTED));
    await syncFolder(dir);
  } catch (e) {
    await rm(staging, { recursive: true, force: true });
    const code = (e as NodeJS.ErrnoException).code;
    // ENOTEMPTY/EEXIST: another process committed its set first.
    if (code !== 'ENOTEMPTY' && code !== 'EEXIST') throw e;
  }
}

/**
 * Moves a committed set's files into place, whether this start or a killed one committed it.
 * Each file is hard-linked into place, then its committed name removed: `link` never replaces a
 * name, so a set already in place is never overwritten. That matters when separate processes
 * first-start on one data dir (outside the one-`serve`-per-data-dir contract, but it must not
 * split the CA): the commit rename succeeds over an empty COMMITTED folder, so a start that
 * generated its set late can commit it after the winner moved its files in and before the winner
 * removed the folder. Renamed into place, the late set replaced the winner's files while the
 * winner served its own root (a test with four processes caught it); linked, each of its files
 * meets the winner's (EEXIST) and is dropped. Such a late set can only be committed once the
 * winner's folder is empty, i.e. once the winner's whole set is in place, so none of it lands.
 */
async function finishCommittedSet(dir: string): Promise<void> {
  const committed = join(dir, COMMITTED);
  let names: string[];
  try {
    names = await readdir(committed);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return;
    throw e;
  }
  const code = (e: unknown): string | undefined => (e as NodeJS.ErrnoException).code;
  for (const name of names) {
    const from = join(committed, name);
    try {
      await link(from, join(dir, name));
    } catch (e) {
      // ENOENT: another process finishing the same set moved it first. EEXIST: in place already
      // (this set's, linked by another process or by a start killed before the unlink; or the
      // winner's, and this file is a late set's): the committed copy goes.
      if (code(e) === 'ENOENT') continue;
      if (code(e) !== 'EEXIST') throw e;
    }
    await unlink(from).catch((e: unknown) => {
      if (code(e) !== 'ENOENT') throw e;
    });
  }
  // ENOTEMPTY: a late set was committed into the emptied folder meanwhile; its own start (or the
  // next one) drops it.
  await rmdir(committed).catch((e: unknown) => {
    if (code(e) !== 'ENOENT' && code(e) !== 'ENOTEMPTY') throw e;
  });
  await syncFolder(dir);
}

/**
 * Root rotation: the same key and subject with a new validity window (from now, `ttlMs` long),
 * so certificates issued under the old root keep verifying (same name, same key identifier).
 */
export async function reissueRoot(
  bundle: KeyCertBundle,
  key: SigningKey,
  clock: Clock,
  ttlMs: number,
): Promise<X509Certificate> {
  const subject = bundle.signingCert.subjectName
    .toJSON()
    .flatMap((rdn) =>
      Object.entries(rdn).flatMap(([attr, values]) => values.map((v) => [attr, v] as const)),
    );
  return makeSelfSignedRoot(
    key,
    subject,
    clock,
    ttlMs,
    new Uint8Array(bundle.signingCert.publicKey.rawData),
  );
}
