import { constants as http2Constants, type Http2Session, type ServerHttp2Stream } from 'node:http2';
import type { Socket } from 'node:net';
import {
  createServer as createTlsServer,
  type Server as TlsServer,
  type TLSSocket,
} from 'node:tls';
import type { experimental } from '@grpc/grpc-js';
import { Counter, Gauge, type Registry } from 'prom-client';
import type { HostPort } from '../address.js';
import type { Clock, Timer } from '../clock.js';
import type { Logger } from '../log.js';
import { listenOn } from './listen.js';

/**
 * How the gRPC port treats its connections (`castellan serve` flags, docs/serve.md). Node's
 * HTTP/2 layer alone keeps a connection open after it sent a connection-error GOAWAY (it stops
 * reading the socket and never closes it), holds a stalled TLS handshake for 120 s, and never
 * closes an idle or dead connection: these bound all three.
 */
export interface ConnectionLimits {
  /** A TLS handshake not finished by then (from the TCP accept) closes the socket. */
  readonly handshakeTimeoutMs: number;
  /** A connection with no call in flight for this long is sent GOAWAY and closed. */
  readonly idleTimeoutMs: number;
  /** A connection quiet for this long is pinged; istiod's keepaliveInterval. */
  readonly keepaliveIntervalMs: number;
  /** A ping not answered by then closes the connection; istiod's keepaliveTimeout. */
  readonly keepaliveTimeoutMs: number;
}

/**
 * Keepalive as istiod's gRPC server has it (istio pkg/keepalive/options.go DefaultOption: Time
 * 30 s, Timeout 10 s). The handshake timeout is far below Node's 120 s default: a TLS handshake
 * takes milliseconds in a cluster; 10 s leaves room for a loaded node. The idle timeout closes
 * a connection nothing used for 5 minutes (sidecars call the CA at certificate rotation, hours
 * apart; their gRPC channel reconnects when it next needs to).
 */
export const DEFAULT_CONNECTION_LIMITS: ConnectionLimits = {
  handshakeTimeoutMs: 10_000,
  idleTimeoutMs: 5 * 60_000,
  keepaliveIntervalMs: 30_000,
  keepaliveTimeoutMs: 10_000,
};

/** The part grpc-js enforces itself on every session it serves (server.js _sessionHandler). */
export function grpcConnectionOptions(limits: ConnectionLimits): Record<string, number> {
  return {
    'grpc.keepalive_time_ms': limits.keepaliveIntervalMs,
    'grpc.keepalive_timeout_ms': limits.keepaliveTimeoutMs,
    'grpc.max_connection_idle_ms': limits.idleTimeoutMs,
  };
}

/**
 * Streams the client reset before it is suspected of a rapid-reset flood (CVE-2023-44487).
 * nghttp2 (in Node) ends such a session itself with GOAWAY(INTERNAL_ERROR) once resets pass its
 * rate limit (a burst of 1000, then 33/s); a client that cancels a call now and then never gets
 * near 100.
 */
const RESETS_BEFORE_SUSPECT = 100;
/** How often a suspected session is probed with a PING (each answered within the keepalive timeout). */
const SUSPECT_PROBE_INTERVAL_MS = 1000;

/** The listener's connection metrics, on the CA server's registry. */
export class ConnectionMetrics {
  readonly closed: Counter<'reason'>;

  constructor(registry: Registry, openConnections: () => number) {
    const registers = [registry];
    this.closed = new Counter({
      name: 'castellan_grpc_connections_closed_count',
      help: 'Connections the gRPC port closed itself, by reason: handshake-timeout, tls-error (a failed TLS handshake), not-h2 (no HTTP/2 by ALPN), no-certificate (no serving certificate yet), unresponsive (an HTTP/2 session that stopped answering PINGs after a reset flood). Keepalive and idle closes are done by grpc-js and not counted here.',
      labelNames: ['reason'],
      registers,
    });
    const open = new Gauge({
      name: 'castellan_grpc_open_connections',
      help: 'TCP connections open on the gRPC port, in the TLS handshake or after it.',
      registers,
      collect() {
        open.set(openConnections());
      },
    });
  }
}

export interface GuardedTlsListenerOptions {
  /** The serving identity and the roots that verify optional client certificates. */
  readonly certificates: experimental.CertificateProvider;
  readonly limits: ConnectionLimits;
  /** Where each TLS connection that negotiated h2 goes (grpc-js's connection injector). */
  readonly onConnection: (socket: TLSSocket) => void;
  readonly metrics: ConnectionMetrics;
  readonly clock: Clock;
  readonly logger: Logger;
}

/**
 * The gRPC port's own TLS listener. grpc-js's listener offers no TLS handshake timeout and no
 * hook on its connections, so we accept and terminate TLS here (handshake timeout, ALPN h2,
 * optional client certificates, the serving certificate swapped on the same listener) and hand
 * each TLS socket to grpc-js (`Server.createConnectionInjector` with insecure credentials: the
 * socket is already TLS, and grpc-js's getAuthContext still reads its peer certificate, as it
 * checks `session.socket instanceof TLSSocket`). Every TCP connection is counted from accept
 * to close, and `watchSession` closes an HTTP/2 session Node has given up on.
 */
