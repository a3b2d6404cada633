// A CaServer as `castellan serve` wires it (src/cli/serve/app.ts), on loopback, real TLS, with
// connection limits a test can wait out, and real JWTs from the dev issuer.
import { DevTokenIssuer } from '../../../src/authn/dev-token-issuer.js';
import { ClientCertAuthenticator } from '../../../src/authn/client-cert-authenticator.js';
import type { Impersonation } from '../../../src/authn/impersonation.js';
import { JwtAuthenticator } from '../../../src/authn/jwt-authenticator.js';
import type { Admission } from '../../../src/server/admission.js';
import { authenticateCaller } from '../../../src/authn/authenticate.js';
import type { AuthRequest, Caller } from '../../../src/authn/authenticator.js';
import { systemClock, type Clock } from '../../../src/clock.js';
import { createLogger } from '../../../src/log.js';
import { CaServer } from '../../../src/server/ca-server.js';
import type { GrpcTransport } from '../../../src/server/grpc-transport.js';
import {
  DEFAULT_CONNECTION_LIMITS,
  type ConnectionLimits,
} from '../../../src/server/connection-guard.js';
import { workloadLeafIssuer } from '../../../src/server/issuers.js';
import type { LeafIssuer } from '../../../src/server/create-certificate.js';
import { ServingCertificateManager } from '../../../src/server/serving-certificate.js';
import { logLinesDestination } from '../../support/log-lines.js';
import { tmp } from '../../server/support/client.js';
import {
  makeTestCa,
  testLeafIssuer,
  testServingIssuer,
  TestCaState,
  type TestCa,
} from '../../server/support/test-ca.js';

export const TD = 'cluster.local';
const HOUR = 3_600_000;

export interface Reliable {
  readonly server: CaServer<unknown>;
  readonly ca: TestCa;
  readonly port: number;
  /** `localhost:<port>`, for grpc-js clients (the serving certificate names localhost). */
  readonly target: string;
  readonly dev: DevTokenIssuer;
  readonly logLines: string[];
  /** Certificates signed so far (the issuer's sign() calls that returned). */
  signed(): number;
  /** A metric's value as /metrics shows it, summed over the label values matching `labels`. */
  metric(name: string, labels?: Record<string, string>): Promise<number>;
  auditLines(): Record<string, unknown>[];
  stop(): Promise<void>;
}

export async function startReliable(
  options: {
    connections?: Partial<ConnectionLimits>;
    /** The server's clock (the connection guard's sweeps and probes); real time by default. */
    clock?: Clock;
    /** Wraps authentication (e.g. to hold a call while its client cancels). */
    authenticate?: (
      request: AuthRequest,
      next: (request: AuthRequest) => Promise<Caller>,
    ) => Promise<Caller>;
    /** The issuer; by default the production CSR check, then the test CA's signer. */
    issuer?: LeafIssuer<unknown>;
    /** Admission control (src/server/admission.ts); none by default. */
    admission?: Admission;
    /** Ambient mode's node authorizer; none by default (impersonation refused). */
    impersonation?: Impersonation;
    /** Renewals by workload certificate too (ClientCertAuthenticator), as serve has them. */
    clientCertificates?: boolean;
    /** What serves gRPC on the port; CaServer's default if unset. */
    transport?: GrpcTransport;
  } = {},
): Promise<Reliable> {
  const clock = options.clock ?? systemClock;
  const ca = await makeTestCa({});
  const caState = new TestCaState(ca);
  const dev = await DevTokenIssuer.open(tmp());
  const { destination, lines: logLines } = logLinesDestination();
  const logger = createLogger({
    destination,
    level: 'info',
  });
  const authenticators = [
    ...(options.clientCertificates
      ? [
          new ClientCertAuthenticator({
            trustDomain: TD,
            roots: () => caState.current()?.bundle.roots ?? [],
            clock,
          }),
        ]
      : []),
    new JwtAuthenticator({ issuer: dev.issuer, keys: dev.keySource(), clock }),
  ];
  const next = (r: AuthRequest): Promise<Caller> => authenticateCaller(authenticators, r);
  const wrap = options.authenticate;
  // The production CSR check (the hot-path parser, proof of possession included), then the
  // test CA's signer (src/ca's signer needs a CA built by src/ca, not the test CA).
  const real = workloadLeafIssuer(systemClock);
  let signed = 0;
  const issuer: LeafIssuer<unknown> = options.issuer ?? {
    async parseCsr(pem) {
      await real.parseCsr(pem);
      return testLeafIssuer.parseCsr(pem);
    },
    async sign(snapshot, csr, sans, ttlMs) {
      const leaf = await testLeafIssuer.sign(snapshot, csr as never, sans, ttlMs);
      signed += 1;
      return leaf;
    },
  };
  const serving = new ServingCertificateManager({
    caState,
    issuer: testServingIssuer,
    names: { dnsNames: ['localhost'], ipAddresses: ['127.0.0.1'] },
    clock,
    logger,
  });
  const server = new CaServer<unknown>({
    trustDomain: TD,
    caState,
    authenticate: wrap ? (r) => wrap(r, next) : next,
    issuer,
    admission: options.admission,
    impersonation: options.impersonation,
    ttl: { defaultTtlMs: 24 * HOUR, maxTtlMs: 90 * 24 * HOUR },
    clock,
    grpcAddress: { host: '127.0.0.1', port: 0 },
    serving,
    logger,
    shutdownGraceMs: 2000,
    connections: { ...DEFAULT_CONNECTION_LIMITS, ...options.connections },
    transport: options.transport,
  });
  await serving.start();
  const { port } = await server.start();
  return {
    server,
    ca,
    port,
    target: `localhost:${port}`,
    dev,
    logLines,
    signed: () => signed,
    async metric(name, labels = {}) {
      const metric = server.metrics.registry.getSingleMetric(name);
      if (!metric) throw new Error(`no metric ${name}`);
      const { values } = await metric.get();
      return values
        .filter((v) => Object.entries(labels).every(([k, want]) => v.labels[k] === want))
        .reduce((sum, v) => sum + v.value, 0);
    },
    auditLines: () =>
      logLines
        .map((l) => JSON.parse(l) as Record<string, unknown>)
        .filter((l) => l.audit === 'csr'),
    async stop() {
      await server.stop();
      serving.stop();
    },
  };
}

/** A bearer token the server accepts, for `ns/sa`. */
export function mintToken(r: Reliable, namespace = 'foo', serviceAccount = 'bar'): Promise<string> {
  return r.dev.mintToken({ namespace, serviceAccount, ttlMs: HOUR });
}
