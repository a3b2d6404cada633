import type { Clock } from '../clock.js';
import { CastellanError } from '../errors.js';
import type { KeyCertBundle } from './authority.js';
import { buildKeyCertBundle, certificatePem, parseCertificates } from './bundle.js';

/** Istio's plugged-in CA files (`cacerts` secret / folder). */
export const ISTIO_LAYOUT = [
  'ca-cert.pem',
  'ca-key.pem',
  'cert-chain.pem',
  'root-cert.pem',
] as const;
/** The kubernetes.io/tls secret layout: signing certificate (+ chain), key, roots. */
export const TLS_LAYOUT = ['tls.crt', 'tls.key', 'ca.crt'] as const;
/** Every file name either layout reads. */
export const CACERTS_FILE_NAMES: readonly string[] = [...ISTIO_LAYOUT, ...TLS_LAYOUT];

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
  options: { source: string; where?: string },
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
