// A small CA for the server tests, built with @peculiar/x509 directly so the server can be tested
// through real TLS and gRPC independently of src/pki's issuance code (which has its own tests).
import { createPrivateKey, randomBytes, webcrypto, type KeyObject } from 'node:crypto';
import * as x509 from '@peculiar/x509';
import type { CaSnapshot, CaState, KeyCertBundle } from '../../../src/ca/key-cert-bundle.js';
import { CastellanError } from '../../../src/errors.js';
import { keyObjectSigner } from '../../../src/pki/signer.js';
import type { IssuedLeaf, LeafIssuer } from '../../../src/server/create-certificate.js';
import type { ServingCertificateIssuer } from '../../../src/server/serving-certificate.js';
import { EC_P256 as EC, generateEcKeyPair, makeEcRoot } from '../../support/x509-certs.js';

const subtle = webcrypto.subtle;
type CryptoKeyPair = webcrypto.CryptoKeyPair;

export interface TestCa {
  readonly snapshot: CaSnapshot;
  readonly rootPem: string;
  readonly signingKeyPair: CryptoKeyPair;
}

async function keyObject(pair: CryptoKeyPair): Promise<KeyObject> {
  const der = await subtle.exportKey('pkcs8', pair.privateKey);
  return createPrivateKey({ key: Buffer.from(der), format: 'der', type: 'pkcs8' });
}

function serial(): string {
  const b = randomBytes(16);
  b[0] = (b[0] as number) & 0x7f;
  return b.toString('hex');
}

const pem = (c: x509.X509Certificate): string => `${c.toString('pem')}\n`;

/** A self-signed EC root; with `intermediate`, a signing intermediate under it. */
export async function makeTestCa(
  options: { name?: string; intermediate?: boolean; generation?: number; notAfter?: Date } = {},
): Promise<TestCa> {
  const name = options.name ?? 'Castellan Test Root';
  const notBefore = new Date(Date.now() - 3600_000);
  const notAfter = options.notAfter ?? new Date(Date.now() + 365 * 86_400_000);
  const { cert: root, keys: rootKeys } = await makeEcRoot({
    serialNumber: serial(),
    name: `CN=${name}, O=Castellan Tests`,
    notBefore,
    notAfter,
  });
  let signingCert = root;
  let signingKeys = rootKeys;
  if (options.intermediate) {
    signingKeys = await generateEcKeyPair();
    signingCert = await x509.X509CertificateGenerator.create({
      serialNumber: serial(),
      subject: `CN=${name} Intermediate, O=Castellan Tests`,
      issuer: root.subject,
      notBefore,
      notAfter: new Date(notAfter.getTime() - 86_400_000),
      publicKey: signingKeys.publicKey,
      signingKey: rootKeys.privateKey,
      signingAlgorithm: EC,
      extensions: [
        new x509.BasicConstraintsExtension(true, 0, true),
        new x509.KeyUsagesExtension(
          x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign,
          true,
        ),
        await x509.SubjectKeyIdentifierExtension.create(signingKeys.publicKey),
        await x509.AuthorityKeyIdentifierExtension.create(root),
      ],
    });
  }
  const certChain = options.intermediate ? [signingCert] : [root];
  const responseChainPem = options.intermediate ? [pem(signingCert), pem(root)] : [pem(root)];
  const bundle: KeyCertBundle = {
    signingCert,
    signer: keyObjectSigner(await keyObject(signingKeys)),
    signingKeyType: 'ec-p256',
    certChain,
    roots: [root],
    responseChainPem,
    rootBundlePem: pem(root),
    source: `test:${name}`,
  };
  return {
    snapshot: {
      bundle,
      generation: options.generation ?? 1,
      leafSigner: {
        sign: () => Promise.reject(new Error('not used by the server tests')),
      },
    },
    rootPem: pem(root),
    signingKeyPair: signingKeys,
  };
}

/** Signing keys by snapshot, so the issuer signs with the CA it is handed. */
const signingKeysOf = new WeakMap<CaSnapshot, CryptoKeyPair>();
export function registerTestCa(ca: TestCa): CaSnapshot {
  signingKeysOf.set(ca.snapshot, ca.signingKeyPair);
  return ca.snapshot;
}

