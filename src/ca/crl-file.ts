import type { X509Certificate } from '@peculiar/x509';
import { CastellanError } from '../errors.js';
import { isSignedBy } from '../pki/chain.js';
import {
  createCrl,
  isCrlSignedBy,
  normalizeSerial,
  parseCrls,
  type CrlEntry,
  type ParsedCrl,
} from '../pki/crl.js';
import type { Issuer } from '../pki/issue.js';
import { toPem } from '../pki/pem.js';
import type { KeyCertBundle } from './key-cert-bundle.js';
import { chainCas } from './cacerts-layout.js';

/** What to revoke: a serial of the folder's CA, or a certificate (its issuer picks the CRL). */
export type Revocation =
  { readonly serial: string } | { readonly certificate: X509Certificate; readonly file: string };

export interface UpdateCaCrlParams {
  /** The folder's CA, verified (its key signs the CA's CRL). */
  readonly bundle: KeyCertBundle;
  /** The root's certificate and key, when given: the root's CRL is (re)signed too. */
  readonly root?: Issuer | undefined;
  /** The current `ca-crl.pem`, if any. */
  readonly existingPem?: string | undefined;
  /** Where it is, for messages. */
  readonly file: string;
  readonly revoke: readonly Revocation[];
  readonly now: Date;
  readonly nextUpdate: Date;
}

export interface UpdatedCrl {
  readonly ca: X509Certificate;
  readonly crlNumber: number | undefined;
  readonly entries: number;
  readonly added: readonly string[];
  /** false: kept as it was (a CA whose key we do not have). */
  readonly signed: boolean;
  readonly nextUpdate: Date | undefined;
}

export interface UpdateCaCrlResult {
  /** The new file: one CRL per CA of the chain, the signing CA's first. */
  readonly pem: string;
  readonly crls: readonly UpdatedCrl[];
}

/**
 * Creates or extends a cacerts folder's `ca-crl.pem`: the CA's CRL is signed anew (earlier
 * entries kept, the new ones added, CRL number incremented, nextUpdate moved), as is the
 * root's when its key is given; a CRL of another CA of the chain is kept as it is. The result
 * holds a CRL for every CA of the chain, as istiod and Envoy need (pki/crl.ts: verifyCaCrl);
 * without one for the root and without the root's key, it is refused here rather than written
 * and refused by every reader.
 */
export async function updateCaCrl(p: UpdateCaCrlParams): Promise<UpdateCaCrlResult> {
  const cas = chainCas(p.bundle);
  const signing = p.bundle.signingCert;
  const same = (a: X509Certificate, b: X509Certificate): boolean =>
    Buffer.from(a.rawData).equals(Buffer.from(b.rawData));
  const rootCa = cas.length > 1 ? (cas[cas.length - 1] as X509Certificate) : undefined;
  if (p.root && (!rootCa || !same(rootCa, p.root.cert))) {
    throw new CastellanError(
      'chain-invalid',
      `the root given ("${p.root.cert.subject}") is not the root of this CA's chain${rootCa ? ` ("${rootCa.subject}")` : ' (the CA is its own root)'}`,
    );
  }
  // cas[0] is the signing certificate itself (chainCas starts with it).
  const keys = new Map<X509Certificate, Issuer>([
    [cas[0] as X509Certificate, { cert: signing, key: p.bundle.signer }],
  ]);
  if (p.root && rootCa) keys.set(rootCa, p.root);

  // The CRLs there now, each assigned to the CA of the chain that signed it.
  const existing = new Map<X509Certificate, ParsedCrl>();
  if (p.existingPem !== undefined && p.existingPem.trim() !== '') {
    parseCrls(p.existingPem, p.file).forEach((crl, i) => {
      const ca = cas.find((c) => isCrlSignedBy(crl, c));
      if (!ca) {
        throw new CastellanError(
          'bad-signature',
          `CRL [${i}] (issuer "${crl.issuer}") is signed by none of the CAs of this folder's chain: remove it (or the file) first`,
          { subject: p.file },
        );
      }
      const before = existing.get(ca);
      if (!before || (crl.crlNumber ?? -1) > (before.crlNumber ?? -1)) existing.set(ca, crl);
    });
  }

  // New entries, by the CA that issued the certificate (a serial: the folder's CA).
  const additions = new Map<X509Certificate, string[]>();
  for (const r of p.revoke) {
    let ca: X509Certificate;
    let serial: string;
    if ('serial' in r) {
      ca = cas[0] as X509Certificate;
      serial = normalizeSerial(r.serial);
    } else {
      const issuer = cas.find((c) => isSignedBy(r.certificate, c) && !same(c, r.certificate));
      if (!issuer) {
        throw new CastellanError(
          'invalid-argument',
          `the certificate "${r.certificate.subject || r.certificate.serialNumber}" was not issued by any CA of this folder (${cas.map((c) => `"${c.subject}"`).join(', ')}); its issuer is "${r.certificate.issuer}"`,
          { subject: r.file },
        );
      }
      if (!keys.has(issuer)) {
        throw new CastellanError(
          'invalid-argument',
          `the certificate was issued by the root "${issuer.subject}": revoking it needs the root's key (--root-dir)`,
          { subject: r.file },
        );
      }
      ca = issuer;
      serial = normalizeSerial(r.certificate.serialNumber);
    }
    additions.set(ca, [...(additions.get(ca) ?? []), serial]);
  }

  const results: UpdatedCrl[] = [];
  const pems: string[] = [];
  const missing: X509Certificate[] = [];
  for (const ca of cas) {
    const before = existing.get(ca);
    const issuer = keys.get(ca);
    if (!issuer) {
      if (!before) {
        missing.push(ca);
        continue;
      }
      pems.push(toPem('X509 CRL', before.der));
      results.push({
        ca,
        crlNumber: before.crlNumber,
        entries: before.entries.length,
        added: [],
        signed: false,
        nextUpdate: before.nextUpdate,
      });
      continue;
    }
    const entries: CrlEntry[] = [...(before?.entries ?? [])];
    const added: string[] = [];
    for (const serial of additions.get(ca) ?? []) {
      if (entries.some((e) => e.serial === serial)) continue;
      entries.push({ serial, revocationDate: p.now });
      added.push(serial);
    }
    const crlNumber = (before?.crlNumber ?? 0) + 1;
    pems.push(
      await createCrl({
        issuer,
        thisUpdate: p.now,
        nextUpdate: p.nextUpdate,
        crlNumber,
        entries,
      }),
    );
    results.push({
      ca,
      crlNumber,
      entries: entries.length,
      added,
      signed: true,
      nextUpdate: p.nextUpdate,
    });
  }
  if (missing.length > 0) {
    throw new CastellanError(
      'incomplete-ca',
      `no CRL for ${missing.map((c) => `"${c.subject}"`).join(', ')} and no key to sign one: every CA of the chain needs a CRL (Envoy rejects every certificate of a chain whose CRLs are partial; istiod refuses such a set): pass --root-dir with the root's folder (root-cert.pem, root-key.pem)`,
      { subject: p.file },
    );
  }
  return { pem: pems.join(''), crls: results };
}
