import type { X509Certificate } from '@peculiar/x509';
import type { Clock } from '../clock.js';
import { CastellanError } from '../errors.js';
import { isSignedBy } from '../pki/chain.js';
import { verifyCaCrl } from '../pki/crl.js';
import type { KeyCertBundle } from './key-cert-bundle.js';
import {
  buildKeyCertBundle,
  buildProbedSignerBundle,
  buildSignerBundle,
  certificatePem,
  parseCertificates,
  type BundleInput,
} from './build-key-cert-bundle.js';
import type { KeyUriSigners } from './signers/key-uri-signers.js';
import type { CaSigner } from '../pki/signer.js';

/** Istio's plugged-in CA files (`cacerts` secret / folder). */
export const ISTIO_LAYOUT = [
  'ca-cert.pem',
  'ca-key.pem',
  'cert-chain.pem',
  'root-cert.pem',
] as const;
/** The kubernetes.io/tls secret layout: signing certificate (+ chain), key, roots. */
export const TLS_LAYOUT = ['tls.crt', 'tls.key', 'ca.crt'] as const;
/**
 * The optional CRL beside either layout: istiod's name (security/pkg/pki/ca: CACRLFile), one
 * or more PEM `X509 CRL` blocks. istiod reads it only in its own layout (pilot/pkg/bootstrap/
 * istio_ca.go, detectSigningCABundleAndCRL, returns before looking for it when tls.crt is
 * there); Castellan reads it in both, so a CRL put beside tls.crt is never silently dropped.
 */
export const CA_CRL_FILE = 'ca-crl.pem';
/**
 * Castellan's own, beside either layout in place of the key file: one RFC 7512 `pkcs11:` URI
 * naming the CA key inside a token (docs/hsm.md). In the set, so that a new certificate and
 * the new key it goes with are swapped in together.
 */
export const CA_KEY_URI_FILE = 'ca-key.uri';
/** Every file name either layout reads. */
export const CACERTS_FILE_NAMES: readonly string[] = [
  ...ISTIO_LAYOUT,
  ...TLS_LAYOUT,
  CA_CRL_FILE,
  CA_KEY_URI_FILE,
];

export type CacertsLayout = 'istio' | 'tls';

/**
 * Which layout a set of files uses: `tls` when tls.crt is present (it wins over Istio's files,
 * as in Istio), `istio` when any of Istio's files is, undefined when none of either is (nothing
 * plugged in).
 */
export function detectLayout(files: ReadonlyMap<string, string>): CacertsLayout | undefined {
  if (files.has('tls.crt')) return 'tls';
  if (ISTIO_LAYOUT.some((n) => files.has(n))) return 'istio';
  // A tls.key or ca.crt without tls.crt (nor Istio's files) is an incomplete tls set.
  if (TLS_LAYOUT.some((n) => files.has(n))) return 'tls';
  // A CRL (or a key URI) alone is a CA set missing its four files, not "nothing plugged in": falling back to
  // a self-signed root there would serve a root nobody planned.
  if (files.has(CA_CRL_FILE) || files.has(CA_KEY_URI_FILE)) return 'istio';
  return undefined;
}

/**
 * Builds the bundle from the files of a plugged-in CA (file name → PEM text), with the key in
 * a file (ca-key.pem, tls.key). Pure: the folder source and the Kubernetes secret source both
 * feed it. Returns undefined when no CA file is there at all; a partial set is `incomplete-ca`
 * naming the missing files, never a fallback. `where` prefixes file names in errors (a folder
 * path, `secret istio-system/cacerts`). A set whose key is in a token (a key URI) needs
 * bundleFromCacertsWithKeys, which can open it: refused here as `unsupported`.
 */
