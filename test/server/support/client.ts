// A CreateCertificate client for tests: our own @grpc/grpc-js client over real TLS, plus CSRs
// and checks made with the openssl CLI (code we did not write).
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { parseHostPort } from '../../../src/address.js';
import { TlsChannelCredentials } from '../../../src/agent/tls-channel-credentials.js';
import { istioCaPackageDefinition } from '../../../src/api/istioca.js';
import { loadProto } from '../../../src/api/protos.js';
import { opensslText, opensslVerify as verify } from '../../support/openssl.js';

export interface CaClient extends grpc.Client {
  CreateCertificate(
    request: { csr: string; validityDuration: number },
    metadata: grpc.Metadata,
    callback: (err: grpc.ServiceError | null, response?: { certChain: string[] }) => void,
  ): grpc.ClientUnaryCall;
}

/** `channelOptions`: e.g. `{ 'grpc.use_local_subchannel_pool': 1 }` for a connection of its own. */
export function caClient(
  target: string,
  rootPem: string,
  clientCert?: { keyPem: string; chainPem: string },
  channelOptions?: grpc.ChannelOptions,
): CaClient {
  const pkg = grpc.loadPackageDefinition(istioCaPackageDefinition()) as unknown as {
    istio: { v1: { auth: { IstioCertificateService: new (...a: unknown[]) => CaClient } } };
  };
  const override = channelOptions?.['grpc.ssl_target_name_override'];
  const creds = clientTls(
    target,
    rootPem,
    clientCert,
    typeof override === 'string' ? override : undefined,
  );
  return new pkg.istio.v1.auth.IstioCertificateService(target, creds, channelOptions);
}

/**
 * TLS credentials for a test's gRPC client of `target` (HOST:PORT), checking the server's
 * certificate against `serverName` or the host: the agent's (src/agent/tls-channel-credentials.ts),
 * not grpc-js's, which give TLS an IP address as the server name, which Node 26 refuses.
 */
export function clientTls(
  target: string,
  rootPem: string,
  clientCert?: { keyPem: string; chainPem: string },
  serverName?: string,
): grpc.ChannelCredentials {
  return TlsChannelCredentials.fromPem(
    {
      rootsPem: rootPem,
      ...(clientCert && { keyPem: clientCert.keyPem, certChainPem: clientCert.chainPem }),
    },
    serverName ?? parseHostPort(target).host,
  );
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

/** One message of the Watch stream (protos/policy.proto). */
export type BundleUpdate = { namespace: string; pod: string; hash: string; bundleJson: string };

/** A castellan.v1.PolicyBundleService client: Watch streams a pod's policy bundle. */
export interface PolicyBundleClient extends grpc.Client {
  Watch(request: { namespace: string; pod: string }): grpc.ClientReadableStream<BundleUpdate>;
}

export function policyBundleClient(
  target: string,
  creds: grpc.ChannelCredentials,
): PolicyBundleClient {
  const pkg = grpc.loadPackageDefinition(loadProto('policy.proto')) as unknown as {
    castellan: { v1: { PolicyBundleService: new (...a: unknown[]) => PolicyBundleClient } };
  };
  return new pkg.castellan.v1.PolicyBundleService(target, creds);
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

/**
 * `openssl verify` of a response chain against a root bundle: -x509_strict unless `strict` is
 * false (for Istio's older sample sets). Returns openssl's output; throws on failure.
 */
export function opensslVerify(
  chain: readonly string[],
  rootPem: string,
  options: { strict?: boolean } = {},
): string {
  const r = verify({
    root: rootPem,
    leaf: chain[0] ?? '',
    untrusted: chain.slice(1),
    strict: options.strict,
  });
  if (!r.ok) throw new Error(`openssl verify failed:\n${r.output}`);
  return r.output;
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
