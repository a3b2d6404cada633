import type { Http2Server, Http2Session } from 'node:http2';
import type { TLSSocket } from 'node:tls';
import {
  Server,
  ServerCredentials,
  type ServiceDefinition,
  type UntypedServiceImplementation,
  loadPackageDefinition,
  type GrpcObject,
} from '@grpc/grpc-js';
import { CastellanError } from '../errors.js';
import { istioCaPackageDefinition, withUndecodableRequestsMarked } from '../api/istioca.js';
import type { Logger } from '../log.js';
import { silentLogger } from '../log.js';
import { formatHostPort, type HostPort } from '../address.js';
import { AuditLog } from './audit.js';
import { createCertificateHandler, type CaServiceDeps } from './create-certificate.js';
import { CaMetrics } from './metrics.js';
import type { Readiness } from './monitoring.js';
import type { ServingCertificateManager } from './serving-certificate.js';
import { GrpcServer } from './h2/grpc-server.js';
import type { GrpcTransport } from './grpc-transport.js';
import {
  ConnectionMetrics,
  DEFAULT_CONNECTION_LIMITS,
  GuardedTlsListener,
  grpcConnectionOptions,
  type ConnectionLimits,
} from './connection-guard.js';

export interface CaServerOptions<C> extends Omit<CaServiceDeps<C>, 'metrics' | 'audit'> {
  readonly grpcAddress: HostPort;
  /**
   * The listener's TLS identity, issued by our own CA and swapped on the same listener. Its
   * owner starts it before `start()` and stops it after `stop()` (the bundle HTTPS listener
   * serves the same certificate).
   */
  readonly serving: ServingCertificateManager;
  readonly logger?: Logger;
  /** How long SIGTERM waits for in-flight calls before cutting them. */
  readonly shutdownGraceMs?: number;
  /** Handshake, idle and keepalive bounds of the gRPC port's connections. */
  readonly connections?: ConnectionLimits;
  /** What serves gRPC on the TLS connections (./grpc-transport.ts); `castellan` by default. */
  readonly transport?: GrpcTransport;
}

/**
 * Streams one connection may have open: SETTINGS_MAX_CONCURRENT_STREAMS, which clients honour by
 * queueing the rest. ztunnel sends a node's burst on one connection (a node runs up to a few
 * hundred pods). istiod allows 100000 (ISTIO_GPRC_MAXSTREAMS, pilot/pkg/features/tuning.go);
 * each open stream here holds memory until its request ends, so the bound is lower on purpose,
 * beside the connection's budget (h2/connection.ts MAX_SESSION_BYTES).
 */
const MAX_CONCURRENT_STREAMS = 1000;

// Bounds memory per call: a CSR is refused above 64 KiB anyway.
const MAX_RECEIVE_MESSAGE_BYTES = 256 * 1024;
/**
 * SETTINGS_MAX_HEADER_LIST_SIZE: node:http2's default (65535), which grpc-js's port had, so a
 * client's metadata limit is where it was (test/reliability/connections.test.ts).
 */
const MAX_HEADER_LIST_BYTES = 65535;

/**
 * The CA service: gRPC CreateCertificate over TLS (serving certificate from our own CA,
 * swapped without a restart) and optional client certificates. Its metrics and readiness are
 * for a monitoring server to show. Other gRPC services may be added with `addService` before
 * `start`.
 */
export class CaServer<C> {
  readonly metrics: CaMetrics;
  private readonly serving: ServingCertificateManager;
  /** What serves gRPC on the TLS connections the listener hands over. */
  private readonly transport:
    | { readonly kind: 'castellan'; readonly server: GrpcServer }
    | { readonly kind: 'grpc-js'; readonly server: Server };
  private readonly log: Logger;
  private readonly listener: GuardedTlsListener;
  private listening = false;
  /** start() has been called: there is a port, and grpc-js sessions, to drain on stop(). */
  private started = false;
  private unsubscribe: (() => void) | undefined;

  constructor(private readonly options: CaServerOptions<C>) {
    this.log = options.logger ?? silentLogger;
    this.metrics = new CaMetrics(options.clock);
    this.serving = options.serving;
    const limits = options.connections ?? DEFAULT_CONNECTION_LIMITS;
    const connectionMetrics = new ConnectionMetrics(this.metrics.registry, () =>
      this.listener.openConnections(),
    );
    let onConnection: (socket: TLSSocket) => void;
    if ((options.transport ?? 'castellan') === 'castellan') {
      const h2 = new GrpcServer({
        maxReceiveMessageBytes: MAX_RECEIVE_MESSAGE_BYTES,
        limits: {
          maxConcurrentStreams: MAX_CONCURRENT_STREAMS,
          maxHeaderListBytes: MAX_HEADER_LIST_BYTES,
          keepaliveIntervalMs: limits.keepaliveIntervalMs,
          keepaliveTimeoutMs: limits.keepaliveTimeoutMs,
          idleTimeoutMs: limits.idleTimeoutMs,
        },
        clock: options.clock,
        onConnectionClosed: (reason) => {
          if (reason === 'unresponsive' || reason === 'protocol-error' || reason === 'flood') {
            connectionMetrics.closed.inc({ reason });
          }
        },
      });
      this.transport = { kind: 'castellan', server: h2 };
      onConnection = (socket) => h2.takeConnection(socket);
    } else {
      const grpc = new Server({
        'grpc.max_receive_message_length': MAX_RECEIVE_MESSAGE_BYTES,
        // channelz (call counters and traces for grpc's debugging service) is bookkeeping on every
        // call that nothing here reads: 2% of the event loop under load.
        'grpc.enable_channelz': 0,
        ...grpcConnectionOptions(limits),
      });
      this.transport = { kind: 'grpc-js', server: grpc };
      // We own the listening socket and TLS (connection-guard.ts); grpc-js serves HTTP/2 on the
      // TLS sockets we hand it.
      const { injector, http2Server } = connectionInjector(grpc);
      http2Server.on('session', (session: Http2Session) => this.listener.watchSession(session));
      onConnection = (socket) => injector.injectConnection(socket);
    }
    this.listener = new GuardedTlsListener({
      certificates: this.serving,
      limits,
      onConnection,
      metrics: connectionMetrics,
      clock: options.clock,
      logger: this.log,
    });
    const pkg = loadPackageDefinition(istioCaPackageDefinition());
    const service = (((pkg['istio'] as GrpcObject)['v1'] as GrpcObject)['auth'] as GrpcObject)[
      'IstioCertificateService'
    ] as { service: ServiceDefinition };
    this.addService(withUndecodableRequestsMarked(service.service), {
      CreateCertificate: createCertificateHandler({
        ...options,
        metrics: this.metrics,
        audit: new AuditLog(this.log),
      }),
    });
  }

