import { verify } from 'node:crypto';
import { AsnConvert } from '@peculiar/asn1-schema';
import { CertificationRequest } from '@peculiar/asn1-csr';
import { Extensions, SubjectAlternativeName, id_ce_subjectAltName } from '@peculiar/asn1-x509';
import { Pkcs10CertificateRequest, SubjectAlternativeNameExtension } from '@peculiar/x509';
import { CastellanError, type ErrorKind } from '../../errors.js';
import { CSR_RULES, checkSpkiAlgorithm, type ParsedCsr } from '../csr.js';
import { derChildren, requireSingleDerElement } from '../der.js';
import { pemBlocks } from '../pem.js';
import { publicKeyFromSpkiFast } from './p256-spki.js';

/**
 * The hot-path CSR parser: the rules of src/pki/csr.ts (CSR_RULES, in the same order, with the
 * same error kinds), with one schema parse (@peculiar/asn1-csr) instead of a second one through
 * @peculiar/x509's object model. The differential fuzz test (test/pki/fast/fast-csr.test.ts)
 * holds it to the reference parseCsr.
 *
 * Rule 7 (subject and requested SANs) is where @peculiar/x509 does the most: it interprets every
 * attribute and every requested extension with its own class. The fast path handles the shape
 * real sidecars send — at most an extensionRequest holding non-registered extensions and a SAN of
 * DNS names and URIs — and hands anything else to the same @peculiar/x509 code the reference
 * runs, so rare shapes are accepted or refused exactly as there.
 */
const SUBJECT = 'CSR';
const OID_COMMON_NAME = '2.5.4.3';
const OID_EXTENSION_REQUEST = '1.2.840.113549.1.9.14';
const OID_CHALLENGE_PASSWORD = '1.2.840.113549.1.9.7';
/** Extensions @peculiar/x509 interprets with a class of its own (ExtensionFactory). */
const INTERPRETED_EXTENSIONS = new Set([
  '2.5.29.32', // certificatePolicies
  '2.5.29.19', // basicConstraints
  '2.5.29.37', // extKeyUsage
  '2.5.29.15', // keyUsage
  '2.5.29.14', // subjectKeyIdentifier
  '2.5.29.35', // authorityKeyIdentifier
  '2.5.29.31', // cRLDistributionPoints
  '1.3.6.1.5.5.7.1.1', // authorityInfoAccess
  '2.5.29.18', // issuerAltName
]);

function fail(kind: ErrorKind, message: string, cause?: unknown): CastellanError {
  return new CastellanError(kind, message, { subject: SUBJECT, cause });
}

/** Not the common shape: let @peculiar/x509 decide, as the reference does. */
class NeedsReference extends Error {}

function commonNameOf(asn: CertificationRequest): string | undefined {
  for (const rdn of asn.certificationRequestInfo.subject) {
    for (const atv of rdn) {
      if (atv.type === OID_COMMON_NAME) return atv.value.toString();
    }
  }
  return undefined;
}

function requestedSansFast(asn: CertificationRequest): string[] {
  let extensionRequest: ArrayBuffer | undefined;
  let seen = false;
  for (const attr of asn.certificationRequestInfo.attributes) {
    if (attr.type === OID_CHALLENGE_PASSWORD) throw new NeedsReference();
    if (attr.type === OID_EXTENSION_REQUEST) {
      // @peculiar/x509 interprets every extensionRequest attribute; take only the simple case.
      if (seen) throw new NeedsReference();
      seen = true;
      extensionRequest = attr.values[0];
    }
  }
  if (!extensionRequest) return [];
  const extensions = AsnConvert.parse(extensionRequest, Extensions);
  const sans: string[] = [];
  let sanSeen = false;
  for (const ext of extensions) {
    if (INTERPRETED_EXTENSIONS.has(ext.extnID)) throw new NeedsReference();
    if (ext.extnID !== id_ce_subjectAltName) continue;
    // Every SAN extension is interpreted; the first one is reported.
    const names = AsnConvert.parse(ext.extnValue, SubjectAlternativeName);
    for (const n of names) {
      const value = n.dNSName ?? n.uniformResourceIdentifier;
      if (value === undefined) throw new NeedsReference();
      if (!sanSeen) sans.push(value);
    }
    sanSeen = true;
  }
  return sans;
}

