import type { HostPort } from '../address.js';
import type { ConnectionLimits } from './connection-guard.js';
import type { AdmissionOptions } from './admission.js';
import type { TtlPolicy } from './create-certificate.js';
import type { CsrThreadsSetting } from './csr-check-threads.js';
import type { ServingNames } from './serving-certificate.js';
import type { GrpcTransport } from './grpc-transport.js';

/** The listeners of `castellan serve` and what the CA service answers on them. */
export interface ServerOptions {
  /** gRPC over TLS: CreateCertificate and the policy bundle Watch. */
  readonly grpcAddress: HostPort;
  /** /ready, /healthz, /metrics; undefined = none (a cluster worker leaves it to the primary). */
  readonly monitoringAddress: HostPort | undefined;
  /** HTTPS GET /v1/bundles/<ns>/<pod>; undefined = off. */
  readonly bundleAddress: HostPort | undefined;
  /** What the serving certificate of the gRPC (and bundle) listener covers. */
  readonly servingNames: ServingNames;
  readonly ttl: TtlPolicy;
  /** Threads checking CSRs beside the event loop (src/server/csr-check-threads.ts). */
  readonly csrThreads: CsrThreadsSetting;
  /** Handshake, idle and keepalive bounds of the gRPC port's connections. */
  readonly connections: ConnectionLimits;
  /** What serves gRPC on the TLS connections (./ca-server.ts). */
  readonly grpcTransport: GrpcTransport;
  /** Admission control of CreateCertificate (./admission.ts), for this process. */
  readonly admission: AdmissionOptions;
}