  /** Adds another gRPC service on the same TLS port (call before start). */
  addService(service: ServiceDefinition, implementation: UntypedServiceImplementation): void {
    if (this.transport.kind === 'castellan') {
      this.transport.server.addService(service, implementation);
    } else {
      this.transport.server.addService(service, implementation);
    }
  }

  /** Ready = a CA is loaded, its serving certificate is in place, and the gRPC port listens. */
  readiness(): Readiness {
    if (!this.options.caState.current()) return { ready: false, reason: 'no CA loaded yet' };
    if (!this.serving.current()) return { ready: false, reason: 'no serving certificate yet' };
    if (!this.listening) return { ready: false, reason: 'gRPC port not listening' };
    return { ready: true };
  }

  /** Listens on the gRPC address; resolves with the bound address (port 0 picks a free one). */
  async start(): Promise<HostPort> {
    this.started = true;
    const current = this.options.caState.current();
    if (current) this.metrics.observeCa(current);
    this.unsubscribe = this.options.caState.onChange((s) => this.metrics.observeCa(s));
    // The listener re-reads its secure context each time the serving certificate manager
    // publishes (new serving certificate or roots), on the same listener.
    const grpc = await this.listener.listen(this.options.grpcAddress);
    this.listening = true;
    const admission = this.options.admission?.options;
    this.log.info(
      {
        grpc: formatHostPort(grpc),
        // This process's bounds: with --workers, its share of the flags (admissionPerWorker).
        ...(admission && {
          maxInflightCsr: admission.maxInflight,
          maxQueuedCsr: admission.maxQueued,
        }),
      },
      'CA service listening',
    );
    return grpc;
  }

  /**
   * Graceful stop: refuse new calls, let in-flight ones finish (up to the grace period, then
   * cut them). /ready reports the drain meanwhile (`listening` is false).
   */
  async stop(): Promise<void> {
    this.listening = false;
    if (!this.started) {
      // Stopped during start-up, before it listened: no call was ever taken, nothing to drain
      // (grpc-js's tryShutdown would wait out the grace period for sessions that never were).
      this.cutCalls();
      return;
    }
    this.unsubscribe?.();
    this.listener.stopAccepting();
    const grace = this.options.shutdownGraceMs ?? 10_000;
    const t = this.transport;
    await new Promise<void>((resolve) => {
      const timer = this.options.clock.after(grace, () => {
        this.log.warn('in-flight calls did not finish in time; closing them');
        this.cutCalls();
        resolve();
      });
      const drained = (): void => {
        timer.cancel();
        resolve();
      };
      if (t.kind === 'castellan') {
        // GOAWAY to every connection; resolves once they all closed.
        void t.server.drain().then(drained);
      } else {
        t.server.tryShutdown(() => {
          // grpc-js may call this while sessions still run their last calls (Node 24 closes
          // them before grpc-js looks, and grpc-js then counts them done): wait for the sessions.
          void this.listener.sessionsEnded().then(drained);
        });
      }
    });
    this.listener.destroyAll();
  }

  /** Cuts every call in flight now. */
  private cutCalls(): void {
    if (this.transport.kind === 'castellan') this.transport.server.destroyAll();
    else this.transport.server.forceShutdown();
  }
}

/**
 * A grpc-js connection injector, and the HTTP/2 server behind it. grpc-js gives no public hook
 * on its sessions; the injector's http2 server is the one entry its private `http2Servers` map
 * gains (grpc-js 1.14 server.js, experimentalCreateConnectionInjectorWithChannelzRef). Should a
 * grpc-js upgrade move it, the server refuses to start rather than run without the guard
 * (test/reliability pins the behaviour).
 */
function connectionInjector(grpc: Server): {
  injector: ReturnType<Server['createConnectionInjector']>;
  http2Server: Http2Server;
} {
  const servers = (): Map<unknown, unknown> | undefined => {
    const map = (grpc as unknown as { http2Servers?: unknown }).http2Servers;
    return map instanceof Map ? map : undefined;
  };
  const before = new Set(servers()?.keys());
  const injector = grpc.createConnectionInjector(ServerCredentials.createInsecure());
  const added = [...(servers()?.keys() ?? [])].filter((s) => !before.has(s));
  const http2Server = added[0] as Http2Server | undefined;
  if (added.length !== 1 || typeof http2Server?.on !== 'function') {
    throw new CastellanError(
      'internal',
      'this @grpc/grpc-js no longer keeps its injector HTTP/2 server where Castellan looks (server.http2Servers)',
    );
  }
  return { injector, http2Server };
}