export function bundleFromCacerts(
  files: ReadonlyMap<string, string>,
  options: CacertsOptions,
  clock: Clock,
): KeyCertBundle | undefined {
  const set = cacertsSet(files, options);
  if (!set) return undefined;
  if (set.keyUri !== undefined && options.probed) {
    const bundle = buildProbedSignerBundle(
      { ...set.input, signer: options.probed.signer },
      options.probed.cert,
      clock,
    );
    return withCrl(bundle, files, options, clock);
  }
  if (set.keyUri !== undefined) {
    throw new CastellanError(
      'unsupported',
      'the CA key is in a PKCS#11 token (a key URI), which this CA source cannot open',
      { subject: options.where ?? 'cacerts' },
    );
  }
  return withCrl(
    buildKeyCertBundle({ ...set.input, keyPem: set.keyPem as string }, clock),
    files,
    options,
    clock,
  );
}

/**
 * bundleFromCacerts for sets whose key may be in a PKCS#11 token: the key URI comes from the
 * set's `ca-key.uri` or from `options.keyUri` (serve's --ca-key-uri), its signer from
 * `signers`, and it must show that it holds the key of the signing certificate (a probe it
 * signs verifies with the certificate's key; build-key-cert-bundle.ts: buildSignerBundle)
 * before the set is accepted. Without a key URI, exactly bundleFromCacerts.
 */
export async function bundleFromCacertsWithKeys(
  files: ReadonlyMap<string, string>,
  options: CacertsOptions & CacertsKeyOptions,
  clock: Clock,
): Promise<KeyCertBundle | undefined> {
  const set = cacertsSet(files, options);
  if (!set) return undefined;
  if (set.keyUri === undefined) {
    return withCrl(
      buildKeyCertBundle({ ...set.input, keyPem: set.keyPem as string }, clock),
      files,
      options,
      clock,
    );
  }
  if (!options.signers) {
    throw new CastellanError(
      'unsupported',
      'the CA key is in a PKCS#11 token (a key URI), which this CA source cannot open',
      { subject: options.where ?? 'cacerts' },
    );
  }
  const signer = await options.signers.get(set.keyUri);
  const bundle = await buildSignerBundle({ ...set.input, signer }, clock);
  return withCrl(bundle, files, options, clock);
}

export interface CacertsOptions {
  readonly source: string;
  readonly where?: string | undefined;
  /** false: ignore ca-crl.pem (istiod's PILOT_ENABLE_CA_CRL=false). Default true. */
  readonly readCrl?: boolean | undefined;
  /** The key URI a set without a key file uses (serve's --ca-key-uri). */
  readonly keyUri?: string | undefined;
  /**
   * For bundleFromCacerts: the signer of this set's key URI, already probed against its
   * signing certificate `cert` by bundleFromCacertsWithKeys (the set read again with more
   * roots). Not probed again.
   */
  readonly probed?: { readonly signer: CaSigner; readonly cert: X509Certificate } | undefined;
}

export interface CacertsKeyOptions {
  /** Opens (and keeps) the signers of key URIs. */
  readonly signers?: KeyUriSigners | undefined;
}

function withCrl(
  bundle: KeyCertBundle,
  files: ReadonlyMap<string, string>,
  options: CacertsOptions,
  clock: Clock,
): KeyCertBundle {
  const crlPem = files.get(CA_CRL_FILE);
  if (crlPem === undefined || options.readCrl === false) return bundle;
  const name = options.where ? `${options.where}/${CA_CRL_FILE}` : CA_CRL_FILE;
  const crl = verifyCaCrl(crlPem, chainCas(bundle), clock, name);
  return Object.freeze({ ...bundle, crl });
}

/**
 * The CA certificates a chain's CRLs must cover: the signing certificate up to, and including,
 * the root the chain ends at (Envoy checks every one of them once it has any CRL).
 */
