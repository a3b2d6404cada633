// A small stand-in for the CA, for the agent's tests: a real gRPC server over TLS speaking
// istioca.proto, signing CSRs with a throwaway root, with switchable failures and a call log.
import { webcrypto, X509Certificate as NodeX509 } from 'node:crypto';
import * as grpc from '@grpc/grpc-js';
import * as x509 from '@peculiar/x509';
import { ISTIO_CA_SERVICE, istioCaPackageDefinition } from '../../../src/api/istioca.js';
import { systemClock, type Clock } from '../../../src/clock.js';
import {
  EC_P256 as EC,
  generateEcKeyPair,
  makeEcRoot,
  type EcCa,
} from '../../support/x509-certs.js';

export interface CaDoubleCall {
  authorization: string | undefined;
  peerCertificate: boolean;
  /** The HTTP/2 :authority the call named. */
  authority: string;
}

function randomSerial(): string {
  return '01' + Buffer.from(webcrypto.getRandomValues(new Uint8Array(8))).toString('hex');
}

function makeRoot(name: string): Promise<EcCa> {
  return makeEcRoot({
    serialNumber: randomSerial(),
    name: `CN=${name}`,
    notBefore: new Date(Date.now() - 60_000),
    notAfter: new Date(Date.now() + 86_400_000),
  });
}

async function issue(
  now: number,
  issuer: EcCa,
  publicKey: x509.PublicKey | webcrypto.CryptoKey,
  sans: x509.JsonGeneralName[],
  ttlMs: number,
  serverAuth: boolean,
): Promise<x509.X509Certificate> {
  return x509.X509CertificateGenerator.create({
    serialNumber: randomSerial(),
    subject: '',
    issuer: issuer.cert.subject,
    notBefore: new Date(now - 1000),
    notAfter: new Date(now + ttlMs),
    publicKey,
    signingKey: issuer.keys.privateKey,
    signingAlgorithm: EC,
    extensions: [
      new x509.BasicConstraintsExtension(false, undefined, true),
      new x509.KeyUsagesExtension(
        x509.KeyUsageFlags.digitalSignature | x509.KeyUsageFlags.keyEncipherment,
        true,
      ),
      new x509.ExtendedKeyUsageExtension(
        serverAuth
          ? [x509.ExtendedKeyUsage.serverAuth]
          : [x509.ExtendedKeyUsage.serverAuth, x509.ExtendedKeyUsage.clientAuth],
      ),
      new x509.SubjectAlternativeNameExtension(sans, true),
      await x509.AuthorityKeyIdentifierExtension.create(issuer.cert),
    ],
  });
}

/** What the double answers: a certificate, or a gRPC error. */
export type Behaviour = { kind: 'issue' } | { kind: 'fail'; code: grpc.status; message: string };

export class CaDouble {
  readonly calls: CaDoubleCall[] = [];
  behaviour: Behaviour = { kind: 'issue' };
  /** Lifetime of issued leaves; a request's validity_duration wins when > 0. */
  leafTtlMs = 3_600_000;
  /** Bearer token that counts as valid; undefined accepts any (or none). */
  acceptedToken: string | undefined;
  /** The time leaves are issued at: tests that step an agent's clock give it here too. */
  clock: Clock = systemClock;
  private server: grpc.Server | undefined;
  port = 0;

  private constructor(
    public root: EcCa,
    private readonly serving: { certPem: string; keyPem: string },
  ) {}

  static async create(): Promise<CaDouble> {
    const root = await makeRoot('castellan test root');
    const keys = await generateEcKeyPair();
    const cert = await issue(
      Date.now(),
      root,
      keys.publicKey,
      [
        { type: 'dns', value: 'localhost' },
        { type: 'ip', value: '127.0.0.1' },
      ],
      86_400_000,
      true,
    );
    const pkcs8 = await webcrypto.subtle.exportKey('pkcs8', keys.privateKey);
    const keyPem = x509.PemConverter.encode(pkcs8, 'PRIVATE KEY');
    return new CaDouble(root, { certPem: cert.toString('pem'), keyPem });
  }