export class GuardedTlsListener {
  private readonly server: TlsServer;
  private readonly sockets = new Set<Socket>();
  private identity: experimental.IdentityCertificateUpdate | undefined;
  private ca: experimental.CaCertificateUpdate | undefined;
  private readonly onIdentity = (update: experimental.IdentityCertificateUpdate | null): void => {
    this.identity = update ?? undefined;
    this.updateSecureContext();
  };
  private readonly onCa = (update: experimental.CaCertificateUpdate | null): void => {
    this.ca = update ?? undefined;
    this.updateSecureContext();
  };

  constructor(private readonly options: GuardedTlsListenerOptions) {
    const { limits, metrics, logger } = options;
    this.server = createTlsServer({
      ALPNProtocols: ['h2'],
      // Client certificates are requested, never required (renewal by certificate; tokens
      // otherwise); the authenticators verify them, as with grpc-js's own TLS before.
      requestCert: true,
      rejectUnauthorized: false,
      handshakeTimeout: limits.handshakeTimeoutMs,
    });
    this.server.on('connection', (socket: Socket) => {
      this.sockets.add(socket);
      socket.once('close', () => this.sockets.delete(socket));
      if (!this.identity) {
        metrics.closed.inc({ reason: 'no-certificate' });
        socket.destroy();
      }
    });
    this.server.on('tlsClientError', (err: Error & { code?: string }, socket: TLSSocket) => {
      // Node destroys the socket itself (both for a timeout and a handshake failure).
      const reason = err.code === 'ERR_TLS_HANDSHAKE_TIMEOUT' ? 'handshake-timeout' : 'tls-error';
      metrics.closed.inc({ reason });
      logger.debug({ err, peer: socket.remoteAddress, reason }, 'TLS handshake failed');
      socket.destroy();
    });
    this.server.on('secureConnection', (socket: TLSSocket) => {
      // After the handshake, Node's HTTP/2 session owns the socket; an ECONNRESET without a
      // listener would be thrown.
      socket.on('error', (err) => logger.debug({ err }, 'gRPC connection error'));
      if (socket.alpnProtocol !== 'h2') {
        metrics.closed.inc({ reason: 'not-h2' });
        socket.destroy();
        return;
      }
      options.onConnection(socket);
    });
  }

  /** TCP connections open now, in the handshake or after. */
  openConnections(): number {
    return this.sockets.size;
  }

  /** Follows the certificates and listens; resolves with the bound address. */
  async listen(address: HostPort): Promise<HostPort> {
    this.options.certificates.addIdentityCertificateListener(this.onIdentity);
    this.options.certificates.addCaCertificateListener(this.onCa);
    await listenOn(this.server, address, 'gRPC address');
    const bound = this.server.address();
    return { host: address.host, port: typeof bound === 'object' && bound ? bound.port : 0 };
  }

  /** Stops accepting; connections still in the TLS handshake are closed (grpc-js closes the rest). */
  stopAccepting(): void {
    this.options.certificates.removeIdentityCertificateListener(this.onIdentity);
    this.options.certificates.removeCaCertificateListener(this.onCa);
    this.server.close();
  }

  /** Closes whatever is still open (after grpc-js's shutdown). */
  destroyAll(): void {
    for (const socket of this.sockets) socket.destroy();
  }

  /**
   * Watches one HTTP/2 session for a rapid-reset flood. When nghttp2 ends a flooded session with
   * GOAWAY it stops reading the socket and Node emits nothing — no 'error', no 'close' — so
   * the connection would stay ESTABLISHED (or CLOSE-WAIT) for good, and its client waits. Such a
   * session never answers a PING, while a live one does: once a session has reset
   * RESETS_BEFORE_SUSPECT streams it is probed every second, and destroyed when a probe goes
   * unanswered for the keepalive timeout. (Other connection errors — a header block nghttp2
   * cannot decompress — give no such sign; grpc-js's keepalive PING closes those, within the
   * keepalive interval plus timeout.)
   */
  watchSession(session: Http2Session): void {
    const { clock, limits, metrics } = this.options;
    let resets = 0;
    let probe: Timer | undefined;
    const stopProbing = (): void => {
      probe?.cancel();
      probe = undefined;
    };
    const unresponsive = (): void => {
      stopProbing();
      if (session.destroyed) return;
      metrics.closed.inc({ reason: 'unresponsive' });
      session.destroy();
    };
    const sendProbe = (): void => {
      if (session.destroyed) return;
      const deadline = clock.after(limits.keepaliveTimeoutMs, unresponsive);
      probe = deadline;
      let sent = false;
      try {
        sent = session.ping((err) => {
          deadline.cancel();
          if (err) {
            if (!session.destroyed) unresponsive();
            return;
          }
          probe = clock.after(SUSPECT_PROBE_INTERVAL_MS, sendProbe);
        });
      } catch {
        sent = false;
      }
      if (!sent) unresponsive();
    };
    session.on('stream', (stream: ServerHttp2Stream) => {
      stream.once('close', () => {
        if (stream.rstCode !== http2Constants.NGHTTP2_CANCEL) return;
        resets += 1;
        if (resets === RESETS_BEFORE_SUSPECT) sendProbe();
      });
    });
    session.once('close', stopProbing);
  }

  private updateSecureContext(): void {
    if (!this.identity) return;
    this.server.setSecureContext({
      cert: this.identity.certificate,
      key: this.identity.privateKey,
      ...(this.ca ? { ca: this.ca.caCertificate } : {}),
    });
  }
}
