// Test CAs built with our own issuer (the profiles are tested with openssl in issue.test.ts).
import type { KeyObject } from 'node:crypto';
import { join } from 'node:path';
import type { X509Certificate } from '@peculiar/x509';
import { parseCsr, type ParsedCsr } from '../../src/pki/csr.js';
import { issueCertificate } from '../../src/pki/issue.js';
import type { CaKeyType } from '../../src/pki/key-type.js';
import { generateKeyPair, privateKeyToPem } from '../../src/pki/keys.js';
import { toPem } from '../../src/pki/pem.js';
import type { CertificateProfile } from '../../src/pki/profiles.js';
import { openssl } from '../support/openssl.js';

export const HOUR = 3_600_000;

export interface TestCa {
  cert: X509Certificate;
  key: KeyObject;
  certPem: string;
  keyPem: string;
}

export interface Window {
  notBefore: Date;
  notAfter: Date;
}

export function window(from: number, hours: number): Window {
  return { notBefore: new Date(from), notAfter: new Date(from + hours * HOUR) };
}

function wrap(cert: X509Certificate, key: KeyObject): TestCa {
  return { cert, key, certPem: toPem('CERTIFICATE', cert.rawData), keyPem: privateKeyToPem(key) };
}

export async function testRoot(
  keyType: CaKeyType = 'ec-p256',
  w: Window = window(Date.now() - HOUR, 1000),
  name = 'Test Root',
): Promise<TestCa> {
  const { privateKey } = await generateKeyPair(keyType);
  const cert = await issueCertificate({
    profile: {
      kind: 'root',
      subject: [
        ['O', 'test'],
        ['CN', name],
      ],
    },
    publicKey: privateKey,
    selfKey: privateKey,
    ...w,
  });
  return wrap(cert, privateKey);
}

export async function testIntermediate(
  issuer: TestCa,
  options: { keyType?: CaKeyType; window?: Window; name?: string; pathLength?: number } = {},
): Promise<TestCa> {
  const { privateKey } = await generateKeyPair(options.keyType ?? 'ec-p256');
  const cert = await issueCertificate({
    profile: {
      kind: 'intermediate',
      subject: [
        ['O', 'test'],
        ['CN', options.name ?? 'Test Intermediate'],
      ],
      ...(options.pathLength !== undefined ? { pathLength: options.pathLength } : {}),
    },
    publicKey: privateKey,
    issuer,
    ...(options.window ?? window(Date.now() - HOUR, 500)),
  });
  return wrap(cert, privateKey);
}

/** A certificate of any profile signed by `issuer`, with a fresh key. */
export async function testCert(
  issuer: TestCa,
  profile: CertificateProfile,
  w: Window = window(Date.now() - HOUR, 24),
): Promise<TestCa> {
  const { privateKey } = await generateKeyPair('ec-p256');
  const cert = await issueCertificate({ profile, publicKey: privateKey, issuer, ...w });
  return wrap(cert, privateKey);
}

let csrKeys = 0;
/** A P-256 CSR made by the openssl CLI (its key written into `dir`), read by parseCsr. */
export function opensslP256Csr(dir: string, subj: string): ParsedCsr {
  return parseCsr(
    openssl([
      'req',
      '-new',
      '-nodes',
      '-newkey',
      'ec',
      '-pkeyopt',
      'ec_paramgen_curve:P-256',
      '-keyout',
      join(dir, `csr-key-${csrKeys++}.pem`),
      '-subj',
      subj,
    ]),
  );
}
