import { createPublicKey, type KeyObject } from 'node:crypto';
import { X509Certificate } from '@peculiar/x509';
import type { Clock } from '../clock.js';
import { CastellanError, isCastellanError } from '../errors.js';
import { checkIsCa, checkValidity, verifyChain } from '../pki/chain.js';
import { isCaKeyType } from '../pki/key-type.js';
import { keyTypeOf, parsePrivateKeyPem, publicKeyMatches } from '../pki/keys.js';
import { pemBlocksOf, toPem } from '../pki/pem.js';
import type { CaSignatureAlgorithm } from '../pki/profiles.js';
import { keyObjectSigner, signsForPublicKey, type CaSigner } from '../pki/signer.js';
import type { KeyCertBundle } from './key-cert-bundle.js';

/** How the four parts are named in error messages (file names, or secret keys). */
export interface BundleFileNames {
  readonly cert: string;
  readonly key: string;
  readonly chain: string;
  readonly root: string;
}

export const ISTIO_FILE_NAMES: BundleFileNames = {
  cert: 'ca-cert.pem',
  key: 'ca-key.pem',
  chain: 'cert-chain.pem',
  root: 'root-cert.pem',
};

/** A CA set whose key is a PEM file (ca-key.pem, tls.key, root-key.pem). */
export interface BundleInput extends CertsInput {
  readonly keyPem: string;
}

/** A CA set whose key is held by a signer (a PKCS#11 token): no key file at all. */
export interface SignerBundleInput extends CertsInput {
  readonly signer: CaSigner;
}

interface CertsInput {
  readonly certPem: string;
  /** The signing certificate up to the root; may start with the signing certificate and may
   * end with the root (Istio's alt sample does), both tolerated. */
  readonly chainPem?: string | undefined;
  /** One or more roots; duplicates tolerated. */
  readonly rootPem: string;
  readonly source: string;
  readonly fileNames?: Partial<BundleFileNames>;
}

/** Parses every CERTIFICATE block of a PEM text; anything else in it is `malformed`. */
export function parseCertificates(pem: string, subject: string): X509Certificate[] {
  return pemBlocksOf(pem, 'CERTIFICATE', { subject }).map((der) => {
    try {
      return new X509Certificate(der);
    } catch (e) {
      throw new CastellanError('malformed', 'a CERTIFICATE block does not parse', {
        subject,
        cause: e,
      });
    }
  });
}

const sameCert = (a: X509Certificate, b: X509Certificate): boolean =>
  Buffer.from(a.rawData).equals(Buffer.from(b.rawData));

export function certificatePem(cert: X509Certificate): string {
  return toPem('CERTIFICATE', cert.rawData);
}

/**
 * Builds a verified, immutable KeyCertBundle from a key file. Checks, each failure naming its
 * file: the certificate parses and is one (`malformed`); the key parses and is a CA key type
 * (keys.ts kinds); the key matches the certificate (`key-mismatch`); the certificate is a CA
 * (`not-a-ca`) within its validity (`expired`/`not-yet-valid`); the chain verifies and leads
 * to one of the roots (`chain-invalid`, `bad-signature`, …).
 *
 * Response chain rule, as istiod lays out CreateCertificate's answer (security/pkg/server/ca/
 * server.go, CreateCertificate): after the leaf come the chain's certificates (signing
 * certificate first), one per element, then every root in ONE last element — ztunnel
 * (src/tls/certificate.rs, WorkloadCertificate::new) and pilot-agent take the last element as
 * their whole trust bundle. A root that cert-chain.pem also holds is not sent among the chain
 * (unlike Istio, issue #39001), so it appears once, in the last element.
 */
export function buildKeyCertBundle(input: BundleInput, clock: Clock): KeyCertBundle {
  const names = { ...ISTIO_FILE_NAMES, ...input.fileNames };
  const signingCert = signingCertOf(input, names);
  const { key: signingKey, keyType: signingKeyType } = parsePrivateKeyPem(input.keyPem, names.key);
  if (!isCaKeyType(signingKeyType)) {
    throw new CastellanError('unsupported', `a ${signingKeyType} key cannot be a CA key here`, {
      subject: names.key,
    });
  }
  if (!publicKeyMatches(signingKey, new Uint8Array(signingCert.publicKey.rawData))) {
    throw new CastellanError(
      'key-mismatch',
      `the private key does not belong to the certificate in ${names.cert}`,
      { subject: names.key },
    );
  }
  return assemble(input, names, signingCert, keyObjectSigner(signingKey), clock);
}

/**
 * Builds a verified, immutable KeyCertBundle whose key is held by `signer` (a key in an HSM,
 * which cannot be read to compare): the key must match the certificate, shown by a probe it
 * signs that verifies with the certificate's public key (probeSigner), then every check of
 * buildKeyCertBundle. `key-mismatch` names the signer (its URI, never a PIN).
 */
export async function buildSignerBundle(
  input: SignerBundleInput,
  clock: Clock,
): Promise<KeyCertBundle> {
  const names = { ...ISTIO_FILE_NAMES, ...input.fileNames };
  const signingCert = signingCertOf(input, names);
  await probeSigner(input.signer, signingCert, names.cert);
  return assemble(input, names, signingCert, input.signer, clock);
}

