// Keys and CA certificates made in-test with @peculiar/x509 over node's WebCrypto, independently
// of src/pki's issuance code: for the test CAs and TLS servers (test/server, test/agent, the fake
// API server).
// The crypto provider is Node's WebCrypto, set once in test/support/setup.ts.
import { webcrypto } from 'node:crypto';
import * as x509 from '@peculiar/x509';

/** ECDSA P-256 with SHA-256, for key generation and as a signing algorithm. */
export const EC_P256 = { name: 'ECDSA', namedCurve: 'P-256', hash: 'SHA-256' } as const;

/** A new extractable P-256 key pair. */
export async function generateEcKeyPair(): Promise<webcrypto.CryptoKeyPair> {
  return await webcrypto.subtle.generateKey(EC_P256, true, ['sign', 'verify']);
}

export interface EcCa {
  readonly cert: x509.X509Certificate;
  readonly keys: webcrypto.CryptoKeyPair;
}

export interface EcRootOptions {
  /** The subject (and issuer) DN, e.g. `CN=test root`. */
  readonly name: string;
  /** Hex. */
  readonly serialNumber: string;
  readonly notBefore: Date;
  readonly notAfter: Date;
}

/**
 * A new P-256 key and a self-signed root for it: CA:TRUE (critical), keyCertSign and cRLSign
 * (critical), a subject key identifier.
 */
export async function makeEcRoot(o: EcRootOptions): Promise<EcCa> {
  const keys = await generateEcKeyPair();
  const cert = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: o.serialNumber,
    name: o.name,
    notBefore: o.notBefore,
    notAfter: o.notAfter,
    keys,
    signingAlgorithm: EC_P256,
    extensions: [
      new x509.BasicConstraintsExtension(true, undefined, true),
      new x509.KeyUsagesExtension(
        x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign,
        true,
      ),
      await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
    ],
  });
  return { cert, keys };
}
