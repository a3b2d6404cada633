import {
  Server,
  experimental,
  type ServiceDefinition,
  type UntypedServiceImplementation,
  loadPackageDefinition,
  type GrpcObject,
} from '@grpc/grpc-js';
import { CastellanError } from '../errors.js';
import { istioCaPackageDefinition } from '../api/istioca.js';
import type { Logger } from '../log.js';
import { silentLogger } from '../log.js';
import { formatHostPort, type HostPort } from '../address.js';
import { AuditLog } from './audit.js';
import { createCertificateHandler, type CaServiceDeps } from './create-certificate.js';
import { CaMetrics } from './metrics.js';
import type { Readiness } from './monitoring.js';
import type { ServingCertificateManager } from './serving-certificate.js';

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
}

// Bounds memory per call: a CSR is refused above 64 KiB anyway.
const MAX_RECEIVE_MESSAGE_BYTES = 256 * 1024;

/**
 * The CA service: gRPC CreateCertificate over TLS (serving certificate from our own CA,
 * swapped without a restart) and optional client certificates. Its metrics and readiness are
 * for a monitoring server to show. Other gRPC services may be added with `addService` before
 * `start`.
 */
export class CaServer<C> {
  readonly metrics: CaMetrics;
  private readonly serving: ServingCertificateManager;
  private readonly grpc: Server;
  private readonly log: Logger;
  private listening = false;
  private unsubscribe: (() => void) | undefined;

  constructor(private readonly options: CaServerOptions<C>) {
    this.log = options.logger ?? silentLogger;
    this.metrics = new CaMetrics(options.clock);
    this.serving = options.serving;
    this.grpc = new Server({
      'grpc.max_receive_message_length': MAX_RECEIVE_MESSAGE_BYTES,
      // channelz (call counters and traces for grpc's debugging service) is bookkeeping on every
      // call that nothing here reads: 2% of the event loop under load.
      'grpc.enable_channelz': 0,
    });
    const pkg = loadPackageDefinition(istioCaPackageDefinition());
    const service = (((pkg['istio'] as GrpcObject)['v1'] as GrpcObject)['auth'] as GrpcObject)[
      'IstioCertificateService'
    ] as { service: ServiceDefinition };
    this.grpc.addService(service.service, {
      CreateCertificate: createCertificateHandler({
        ...options,
        metrics: this.metrics,
        audit: new AuditLog(this.log),
      }),
    });
  }

  /** Adds another gRPC service on the same TLS port (call before start). */
  addService(service: ServiceDefinition, implementation: UntypedServiceImplementation): void {
    this.grpc.addService(service, implementation);
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
    const current = this.options.caState.current();
    if (current) this.metrics.observeCa(current);
    this.unsubscribe = this.options.caState.onChange((s) => this.metrics.observeCa(s));
    // grpc-js's certificate-provider credentials: the server re-reads its secure context each
    // time the provider publishes (new serving certificate or roots), on the same listener.
    // The first provider argument is used as the identity provider, the second for the CA
    // certificates that verify optional client certificates (requested, never required).
    const credentials = experimental.createCertificateProviderServerCredentials(
      this.serving,
      this.serving,
      false,
    );
    const port = await new Promise<number>((resolve, reject) => {
      this.grpc.bindAsync(formatHostPort(this.options.grpcAddress), credentials, (err, p) =>
        err
          ? reject(
              new CastellanError(
                'internal',
                `cannot listen on ${formatHostPort(this.options.grpcAddress)}: ${err.message}`,
                { subject: 'gRPC address' },
              ),
            )
          : resolve(p),
      );
    });
    this.listening = true;
    const grpc = { host: this.options.grpcAddress.host, port };
    this.log.info({ grpc: formatHostPort(grpc) }, 'CA service listening');
    return grpc;
  }

  /**
   * Graceful stop: refuse new calls, let in-flight ones finish (up to the grace period, then
   * cut them). /ready reports the drain meanwhile (`listening` is false).
   */
  async stop(): Promise<void> {
    this.listening = false;
    this.unsubscribe?.();
    const grace = this.options.shutdownGraceMs ?? 10_000;
    await new Promise<void>((resolve) => {
      const timer = this.options.clock.after(grace, () => {
        this.log.warn('in-flight calls did not finish in time; closing them');
        this.grpc.forceShutdown();
        resolve();
      });
      this.grpc.tryShutdown(() => {
        timer.cancel();
        resolve();
      });
    });
  }
}
