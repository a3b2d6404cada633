import { readFile } from 'node:fs/promises';
import * as grpc from '@grpc/grpc-js';
import {
  ISTIO_CA_SERVICE,
  istioCaPackageDefinition,
  type IstioCertificateRequest,
  type IstioCertificateResponse,
} from '../api/istioca.js';
import { parseHostPort } from '../address.js';
import type { Clock } from '../clock.js';
import { CastellanError, type ErrorKind } from '../errors.js';
import { TlsChannelCredentials } from './tls-channel-credentials.js';

/** What the agent needs from a CA: one CreateCertificate call. A seam for tests. */
export interface CertificateAuthorityClient {
  createCertificate(request: CertificateRequest): Promise<string[]>;
}

export interface CertificateRequest {
  readonly csrPem: string;
  /** Requested lifetime in seconds; 0 asks for the server's default. */
  readonly validitySeconds: number;
  /**
   * Roots to trust for the server certificate besides the `--root-cert` file: the trust
   * bundle the CA sent last time, so a CA that moved to a new root is still reachable.
   */
  readonly extraTrustPem?: string | undefined;
  /**
   * The current certificate and key, presented over mTLS when there is no token file:
   * renewal with the identity we already hold.
   */
  readonly clientIdentity?: { readonly certChainPem: string; readonly keyPem: string } | undefined;
}

export interface GrpcCaClientOptions {
  /** HOST:PORT of the CA's gRPC endpoint. */
  readonly address: string;
  /** PEM file with the root(s) that sign the CA's serving certificate. */
  readonly rootCertFile: string;
  /** A bearer token file (e.g. a projected service-account token); re-read on every call. */
  readonly tokenFile?: string | undefined;
  /** Name to check the serving certificate against when it differs from the address host. */
  readonly serverName?: string | undefined;
  /** Deadline of each call. */
  readonly timeoutMs?: number | undefined;
  /** Where each call's deadline is counted from. */
  readonly clock: Clock;
}

const DEFAULT_TIMEOUT_MS = 10_000;

/**
 * gRPC status → error kind. The agent's retry policy branches on the kind: `unavailable` and
 * `internal` are worth retrying soon; the others need a human or a new token first.
 */
const STATUS_KINDS: Partial<Record<grpc.status, ErrorKind>> = {
  [grpc.status.UNAVAILABLE]: 'unavailable',
  [grpc.status.DEADLINE_EXCEEDED]: 'unavailable',
  [grpc.status.RESOURCE_EXHAUSTED]: 'unavailable',
  [grpc.status.ABORTED]: 'unavailable',
  [grpc.status.CANCELLED]: 'unavailable',
  [grpc.status.INTERNAL]: 'internal',
  [grpc.status.UNKNOWN]: 'internal',
  [grpc.status.DATA_LOSS]: 'internal',
  [grpc.status.UNAUTHENTICATED]: 'unauthenticated',
  [grpc.status.PERMISSION_DENIED]: 'permission-denied',
  [grpc.status.INVALID_ARGUMENT]: 'invalid-argument',
  [grpc.status.OUT_OF_RANGE]: 'invalid-argument',
  [grpc.status.FAILED_PRECONDITION]: 'invalid-argument',
  [grpc.status.UNIMPLEMENTED]: 'unsupported',
  [grpc.status.NOT_FOUND]: 'unsupported',
};

export function errorKindOfStatus(code: grpc.status): ErrorKind {
  return STATUS_KINDS[code] ?? 'internal';
}

type CreateCertificateFn = (
  request: IstioCertificateRequest,
  metadata: grpc.Metadata,
  options: grpc.CallOptions,
  callback: (error: grpc.ServiceError | null, response?: IstioCertificateResponse) => void,
) => grpc.ClientUnaryCall;

interface IstioCaClient extends grpc.Client {
  CreateCertificate: CreateCertificateFn;
}

type IstioCaClientConstructor = new (
  address: string,
  credentials: grpc.ChannelCredentials,
  options?: grpc.ChannelOptions,
) => IstioCaClient;

let clientConstructor: IstioCaClientConstructor | undefined;
function istioCaClientConstructor(): IstioCaClientConstructor {
  if (!clientConstructor) {
    const pkg = grpc.loadPackageDefinition(istioCaPackageDefinition());
    const service = ISTIO_CA_SERVICE.split('.').reduce<unknown>(
      (node, part) => (node as Record<string, unknown> | undefined)?.[part],
      pkg,
    );
    if (typeof service !== 'function') {
      throw new CastellanError('internal', `${ISTIO_CA_SERVICE} missing from istioca.proto`);
    }
    clientConstructor = service as IstioCaClientConstructor;
  }
  return clientConstructor;
}