  get rootPem(): string {
    return this.root.cert.toString('pem') + '\n';
  }

  get address(): string {
    return `127.0.0.1:${this.port}`;
  }

  /** Replaces the signing root (serving certificate unchanged: the old root still signs it). */
  async rotateRoot(): Promise<void> {
    this.root = await makeRoot(`castellan test root ${Date.now()}`);
  }

  async start(port = 0): Promise<void> {
    const server = new grpc.Server();
    const pkg = grpc.loadPackageDefinition(istioCaPackageDefinition());
    const service = ISTIO_CA_SERVICE.split('.').reduce<unknown>(
      (n, p) => (n as Record<string, unknown>)[p],
      pkg,
    ) as { service: grpc.ServiceDefinition };
    server.addService(service.service, {
      CreateCertificate: (
        call: grpc.ServerUnaryCall<{ csr: string; validityDuration: number }, unknown>,
        callback: grpc.sendUnaryData<{ certChain: string[] }>,
      ) => {
        const auth = call.metadata.get('authorization')[0];
        const peer = call.getAuthContext().sslPeerCertificate;
        this.calls.push({
          authority: call.getHost(),
          authorization: typeof auth === 'string' ? auth : undefined,
          peerCertificate: peer !== undefined && Object.keys(peer).length > 0,
        });
        const b = this.behaviour;
        if (b.kind === 'fail') {
          callback({ code: b.code, details: b.message });
          return;
        }
        if (
          this.acceptedToken !== undefined &&
          auth !== `Bearer ${this.acceptedToken}` &&
          !this.calls.at(-1)?.peerCertificate
        ) {
          callback({ code: grpc.status.UNAUTHENTICATED, details: 'authentication failed' });
          return;
        }
        void (async () => {
          const csr = new x509.Pkcs10CertificateRequest(call.request.csr);
          if (!(await csr.verify())) throw new Error('bad CSR signature');
          const ttl =
            call.request.validityDuration > 0
              ? call.request.validityDuration * 1000
              : this.leafTtlMs;
          const leaf = await issue(
            this.clock.now(),
            this.root,
            csr.publicKey,
            [{ type: 'url', value: 'spiffe://cluster.local/ns/default/sa/test' }],
            ttl,
            false,
          );
          return [leaf.toString('pem') + '\n', this.rootPem];
        })().then(
          (certChain) => callback(null, { certChain }),
          (e: unknown) => callback({ code: grpc.status.INVALID_ARGUMENT, details: String(e) }),
        );
      },
    });
    const creds = grpc.ServerCredentials.createSsl(
      Buffer.from(this.rootPem),
      [
        {
          cert_chain: Buffer.from(this.serving.certPem),
          private_key: Buffer.from(this.serving.keyPem),
        },
      ],
      false,
    );
    this.port = await new Promise<number>((resolve, reject) =>
      server.bindAsync(`127.0.0.1:${port}`, creds, (err, p) => (err ? reject(err) : resolve(p))),
    );
    this.server = server;
  }

  async stop(): Promise<void> {
    const s = this.server;
    this.server = undefined;
    if (!s) return;
    // tryShutdown waits for every client connection to go; an agent's channel that stays open
    // would keep it (and the test process) waiting forever, so it is bounded.
    await new Promise<void>((resolve) => {
      const timer = setTimeout(() => {
        s.forceShutdown();
        resolve();
      }, 2000);
      s.tryShutdown(() => {
        clearTimeout(timer);
        resolve();
      });
    });
  }
}

/** The serial of a PEM certificate, via node:crypto (independent of the agent's parsing). */
export function serialOf(pem: string): string {
  return new NodeX509(pem).serialNumber;
}