/** A CaState the test drives: set a snapshot (or none) at any time. */
export class TestCaState implements CaState {
  private snapshot: CaSnapshot | undefined;
  private readonly listeners = new Set<(s: CaSnapshot) => void>();
  constructor(initial?: TestCa) {
    if (initial) this.snapshot = registerTestCa(initial);
  }
  current(): CaSnapshot | undefined {
    return this.snapshot;
  }
  onChange(listener: (s: CaSnapshot) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }
  set(ca: TestCa): void {
    this.snapshot = registerTestCa(ca);
    for (const l of this.listeners) l(ca.snapshot);
  }
  /** Makes the CA "not ready" without telling listeners (the serving certificate stays). */
  clear(): void {
    this.snapshot = undefined;
  }
}

/** Parses and verifies a CSR as the server needs: only its public key and self-signature. */
export const testLeafIssuer: LeafIssuer<x509.Pkcs10CertificateRequest> = {
  parseCsr(text: string) {
    let csr: x509.Pkcs10CertificateRequest;
    try {
      csr = new x509.Pkcs10CertificateRequest(text);
    } catch (e) {
      throw new CastellanError('malformed', `not a PEM CSR: ${(e as Error).message}`, {
        subject: 'csr',
      });
    }
    const alg = csr.publicKey.algorithm as webcrypto.RsaHashedKeyAlgorithm;
    if (alg.name === 'RSASSA-PKCS1-v1_5' && alg.modulusLength < 2048) {
      throw new CastellanError('weak-key', `RSA key of ${alg.modulusLength} bits`, {
        subject: 'csr',
      });
    }
    return csr;
  },
  async sign(snapshot, csr, sans, ttlMs): Promise<IssuedLeaf> {
    if (!(await csr.verify())) {
      throw new CastellanError('bad-signature', 'CSR signature does not verify', {
        subject: 'csr',
      });
    }
    const keys = signingKeysOf.get(snapshot);
    if (!keys) throw new Error('unknown test CA');
    const now = Date.now();
    const notAfter = new Date(
      Math.min(now + ttlMs, snapshot.bundle.signingCert.notAfter.getTime()),
    );
    const serialHex = serial();
    const cert = await x509.X509CertificateGenerator.create({
      serialNumber: serialHex,
      subject: '',
      issuer: snapshot.bundle.signingCert.subject,
      notBefore: new Date(now - 120_000),
      notAfter,
      publicKey: csr.publicKey,
      signingKey: keys.privateKey,
      signingAlgorithm: EC,
      extensions: [
        new x509.BasicConstraintsExtension(false, undefined, true),
        new x509.KeyUsagesExtension(
          x509.KeyUsageFlags.digitalSignature | x509.KeyUsageFlags.keyEncipherment,
          true,
        ),
        new x509.ExtendedKeyUsageExtension(
          [x509.ExtendedKeyUsage.serverAuth, x509.ExtendedKeyUsage.clientAuth],
          false,
        ),
        new x509.SubjectAlternativeNameExtension(
          sans.map((s) => ({ type: 'url' as const, value: s })),
          true,
        ),
        await x509.SubjectKeyIdentifierExtension.create(csr.publicKey),
        await x509.AuthorityKeyIdentifierExtension.create(snapshot.bundle.signingCert),
      ],
    });
    return { certChainPem: [pem(cert), ...snapshot.bundle.responseChainPem], serialHex, notAfter };
  },
};

/** Issues the TLS serving certificate (serverAuth, DNS + IP SANs) from the test CA. */
export const testServingIssuer: ServingCertificateIssuer = async (snapshot, request) => {
  const keys = signingKeysOf.get(snapshot);
  if (!keys) throw new Error('unknown test CA');
  const spki = request.publicKey.export({ format: 'der', type: 'spki' });
  const publicKey = await subtle.importKey('spki', spki, EC, true, ['verify']);
  const cert = await x509.X509CertificateGenerator.create({
    serialNumber: serial(),
    subject: 'O=Castellan Tests',
    issuer: snapshot.bundle.signingCert.subject,
    notBefore: request.notBefore,
    notAfter: request.notAfter,
    publicKey,
    signingKey: keys.privateKey,
    signingAlgorithm: EC,
    extensions: [
      new x509.BasicConstraintsExtension(false, undefined, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
      new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.serverAuth], false),
      new x509.SubjectAlternativeNameExtension([
        ...request.names.dnsNames.map((value) => ({ type: 'dns' as const, value })),
        ...request.names.ipAddresses.map((value) => ({ type: 'ip' as const, value })),
      ]),
      await x509.AuthorityKeyIdentifierExtension.create(snapshot.bundle.signingCert),
    ],
  });
  return pem(cert);
};