export function chainCas(bundle: KeyCertBundle): X509Certificate[] {
  const chain = [...bundle.certChain];
  const top = chain[chain.length - 1] as X509Certificate;
  const same = (a: X509Certificate, b: X509Certificate): boolean =>
    Buffer.from(a.rawData).equals(Buffer.from(b.rawData));
  if (!bundle.roots.some((r) => same(r, top))) {
    const root = bundle.roots.find((r) => r.subject === top.issuer && isSignedBy(top, r));
    if (root) chain.push(root);
  }
  return chain;
}

/** A plugged-in set: its certificates, and its key as a file's PEM or as a URI. */
interface CacertsSet {
  readonly input: Omit<BundleInput, 'keyPem'>;
  readonly keyPem?: string | undefined;
  readonly keyUri?: string | undefined;
}

/**
 * Reads which files make the set and where its key is. A key file and a key URI together are
 * refused (which one signs would be a guess), as are the set's `ca-key.uri` and a key URI from
 * the command line together.
 */
function cacertsSet(
  files: ReadonlyMap<string, string>,
  options: CacertsOptions,
): CacertsSet | undefined {
  const layout = detectLayout(files);
  if (!layout) return undefined;
  const name = (n: string): string => (options.where ? `${options.where}/${n}` : n);
  const keyFile = layout === 'tls' ? 'tls.key' : 'ca-key.pem';
  const uriInSet = files.get(CA_KEY_URI_FILE)?.trim();
  if (uriInSet === '') {
    throw new CastellanError('malformed', 'empty: it should hold one pkcs11: URI', {
      subject: name(CA_KEY_URI_FILE),
    });
  }
  if (uriInSet !== undefined && options.keyUri !== undefined) {
    throw new CastellanError(
      'invalid-argument',
      `the set names its key (${CA_KEY_URI_FILE}) and --ca-key-uri names one too: keep one of them`,
      { subject: name(CA_KEY_URI_FILE) },
    );
  }
  const keyUri = uriInSet ?? options.keyUri;
  if (keyUri !== undefined && files.has(keyFile)) {
    throw new CastellanError(
      'invalid-argument',
      `${keyFile} is there, and the key is also named by URI (${uriInSet !== undefined ? CA_KEY_URI_FILE : '--ca-key-uri'}): remove ${keyFile}, a token key must have no copy beside it`,
      { subject: name(keyFile) },
    );
  }
  const needed = (layout === 'tls' ? TLS_LAYOUT : ISTIO_LAYOUT).filter(
    (n) => keyUri === undefined || n !== keyFile,
  );
  const missing = needed.filter((n) => !files.has(n));
  if (missing.length > 0) {
    throw new CastellanError(
      'incomplete-ca',
      `incomplete CA (${layout === 'tls' ? 'kubernetes.io/tls' : 'Istio cacerts'} layout${keyUri !== undefined ? ', key in a token' : ''}): missing ${missing.join(', ')}`,
      { subject: options.where ?? 'cacerts' },
    );
  }
  const get = (n: string): string => files.get(n) as string;
  if (layout === 'tls') {
    // tls.crt: the signing certificate, optionally followed by its intermediates.
    const tlsCrt = get('tls.crt');
    const first = parseCertificates(tlsCrt, name('tls.crt'))[0];
    return {
      input: {
        certPem: first ? certificatePem(first) : tlsCrt,
        chainPem: tlsCrt,
        rootPem: get('ca.crt'),
        source: options.source,
        fileNames: {
          cert: name('tls.crt'),
          key: name('tls.key'),
          chain: name('tls.crt'),
          root: name('ca.crt'),
        },
      },
      keyPem: files.get('tls.key'),
      keyUri,
    };
  }
  return {
    input: {
      certPem: get('ca-cert.pem'),
      chainPem: get('cert-chain.pem'),
      rootPem: get('root-cert.pem'),
      source: options.source,
      fileNames: {
        cert: name('ca-cert.pem'),
        key: name('ca-key.pem'),
        chain: name('cert-chain.pem'),
        root: name('root-cert.pem'),
      },
    },
    keyPem: files.get('ca-key.pem'),
    keyUri,
  };
}