/**
 * buildSignerBundle for a signer already probed against this very certificate (the same set
 * read again with more roots, Kubernetes' previous-roots merge): no second probe. Another
 * certificate is a bug in the caller (`internal`).
 */
export function buildProbedSignerBundle(
  input: SignerBundleInput,
  probedCert: X509Certificate,
  clock: Clock,
): KeyCertBundle {
  const names = { ...ISTIO_FILE_NAMES, ...input.fileNames };
  const signingCert = signingCertOf(input, names);
  if (!sameCert(signingCert, probedCert)) {
    throw new CastellanError('internal', 'the signer was probed against another certificate', {
      subject: input.signer.description,
    });
  }
  return assemble(input, names, signingCert, input.signer, clock);
}

/**
 * Shows that `signer` holds the private half of `cert`'s public key: it signs 32 random bytes
 * with the CA's algorithm, and the signature must verify with the certificate's key. Refused
 * as `key-mismatch` (a different key, or one of another type) naming the signer and the
 * certificate; the signer's own failures (`unavailable`: token absent, session lost) pass
 * through as they are.
 */
export async function probeSigner(
  signer: CaSigner,
  cert: X509Certificate,
  certName: string,
): Promise<void> {
  let publicKey: KeyObject;
  let certKeyType: string;
  try {
    publicKey = createPublicKey({
      key: Buffer.from(cert.publicKey.rawData),
      format: 'der',
      type: 'spki',
    });
    certKeyType = keyTypeOf(publicKey, certName);
  } catch (e) {
    if (isCastellanError(e)) throw e;
    throw new CastellanError('malformed', 'the public key does not parse', {
      subject: certName,
      cause: e,
    });
  }
  if (certKeyType !== signer.keyType) {
    throw new CastellanError(
      'key-mismatch',
      `the key is ${signer.keyType} but the certificate in ${certName} holds a ${certKeyType} key`,
      { subject: signer.description },
    );
  }
  const signs = (data: Uint8Array, algorithm: CaSignatureAlgorithm): Promise<Uint8Array> =>
    signer.sign(data, algorithm);
  if (!(await signsForPublicKey(signs, signer.keyType, signer.description, publicKey))) {
    throw new CastellanError(
      'key-mismatch',
      `the key does not belong to the certificate in ${certName}: a probe it signed does not verify with the certificate's public key`,
      { subject: signer.description },
    );
  }
  signer.confirmed?.(new Uint8Array(cert.publicKey.rawData));
}

function signingCertOf(input: CertsInput, names: BundleFileNames): X509Certificate {
  const certs = parseCertificates(input.certPem, names.cert);
  if (certs.length !== 1) {
    throw new CastellanError('malformed', `expected one certificate, found ${certs.length}`, {
      subject: names.cert,
    });
  }
  return certs[0] as X509Certificate;
}

/** The checks after the key: CA flags, validity, chain to a root; then the frozen bundle. */
function assemble(
  input: CertsInput,
  names: BundleFileNames,
  signingCert: X509Certificate,
  signer: CaSigner,
  clock: Clock,
): KeyCertBundle {
  checkIsCa(signingCert, names.cert);
  checkValidity(signingCert, clock, names.cert);
  const roots: X509Certificate[] = [];
  for (const r of parseCertificates(input.rootPem, names.root)) {
    if (!roots.some((x) => sameCert(x, r))) roots.push(r);
  }
  for (const r of roots) checkIsCa(r, names.root);

  const chainFile = input.chainPem !== undefined && input.chainPem.trim() !== '';
  const listed = chainFile ? parseCertificates(input.chainPem, names.chain) : [];
  if (listed.length > 0 && !sameCert(listed[0] as X509Certificate, signingCert)) {
    // Istio's cert-chain.pem starts with the signing certificate; tolerate a chain file that
    // lists only what is above it, but nothing else.
    if ((listed[0] as X509Certificate).subject === signingCert.subject) {
      throw new CastellanError(
        'chain-invalid',
        `the first certificate is not the one in ${names.cert}`,
        { subject: names.chain },
      );
    }
    listed.unshift(signingCert);
  }
  const fullChain = listed.length > 0 ? listed : [signingCert];
  verifyChain(fullChain, roots, clock, {
    subject: chainFile ? names.chain : names.cert,
    firstIsCa: true,
  });
  const belowRoots = fullChain.filter((c) => !roots.some((r) => sameCert(r, c)));
  // A self-signed CA: the signing certificate is itself the root, sent once, with the roots.
  const certChain = belowRoots.length > 0 ? belowRoots : [signingCert];
  const rootPems = roots.map(certificatePem);
  const rootBundlePem = rootPems.join('');
  const responseChainPem = Object.freeze([...belowRoots.map(certificatePem), rootBundlePem]);
  return Object.freeze({
    signingCert,
    signer,
    signingKeyType: signer.keyType,
    certChain: Object.freeze(certChain),
    roots: Object.freeze(roots),
    responseChainPem,
    rootBundlePem,
    source: input.source,
  });
}
