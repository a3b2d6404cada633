import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Counter, Gauge, Registry } from 'prom-client';
import type { Clock } from '../clock.js';
import { parseHostPort } from '../address.js';
import { CastellanError } from '../errors.js';

/**
 * The agent's metrics, in a registry of its own (never the global one: tests and an embedding
 * process may run several agents). Names follow Istio's agent where one exists
 * (cert_expiry_seconds), under our prefix.
 */
export class AgentMetrics {
  readonly registry = new Registry();
  private notAfter: number | undefined;
  readonly renewals: Counter;
  readonly failures: Counter<'reason'>;
  readonly requests: Counter;

  constructor(private readonly clock: Clock) {
    new Gauge({
      name: 'castellan_agent_cert_expiry_seconds',
      help: 'Seconds left before the current certificate expires (negative once expired).',
      registers: [this.registry],
      collect: () => {
        // Computed at scrape time so it keeps counting down while the CA is unreachable.
        const g = this.registry.getSingleMetric('castellan_agent_cert_expiry_seconds') as Gauge;
        if (this.notAfter !== undefined) g.set((this.notAfter - this.clock.now()) / 1000);
      },
    });
    new Gauge({
      name: 'castellan_agent_cert_expiry_timestamp_seconds',
      help: 'NotAfter of the current certificate, Unix seconds.',
      registers: [this.registry],
      collect: () => {
        const g = this.registry.getSingleMetric(
          'castellan_agent_cert_expiry_timestamp_seconds',
        ) as Gauge;
        if (this.notAfter !== undefined) g.set(this.notAfter / 1000);
      },
    });
    this.renewals = new Counter({
      name: 'castellan_agent_cert_renewals_total',
      help: 'Certificates obtained and written.',
      registers: [this.registry],
    });
    this.failures = new Counter({
      name: 'castellan_agent_cert_renewal_failures_total',
      help: 'Failed attempts to obtain a certificate, by error kind.',
      labelNames: ['reason'],
      registers: [this.registry],
    });
    this.requests = new Counter({
      name: 'castellan_agent_ca_requests_total',
      help: 'CreateCertificate calls made to the CA.',
      registers: [this.registry],
    });
  }

  certificateWritten(notAfter: number): void {
    this.notAfter = notAfter;
  }
}

export interface MonitoringServer {
  readonly address: AddressInfo;
  close(): Promise<void>;
}

/** Serves `/ready` (200 once `isReady()`, else 503) and `/metrics` (Prometheus text). */
export async function startMonitoringServer(
  hostPort: string,
  metrics: AgentMetrics,
  isReady: () => boolean,
): Promise<MonitoringServer> {
  const { host, port } = parseHostPort(hostPort, '--monitoring-addr');
  const server: Server = createServer((req, res) => {
    const path = (req.url ?? '/').split('?')[0];
    if (path === '/ready' || path === '/healthz/ready') {
      const ready = isReady();
      res.writeHead(ready ? 200 : 503, { 'content-type': 'text/plain' });
      res.end(ready ? 'ready\n' : 'no valid certificate yet\n');
    } else if (path === '/metrics') {
      metrics.registry.metrics().then(
        (text) => {
          res.writeHead(200, { 'content-type': metrics.registry.contentType });
          res.end(text);
        },
        () => {
          res.writeHead(500).end();
        },
      );
    } else {
      res.writeHead(404, { 'content-type': 'text/plain' });
      res.end('not found\n');
    }
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', (e) =>
      reject(
        new CastellanError('unavailable', `cannot listen on ${hostPort}: ${e.message}`, {
          subject: '--monitoring-addr',
          cause: e,
        }),
      ),
    );
    server.listen(port, host, () => resolve());
  });
  return {
    address: server.address() as AddressInfo,
    close: () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  };
}
