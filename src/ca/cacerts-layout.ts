import type { X509Certificate } from '@peculiar/x509';
import type { Clock } from '../clock.js';
import { CastellanError } from '../errors.js';
import { isSignedBy } from '../pki/chain.js';
import { verifyCaCrl } from '../pki/crl.js';
import type { KeyCertBundle } from './key-cert-bundle.js';
import { buildKeyCertBundle, certificatePem, parseCertificates } from './build-key-cert-bundle.js';

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
/** Every file name either layout reads. */
export const CACERTS_FILE_NAMES: readonly string[] = [...ISTIO_LAYOUT, ...TLS_LAYOUT, CA_CRL_FILE];

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
  // A CRL alone is a CA set missing its four files, not "nothing plugged in": falling back to
  // a self-signed root there would serve a root nobody planned.
  if (files.has(CA_CRL_FILE)) return 'istio';
  return undefined;
}

/**
 * Builds the bundle from the files of a plugged-in CA (file name → PEM text). Pure: the folder
 * source and the Kubernetes secret source both feed it. Returns undefined when no CA file is
 * there at all; a partial set is `incomplete-ca` naming the missing files, never a fallback.
 * `where` prefixes file names in errors (a folder path, `secret istio-system/cacerts`).
 */
export function bundleFromCacerts(
  files: ReadonlyMap<string, string>,
  options: CacertsOptions,
  clock: Clock,
): KeyCertBundle | undefined {
  const bundle = keysAndCertsFromCacerts(files, options, clock);
  const crlPem = files.get(CA_CRL_FILE);
  if (!bundle || crlPem === undefined || options.readCrl === false) return bundle;
  const name = options.where ? `${options.where}/${CA_CRL_FILE}` : CA_CRL_FILE;
  const crl = verifyCaCrl(crlPem, chainCas(bundle), clock, name);
  return Object.freeze({ ...bundle, crl });
}

export interface CacertsOptions {
  readonly source: string;
  readonly where?: string | undefined;
  /** false: ignore ca-crl.pem (istiod's PILOT_ENABLE_CA_CRL=false). Default true. */
  readonly readCrl?: boolean | undefined;
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

function keysAndCertsFromCacerts(
  files: ReadonlyMap<string, string>,
  options: CacertsOptions,
  clock: Clock,
): KeyCertBundle | undefined {
  const layout = detectLayout(files);
  if (!layout) return undefined;
  const name = (n: string): string => (options.where ? `${options.where}/${n}` : n);
  const needed: readonly string[] = layout === 'tls' ? TLS_LAYOUT : ISTIO_LAYOUT;
  const missing = needed.filter((n) => !files.has(n));
  if (missing.length > 0) {
    throw new CastellanError(
      'incomplete-ca',
      `incomplete CA (${layout === 'tls' ? 'kubernetes.io/tls' : 'Istio cacerts'} layout): missing ${missing.join(', ')}`,
      { subject: options.where ?? 'cacerts' },
    );
  }
  const get = (n: string): string => files.get(n) as string;
  if (layout === 'tls') {
    // tls.crt: the signing certificate, optionally followed by its intermediates.
    const tlsCrt = get('tls.crt');
    const first = parseCertificates(tlsCrt, name('tls.crt'))[0];
    return buildKeyCertBundle(
      {
        certPem: first ? certificatePem(first) : tlsCrt,
        keyPem: get('tls.key'),
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
      clock,
    );
  }
  return buildKeyCertBundle(
    {
      certPem: get('ca-cert.pem'),
      keyPem: get('ca-key.pem'),
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
    clock,
  );
}
