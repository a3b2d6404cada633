import { webcrypto } from 'node:crypto';
import * as x509 from '@peculiar/x509';
import { toPem } from '../../../src/pki/pem.js';
import { EC_P256 as EC, generateEcKeyPair, makeEcRoot } from '../x509-certs.js';

/** The fake API server's own PKI: a CA (what kubeconfigs trust) and the serving certificate. */
export interface ServingTls {
  readonly caPem: string;
  readonly certPem: string;
  readonly keyPem: string;
}

/** A fresh CA and a serving certificate for 127.0.0.1 and localhost, valid for a day. */
export async function makeServingTls(): Promise<ServingTls> {
  const now = Date.now();
  const notBefore = new Date(now - 60_000);
  const notAfter = new Date(now + 86_400_000);
  const { cert: ca, keys: caKeys } = await makeEcRoot({
    serialNumber: '01',
    name: 'CN=fake-kubernetes-ca',
    notBefore,
    notAfter,
  });
  const leafKeys = await generateEcKeyPair();
  const leaf = await x509.X509CertificateGenerator.create({
    serialNumber: '02',
    subject: 'CN=kube-apiserver',
    issuer: ca.subject,
    notBefore,
    notAfter,
    publicKey: leafKeys.publicKey,
    signingKey: caKeys.privateKey,
    signingAlgorithm: EC,
    extensions: [
      new x509.BasicConstraintsExtension(false, undefined, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
      new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.serverAuth]),
      new x509.SubjectAlternativeNameExtension([
        { type: 'dns', value: 'localhost' },
        { type: 'dns', value: 'kubernetes.default.svc' },
        { type: 'ip', value: '127.0.0.1' },
      ]),
      await x509.AuthorityKeyIdentifierExtension.create(caKeys.publicKey),
    ],
  });
  const keyDer = await webcrypto.subtle.exportKey('pkcs8', leafKeys.privateKey);
  return {
    caPem: ca.toString('pem') + '\n',
    certPem: leaf.toString('pem') + '\n',
    keyPem: toPem('PRIVATE KEY', keyDer),
  };
}
