// An in-test PKI for CRL tests: a root, an intermediate under it (the plugged-in CA, in
// Istio's four cacerts files), workload leaves, and CRLs signed by any of them — made with the
// project's own issuer (src/pki/issue.ts), checked elsewhere with openssl.
import type { KeyObject } from 'node:crypto';
import type { X509Certificate } from '@peculiar/x509';
import { certificatePem } from '../../src/ca/build-key-cert-bundle.js';
import { createCrl, type CrlEntry } from '../../src/pki/crl.js';
import { issueCertificate } from '../../src/pki/issue.js';
import { generateKeyPair, privateKeyToPem } from '../../src/pki/keys.js';

export interface TestCa {
  readonly cert: X509Certificate;
  readonly key: KeyObject;
  readonly pem: string;
  readonly keyPem: string;
}

const HOUR = 3_600_000;

export async function makeRoot(cn = 'Test Root', now = Date.now()): Promise<TestCa> {
  const { privateKey } = await generateKeyPair('ec-p256');
  const cert = await issueCertificate({
    profile: { kind: 'root', subject: [['CN', cn]] },
    publicKey: privateKey,
    selfKey: privateKey,
    notBefore: new Date(now - HOUR),
    notAfter: new Date(now + 1000 * HOUR),
  });
  return { cert, key: privateKey, pem: certificatePem(cert), keyPem: privateKeyToPem(privateKey) };
}

export async function makeIntermediate(
  root: TestCa,
  cn = 'Test Intermediate',
  now = Date.now(),
): Promise<TestCa> {
  const { privateKey } = await generateKeyPair('ec-p256');
  const cert = await issueCertificate({
    profile: { kind: 'intermediate', subject: [['CN', cn]] },
    publicKey: privateKey,
    issuer: { cert: root.cert, key: root.key },
    notBefore: new Date(now - HOUR),
    notAfter: new Date(now + 500 * HOUR),
  });
  return { cert, key: privateKey, pem: certificatePem(cert), keyPem: privateKeyToPem(privateKey) };
}

/** A workload leaf (SPIFFE URI SAN) issued by `ca`. */
export async function makeLeaf(
  ca: TestCa,
  spiffeId = 'spiffe://cluster.local/ns/default/sa/default',
  now = Date.now(),
): Promise<{ cert: X509Certificate; pem: string; der: Uint8Array }> {
  const { privateKey } = await generateKeyPair('ec-p256');
  const cert = await issueCertificate({
    profile: { kind: 'workload', sans: [spiffeId] },
    publicKey: privateKey,
    issuer: { cert: ca.cert, key: ca.key },
    notBefore: new Date(now - HOUR),
    notAfter: new Date(now + 10 * HOUR),
  });
  return { cert, pem: certificatePem(cert), der: new Uint8Array(cert.rawData) };
}

/** A root and an intermediate, with Istio's four cacerts files for the intermediate. */
export async function makeCacerts(
  names: { root?: string; ca?: string } = {},
): Promise<{ root: TestCa; ca: TestCa; files: Map<string, string> }> {
  const root = await makeRoot(names.root);
  const ca = await makeIntermediate(root, names.ca);
  const files = new Map([
    ['ca-cert.pem', ca.pem],
    ['ca-key.pem', ca.keyPem],
    ['cert-chain.pem', ca.pem + root.pem],
    ['root-cert.pem', root.pem],
  ]);
  return { root, ca, files };
}

/** A CRL signed by `issuer`: no entries, number 1, valid from an hour ago for a week, unless said. */
export function crlOf(
  issuer: TestCa,
  o: { entries?: CrlEntry[]; thisUpdate?: Date; nextUpdate?: Date; crlNumber?: number } = {},
): Promise<string> {
  const thisUpdate = o.thisUpdate ?? new Date(Date.now() - HOUR);
  return createCrl({
    issuer: { cert: issuer.cert, key: issuer.key },
    thisUpdate,
    nextUpdate: o.nextUpdate ?? new Date(thisUpdate.getTime() + 168 * HOUR),
    crlNumber: o.crlNumber ?? 1,
    entries: o.entries ?? [],
  });
}
