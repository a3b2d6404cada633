import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Registry } from 'prom-client';
import type { Logger } from '../log.js';
import { silentLogger } from '../log.js';
import { formatHostPort, type HostPort } from '../address.js';
import { listenOn } from './listen.js';

/** Why the service is or is not ready; `reason` is shown in the /ready body. */
export interface Readiness {
  readonly ready: boolean;
  readonly reason?: string | undefined;
}

/**
 * A route handler. `match` is the path matched against the route's pattern (capture groups
 * hold path parameters). Throwing or rejecting answers 500 without leaking the error.
 */
export type RouteHandler = (
  req: IncomingMessage,
  res: ServerResponse,
  match: RegExpExecArray,
) => void | Promise<void>;

interface Route {
  readonly method: string;
  readonly pattern: RegExp;
  readonly handler: RouteHandler;
}

export interface MonitoringOptions {
  /** Asked on every /ready. */
  readonly readiness: () => Readiness;
  /** Registries exposed on /metrics, concatenated in order. */
  readonly registries: readonly Registry[];
  readonly logger?: Logger;
}

/**
 * The monitoring HTTP server (Istio's 15014): `/ready`, `/healthz`, `/metrics`, plus whatever
 * other parts of Castellan register with `route()` (e.g. `GET /v1/bundles/<ns>/<pod>`).
 */
export class MonitoringServer {
  private readonly routes: Route[] = [];
  private readonly registries: Registry[];
  private readonly log: Logger;
  private server: Server | undefined;

  constructor(private readonly options: MonitoringOptions) {
    this.registries = [...options.registries];
    this.log = options.logger ?? silentLogger;
    this.route('GET', '/healthz', (_req, res) => send(res, 200, 'ok\n'));
    this.route('GET', '/ready', (_req, res) => {
      const r = this.options.readiness();
      send(
        res,
        r.ready ? 200 : 503,
        r.ready ? 'ready\n' : `not ready: ${r.reason ?? 'starting'}\n`,
      );
    });
    this.route('GET', '/metrics', async (_req, res) => {
      const parts = await Promise.all(this.registries.map((r) => r.metrics()));
      const contentType = this.registries[0]?.contentType ?? 'text/plain; version=0.0.4';
      send(res, 200, parts.join('\n'), contentType);
    });
  }

  /**
   * Registers a route. A string path matches exactly; a RegExp is anchored by the caller
   * (e.g. `/^\/v1\/bundles\/([^/]+)\/([^/]+)$/`). Routes are tried in registration order.
   */
  route(method: string, path: string | RegExp, handler: RouteHandler): void {
    const pattern = typeof path === 'string' ? new RegExp(`^${escapeRegExp(path)}$`) : path;
    this.routes.push({ method: method.toUpperCase(), pattern, handler });
  }

  /** Adds a registry to /metrics (other subsystems keep their metrics in their own). */
  addRegistry(registry: Registry): void {
    this.registries.push(registry);
  }

  /** Starts listening; resolves with the bound address (port 0 picks a free one). */
  async listen(address: HostPort): Promise<HostPort> {
    const server = createServer((req, res) => void this.dispatch(req, res));
    this.server = server;
    await listenOn(server, address, 'monitoring address');
    const bound = server.address() as AddressInfo;
    this.log.info(
      { addr: formatHostPort({ host: bound.address, port: bound.port }) },
      'monitoring listening',
    );
    return { host: bound.address, port: bound.port };
  }

  async close(): Promise<void> {
    const server = this.server;
    if (!server) return;
    this.server = undefined;
    await new Promise<void>((resolve) => {
      server.close(() => resolve());
      server.closeAllConnections();
    });
  }

  private async dispatch(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const path = (req.url ?? '/').split('?')[0] as string;
    let pathMatched = false;
    for (const route of this.routes) {
      const match = route.pattern.exec(path);
      if (!match) continue;
      pathMatched = true;
      if (route.method !== req.method && !(route.method === 'GET' && req.method === 'HEAD')) {
        continue;
      }
      try {
        await route.handler(req, res, match);
      } catch (e) {
        this.log.error({ err: e, path }, 'monitoring route failed');
        if (!res.headersSent) send(res, 500, 'internal error\n');
        else res.destroy();
      }
      return;
    }
    send(res, pathMatched ? 405 : 404, pathMatched ? 'method not allowed\n' : 'not found\n');
  }
}

function send(res: ServerResponse, code: number, body: string, contentType = 'text/plain'): void {
  res.writeHead(code, { 'content-type': contentType, 'cache-control': 'no-store' });
  res.end(body);
}

function escapeRegExp(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}
