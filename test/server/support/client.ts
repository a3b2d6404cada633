// A CreateCertificate client for tests: our own @grpc/grpc-js client over real TLS, plus CSRs
// and checks made with the openssl CLI (code we did not write).
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { istioCaPackageDefinition } from '../../../src/api/istioca.js';

export interface CaClient extends grpc.Client {
  CreateCertificate(
    request: { csr: string; validityDuration: number },
    metadata: grpc.Metadata,
    callback: (err: grpc.ServiceError | null, response?: { certChain: string[] }) => void,
  ): grpc.ClientUnaryCall;
}

export function caClient(
  target: string,
  rootPem: string,
  clientCert?: { keyPem: string; chainPem: string },
): CaClient {
  const pkg = grpc.loadPackageDefinition(istioCaPackageDefinition()) as unknown as {
    istio: { v1: { auth: { IstioCertificateService: new (...a: unknown[]) => CaClient } } };
  };
  const creds = grpc.credentials.createSsl(
    Buffer.from(rootPem),
    clientCert ? Buffer.from(clientCert.keyPem) : null,
    clientCert ? Buffer.from(clientCert.chainPem) : null,
  );
  return new pkg.istio.v1.auth.IstioCertificateService(target, creds);
}

export function createCertificate(
  client: CaClient,
  request: { csr: string; validityDuration?: number },
  token?: string,
): Promise<string[]> {
  const md = new grpc.Metadata();
  if (token !== undefined) md.set('authorization', `Bearer ${token}`);
  return new Promise((resolve, reject) => {
    client.CreateCertificate(
      { csr: request.csr, validityDuration: request.validityDuration ?? 0 },
      md,
      (err, res) => (err ? reject(err) : resolve(res?.certChain ?? [])),
    );
  });
}

export const tmp = (): string => mkdtempSync(join(tmpdir(), 'castellan-server-'));

/** A key and a CSR made by `openssl req`, asking for a SAN the server must ignore. */
export function opensslCsr(
  keyAlg: 'ec' | 'rsa:1024' | 'rsa:2048' = 'ec',
  san = 'URI:spiffe://evil.example/ns/admin/sa/root,DNS:evil.example',
): { keyPem: string; csrPem: string } {
  const dir = tmp();
  const args = [
    'req',
    '-new',
    '-nodes',
    '-keyout',
    join(dir, 'key.pem'),
    '-out',
    join(dir, 'csr.pem'),
  ];
  if (keyAlg === 'ec') args.push('-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256');
  else args.push('-newkey', keyAlg);
  args.push('-subj', '/CN=evil.example', '-addext', `subjectAltName=${san}`);
  execFileSync('openssl', args, { stdio: 'pipe' });
  return {
    keyPem: readFileSync(join(dir, 'key.pem'), 'utf8'),
    csrPem: readFileSync(join(dir, 'csr.pem'), 'utf8'),
  };
}

/** `openssl verify -x509_strict` of a response chain against a root bundle; throws on failure. */
export function opensslVerify(chain: readonly string[], rootPem: string): string {
  const dir = tmp();
  writeFileSync(join(dir, 'root.pem'), rootPem);
  writeFileSync(join(dir, 'leaf.pem'), chain[0] ?? '');
  writeFileSync(join(dir, 'untrusted.pem'), chain.slice(1).join(''));
  return execFileSync(
    'openssl',
    [
      'verify',
      '-x509_strict',
      '-CAfile',
      join(dir, 'root.pem'),
      '-untrusted',
      join(dir, 'untrusted.pem'),
      join(dir, 'leaf.pem'),
    ],
    { encoding: 'utf8', stdio: 'pipe' },
  );
}

/** `openssl x509 -text -noout` of one PEM certificate. */
export function opensslText(pem: string): string {
  return execFileSync('openssl', ['x509', '-text', '-noout'], { input: pem, encoding: 'utf8' });
}

/** The URI SANs of a certificate as openssl prints them. */
export function opensslUris(pem: string): string[] {
  const text = opensslText(pem);
  return [...text.matchAll(/URI:([^,\s]+)/g)].map((m) => m[1] as string);
}

/** NotAfter as openssl reads it, in ms since the epoch. */
export function opensslNotAfter(pem: string): number {
  const out = execFileSync('openssl', ['x509', '-noout', '-enddate'], {
    input: pem,
    encoding: 'utf8',
  });
  return Date.parse(out.trim().replace(/^notAfter=/, ''));
}
