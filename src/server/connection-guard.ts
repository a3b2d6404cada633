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
/** How often sessions are looked at for bytes read that opened no stream. */
const SWEEP_INTERVAL_MS = 1000;

/** The listener's connection metrics, on the CA server's registry. */
export class ConnectionMetrics {
  readonly closed: Counter<'reason'>;
  readonly probes: Counter<'outcome'>;

  constructor(registry: Registry, openConnections: () => number) {
    const registers = [registry];
    this.closed = new Counter({
      name: 'castellan_grpc_connections_closed_total',
      help: 'Connections the gRPC port closed itself, by reason: handshake-timeout, tls-error (a failed TLS handshake), not-h2 (no HTTP/2 by ALPN), no-certificate (no serving certificate yet), stopping (a TLS handshake that ended after a graceful stop began), unresponsive (a connection that did not answer a PING: with --grpc-transport grpc-js, a probe of a session nghttp2 ended after a reset flood or an undecodable header block; with ours, keepalive), protocol-error (an HTTP/2 protocol error: GOAWAY with its code; our transport), flood (a reset flood, empty frames, or answers the peer does not read: GOAWAY(ENHANCE_YOUR_CALM); our transport). Idle closes, and keepalive closes by grpc-js, are not counted here.',
      labelNames: ['reason'],
      registers,
    });
    this.probes = new Counter({
      name: 'castellan_grpc_ping_probes_total',
      help: 'PING probes of HTTP/2 sessions that may have been ended by nghttp2 (a reset flood, bytes that opened no stream), by outcome: sent, answered. One sent and not answered closes the connection (castellan_grpc_connections_closed_total{reason="unresponsive"}).',
      labelNames: ['outcome'],
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
  /** Where each TLS connection that negotiated h2 goes: the gRPC transport (ca-server.ts). */
  readonly onConnection: (socket: TLSSocket) => void;
  readonly metrics: ConnectionMetrics;
  readonly clock: Clock;
  readonly logger: Logger;
}

/**
 * The gRPC port's own TLS listener. We accept and terminate TLS here (handshake timeout, ALPN
 * h2, optional client certificates, the serving certificate swapped on the same listener) and
 * hand each TLS socket to the gRPC transport: ours (src/server/h2/), or grpc-js
 * (`Server.createConnectionInjector` with insecure credentials: the socket is already TLS, and
 * grpc-js's getAuthContext still reads its peer certificate, as it checks
 * `session.socket instanceof TLSSocket`; grpc-js's own listener offers no handshake timeout and
 * no hook on its connections). Every TCP connection is counted from accept to close. With
 * grpc-js, `watchSession` closes an HTTP/2 session Node has given up on; ours closes its own.
 */
export class GuardedTlsListener {
  private readonly server: TlsServer;
  private readonly sockets = new Set<Socket>();
  private readonly sessions = new Set<WatchedSession>();
  /** Who waits in sessionsEnded() for the last session to close. */
  private sessionsEndedWaiters: (() => void)[] = [];
  private sweeper: Timer | undefined;
  private stopped = false;
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
      // Nagle's algorithm off, as on istiod's port: Go sets TCP_NODELAY on every TCP connection
      // it makes or accepts (net/tcpsock.go, newTCPConn: `setNoDelay(fd, true)`). With it on, a small write behind one the client has not yet acknowledged
      // waits for that ACK, and a client that delays its ACKs (Linux: 40 ms) holds it that long.
      // Measured at P-256 c=64 (docs/performance.md, "Nagle"): each time a connection had
      // received half its window (512 KiB, ≈ 1,200 calls), the WINDOW_UPDATE went out on its own
      // and the answer after it waited: every connection's call took 41–44 ms instead of ≈ 10,
      // together (with a 256 KiB half-window, twice as often).
      socket.setNoDelay(true);
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
      // After the handshake the transport owns the socket; an ECONNRESET without a listener
      // would be thrown.
      socket.on('error', (err) => logger.debug({ err }, 'gRPC connection error'));
      // A handshake that ends after stopAccepting opens no session: a graceful stop waits for
      // the sessions, and a transport that is shut down would serve none on it.
      if (this.stopped) {
        metrics.closed.inc({ reason: 'stopping' });
        socket.destroy();
        return;
      }
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
    this.sweeper = this.options.clock.every(SWEEP_INTERVAL_MS, () => this.sweep(), {
      keepAlive: false,
    });
    const bound = this.server.address();
    return { host: address.host, port: typeof bound === 'object' && bound ? bound.port : 0 };
  }

  /**
   * Stops accepting and sweeping; open connections stay (the transport drains them, then
   * `destroyAll` closes what is left, handshakes included), but a handshake that ends from now on
   * is closed (`reason="stopping"`) instead of becoming a session.
   */
  stopAccepting(): void {
    this.stopped = true;
    this.options.certificates.removeIdentityCertificateListener(this.onIdentity);
    this.options.certificates.removeCaCertificateListener(this.onCa);
    this.sweeper?.cancel();
    this.server.close();
  }

  /** Closes whatever is still open (after the transport's shutdown). */
  destroyAll(): void {
    for (const socket of this.sockets) socket.destroy();
  }

  /**
   * Watches one HTTP/2 session for the state Node cannot get out of by itself. When nghttp2 ends
   * a session with a connection error — a rapid-reset flood (GOAWAY INTERNAL_ERROR), a header
   * block it cannot decompress, such as one header field over 64 KiB (GOAWAY
   * COMPRESSION_ERROR) — it stops reading the socket and Node emits nothing: no 'error', no
   * 'close'. The connection would stay ESTABLISHED (or CLOSE-WAIT) for good, and a client that
   * waits for its stream (gRPC core does, the stream being at or below the GOAWAY's last stream
   * id) waits until its deadline. Such a session never answers a PING, while a live one does. A
   * session is probed (PING; no answer within the keepalive timeout → destroyed) when it:
   * - reset RESETS_BEFORE_SUSPECT streams: then every second, for as long as it lives;
   * - read bytes in the last sweep (a second) that opened no stream, with none in flight (a
   *   header block that never became a stream; also a client's own PING or SETTINGS, which
   *   costs that client one PING back).
   * grpc-js's keepalive would close it too, but only after the keepalive interval (30 s).
   */
  watchSession(session: Http2Session): void {
    const watched = new WatchedSession(session, this.options);
    this.sessions.add(watched);
    session.once('close', () => {
      watched.stop();
      this.sessions.delete(watched);
      if (this.sessions.size > 0) return;
      const waiters = this.sessionsEndedWaiters;
      this.sessionsEndedWaiters = [];
      for (const resolve of waiters) resolve();
    });
  }

  /**
   * Resolves once no HTTP/2 session is open (at once if none is). A graceful stop waits for it:
   * grpc-js's tryShutdown reports a session finished at once when it finds it already closed —
   * its GOAWAY sent, streams still running — and Node 24's Http2Server.close() closes them so
   * before grpc-js looks; Node 20's does not (test/server/ca-server.test.ts, stop()).
   */
  sessionsEnded(): Promise<void> {
    if (this.sessions.size === 0) return Promise.resolve();
    return new Promise((resolve) => this.sessionsEndedWaiters.push(resolve));
  }

  private sweep(): void {
    for (const watched of this.sessions) watched.sweep();
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

/** One HTTP/2 session under watch (GuardedTlsListener.watchSession). */
class WatchedSession {
  private resets = 0;
  private streamsOpened = 0;
  private streamsInFlight = 0;
  private streamsAtSweep = 0;
  private bytesAtSweep: number;
  /** The pending probe deadline, or the timer of the next probe of a suspect. */
  private probe: Timer | undefined;
  private probing = false;
  private suspect = false;

  constructor(
    private readonly session: Http2Session,
    private readonly options: Pick<GuardedTlsListenerOptions, 'clock' | 'limits' | 'metrics'>,
  ) {
    this.bytesAtSweep = this.bytesRead();
    session.on('stream', (stream: ServerHttp2Stream) => {
      this.streamsOpened += 1;
      this.streamsInFlight += 1;
      stream.once('close', () => {
        this.streamsInFlight -= 1;
        if (stream.rstCode !== http2Constants.NGHTTP2_CANCEL) return;
        this.resets += 1;
        if (this.resets === RESETS_BEFORE_SUSPECT) {
          this.suspect = true;
          this.sendProbe();
        }
      });
    });
  }

  /** Called every SWEEP_INTERVAL_MS: bytes read that opened no stream earn a probe. */
  sweep(): void {
    const read = this.bytesRead();
    if (read !== this.bytesAtSweep && this.streamsOpened === this.streamsAtSweep) {
      if (this.streamsInFlight === 0) this.sendProbe();
    }
    this.bytesAtSweep = read;
    this.streamsAtSweep = this.streamsOpened;
  }

  stop(): void {
    this.probe?.cancel();
    this.probe = undefined;
  }

  /** Plaintext bytes the session has read (the TLS socket counts what it hands to nghttp2). */
  private bytesRead(): number {
    // Undefined once the session is destroyed, before its 'close' removes it from the sweep.
    const socket = this.session.socket as Socket | undefined;
    return socket?.bytesRead ?? 0;
  }

  private sendProbe(): void {
    const { session } = this;
    if (this.probing || session.destroyed) return;
    this.probing = true;
    this.probe?.cancel();
    const deadline = this.options.clock.after(this.options.limits.keepaliveTimeoutMs, () =>
      this.unresponsive(),
    );
    this.probe = deadline;
    let sent = false;
    try {
      sent = session.ping((err) => {
        deadline.cancel();
        this.probing = false;
        if (err) {
          this.unresponsive();
          return;
        }
        this.options.metrics.probes.inc({ outcome: 'answered' });
        // The answer itself is bytes read that opened no stream: it must not earn the next
        // probe (else every live idle session would be pinged each sweep, for ever).
        this.bytesAtSweep = this.bytesRead();
        if (this.suspect) {
          this.probe = this.options.clock.after(SUSPECT_PROBE_INTERVAL_MS, () => this.sendProbe());
        }
      });
      this.options.metrics.probes.inc({ outcome: 'sent' });
    } catch {
      sent = false;
    }
    if (!sent) this.unresponsive();
  }

  private unresponsive(): void {
    this.stop();
    if (this.session.destroyed) return;
    this.options.metrics.closed.inc({ reason: 'unresponsive' });
    this.session.destroy();
  }
}