/** Rule 7 exactly as the reference runs it, for shapes the fast path does not take. */
function requestedSansReference(asn: CertificationRequest): string[] {
  const csr = new Pkcs10CertificateRequest(asn);
  const sans: string[] = [];
  const san = csr.getExtension(id_ce_subjectAltName);
  if (san instanceof SubjectAlternativeNameExtension)
    for (const n of san.names.items) sans.push(n.value);
  return sans;
}

/** Parses a PEM CSR and verifies its self-signature, following CSR_RULES (src/pki/csr.ts). */
export function parseCsrFast(pem: string): ParsedCsr {
  // 1–2. Size, PEM.
  if (pem.length > CSR_RULES.maxPemLength) {
    throw fail('too-large', `CSR of ${pem.length} characters: at most ${CSR_RULES.maxPemLength}`);
  }
  const blocks = pemBlocks(pem, { subject: SUBJECT, strict: true });
  if (blocks.length !== 1)
    throw fail('malformed', `expected one PEM block, found ${blocks.length}`);
  const block = blocks[0]!;
  if (block.label !== CSR_RULES.pemLabel) {
    throw fail('malformed', `expected a "${CSR_RULES.pemLabel}" PEM block, found "${block.label}"`);
  }
  const der = block.der;

  // 3. DER structure: one schema parse; the signed bytes and the SPKI are taken verbatim.
  const outer = requireSingleDerElement(der, SUBJECT);
  let asn: CertificationRequest;
  try {
    asn = AsnConvert.parse(der, CertificationRequest);
  } catch (e) {
    throw fail('malformed', 'not a PKCS#10 certificate request', e);
  }
  const info = asn.certificationRequestInfo;
  if (info.version !== 0) throw fail('malformed', `unknown CSR version ${info.version}`);
  const infoEl = derChildren(der, outer, SUBJECT)[0];
  const spkiEl = infoEl ? derChildren(der, infoEl, SUBJECT)[2] : undefined;
  if (!infoEl || !spkiEl) throw fail('malformed', 'CertificationRequestInfo has no public key');
  const tbs = der.subarray(infoEl.start, infoEl.end);
  const spki = der.slice(spkiEl.start, spkiEl.end);

  // 4. Public key: node:crypto reads the SPKI (a canonical P-256 one through JWK: faster).
  checkSpkiAlgorithm(info.subjectPKInfo);
  const { publicKey, keyType } = publicKeyFromSpkiFast(spki, SUBJECT);

  // 5–6. Signature.
  const sigOid = asn.signatureAlgorithm.algorithm;
  const sigAlg = CSR_RULES.signatureAlgorithms[sigOid];
  if (!sigAlg) throw fail('unsupported', `signature algorithm ${sigOid} is not supported`);
  const family = keyType.startsWith('rsa') ? 'rsa' : keyType.startsWith('ec') ? 'ec' : 'ed25519';
  if (sigAlg.family !== family) {
    throw fail('bad-signature', `a ${sigAlg.family} signature algorithm with a ${family} key`);
  }
  let valid: boolean;
  try {
    valid = verify(
      sigAlg.hash,
      tbs,
      family === 'ec' ? { key: publicKey, dsaEncoding: 'der' } : publicKey,
      new Uint8Array(asn.signature),
    );
  } catch {
    valid = false;
  }
  if (!valid) {
    throw fail('bad-signature', 'the CSR signature does not verify (proof of possession failed)');
  }

  // 7. Subject and requested SANs.
  let commonName: string | undefined;
  let requestedSans: string[];
  try {
    commonName = commonNameOf(asn);
    try {
      requestedSans = requestedSansFast(asn);
    } catch (e) {
      if (!(e instanceof NeedsReference)) throw e;
      requestedSans = requestedSansReference(asn);
    }
  } catch (e) {
    throw fail('malformed', 'the CSR subject or requested extensions do not parse', e);
  }
  return {
    der,
    spki,
    publicKey,
    keyType,
    ...(commonName !== undefined ? { commonName } : {}),
    requestedSans,
  };
}