async function readInput(file: string, what: string): Promise<string> {
  try {
    return await readFile(file, 'utf8');
  } catch (e) {
    throw new CastellanError(
      'invalid-argument',
      `cannot read ${what}: ${(e as NodeJS.ErrnoException).code ?? String(e)}`,
      { subject: file, cause: e },
    );
  }
}

/** OpenSSL's words for a server certificate that does not lead to a trusted root. */
const UNTRUSTED_SERVER =
  /unable to get local issuer certificate|self[- ]signed certificate in certificate chain|unable to verify the first certificate|certificate signature failure/;

/**
 * Calls Istio's CreateCertificate over TLS. Each call builds its channel from scratch: the
 * token, the trusted roots and the client certificate may all have changed since the last
 * call (calls are minutes to hours apart, so a cached channel buys nothing).
 */
export class GrpcCaClient implements CertificateAuthorityClient {
  constructor(private readonly options: GrpcCaClientOptions) {}

  async createCertificate(request: CertificateRequest): Promise<string[]> {
    const rootsPem =
      (await readInput(this.options.rootCertFile, 'root certificate')) +
      (request.extraTrustPem ? `\n${request.extraTrustPem}` : '');
    const metadata = new grpc.Metadata();
    if (this.options.tokenFile !== undefined) {
      const token = (await readInput(this.options.tokenFile, 'token file')).trim();
      if (token === '') {
        throw new CastellanError('unauthenticated', 'token file is empty', {
          subject: this.options.tokenFile,
        });
      }
      metadata.set('authorization', `Bearer ${token}`);
    }
    const identity = request.clientIdentity;
    const name = this.options.serverName || parseHostPort(this.options.address, 'CA address').host;
    let credentials: grpc.ChannelCredentials;
    try {
      credentials = TlsChannelCredentials.fromPem(
        {
          rootsPem,
          ...(identity && { keyPem: identity.keyPem, certChainPem: identity.certChainPem }),
        },
        name,
      );
    } catch (e) {
      throw new CastellanError(
        'malformed',
        `cannot use the TLS material: ${e instanceof Error ? e.message : String(e)}`,
        { subject: this.options.rootCertFile, cause: e },
      );
    }
    // The certificate is checked against --server-name (TlsChannelCredentials); the HTTP/2
    // :authority names it too, as grpc-go's ServerName override does.
    const channelOptions: grpc.ChannelOptions = {};
    if (this.options.serverName) channelOptions['grpc.default_authority'] = this.options.serverName;
    const Client = istioCaClientConstructor();
    const client = new Client(this.options.address, credentials, channelOptions);
    // grpc-js takes the deadline as a point in wall-clock time (ms since the epoch).
    const deadline = this.options.clock.now() + (this.options.timeoutMs ?? DEFAULT_TIMEOUT_MS);
    try {
      const response = await new Promise<IstioCertificateResponse>((resolve, reject) => {
        client.CreateCertificate(
          { csr: request.csrPem, validityDuration: request.validitySeconds, metadata: null },
          metadata,
          { deadline },
          (error, res) => {
            if (error) reject(error);
            else resolve(res ?? { certChain: [] });
          },
        );
      });
      return response.certChain;
    } catch (e) {
      const err = e as grpc.ServiceError;
      const code = typeof err.code === 'number' ? err.code : grpc.status.UNKNOWN;
      // grpc-js ends a connection failure with an empty "Resolution note: ".
      const details = (err.details || err.message).replace(/\s*Resolution note:\s*$/, '');
      // The one mistake behind these TLS errors: a --root-cert that is not the CA's root.
      const hint = UNTRUSTED_SERVER.test(details)
        ? ` (the CA's serving certificate does not lead to a root in ${this.options.rootCertFile}: is it the root of the CA at ${this.options.address}?)`
        : '';
      throw new CastellanError(
        errorKindOfStatus(code),
        `CreateCertificate at ${this.options.address} failed: ${grpc.status[code]}: ${details}${hint}`,
        { cause: e },
      );
    } finally {
      client.close();
    }
  }
}
