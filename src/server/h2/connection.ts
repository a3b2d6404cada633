import type { TLSSocket } from 'node:tls';
import type { Clock, Timer } from '../../clock.js';
import { HpackDecoder, HpackError } from './hpack-decoder.js';
import { IntKeyMap } from '../int-key-map.js';

/**
 * The server side of one HTTP/2 connection (RFC 9113), as much of it as gRPC needs: streams the
 * client opens, their header blocks decoded by our own HPACK decoder (./hpack-decoder.ts), their
 * DATA, flow control both ways, SETTINGS, PING, GOAWAY, RST_STREAM. No server push, no
 * priorities (both optional). Why not node:http2: it hands every request header value to
 * JavaScript as a V8 external string made in the old generation, and finalising those on the
 * event loop is what set the CA's p99 (docs/performance.md, issue 17). Here a header the client
 * repeats is decoded once per connection and the same string is handed out again.
 *
 * Every limit a hostile peer could push on is bounded here, and passing it ends the connection
 * (GOAWAY with the RFC's error code) or the stream (RST_STREAM, REFUSED_STREAM): frame size,
 * header block size and frame count, SETTINGS entries, what open streams hold, concurrent
 * streams, request time, client resets and the resets they provoke (CVE-2023-44487,
 * CVE-2025-8671; nghttp2's budget), empty DATA frames (CVE-2019-9518), frames we must answer
 * while the peer reads nothing (CVE-2019-9512/9514/9515), and a peer that does not answer our
 * PING. Not validated here: which headers a request carries (pseudo-headers first,
 * connection-specific headers: RFC 9113 8.2.2, 8.3); the gRPC layer reads what it needs.
 */

const PREFACE = Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n', 'latin1');

const FrameType = {
  DATA: 0,
  HEADERS: 1,
  PRIORITY: 2,
  RST_STREAM: 3,
  SETTINGS: 4,
  PUSH_PROMISE: 5,
  PING: 6,
  GOAWAY: 7,
  WINDOW_UPDATE: 8,
  CONTINUATION: 9,
} as const;
const FLAG_END_STREAM = 0x1;
const FLAG_ACK = 0x1;
const FLAG_END_HEADERS = 0x4;
const FLAG_PADDED = 0x8;
const FLAG_PRIORITY = 0x20;

/** RFC 9113 section 7 error codes. */
export const H2Error = {
  NO_ERROR: 0,
  PROTOCOL_ERROR: 1,
  INTERNAL_ERROR: 2,
  FLOW_CONTROL_ERROR: 3,
  STREAM_CLOSED: 5,
  FRAME_SIZE_ERROR: 6,
  REFUSED_STREAM: 7,
  CANCEL: 8,
  COMPRESSION_ERROR: 9,
  ENHANCE_YOUR_CALM: 11,
} as const;

export interface H2Limits {
  /** SETTINGS_MAX_CONCURRENT_STREAMS; a stream above it is refused (REFUSED_STREAM). */
  readonly maxConcurrentStreams: number;
  /**
   * The largest request message a stream may send: its body may be 5 bytes more (gRPC's
   * length prefix), and its receive window is set just above that.
   */
  readonly maxStreamBodyBytes: number;
  /** SETTINGS_MAX_HEADER_LIST_SIZE, and the bound on one header block's encoded bytes. */
  readonly maxHeaderListBytes: number;
  /** A PING every this often; 0: never. */
  readonly keepaliveIntervalMs: number;
  /** A PING unanswered this long ends the connection. */
  readonly keepaliveTimeoutMs: number;
  /** With no stream open this long: GOAWAY(NO_ERROR). 0: never. */
  readonly idleTimeoutMs: number;
}

/**
 * What one connection may hold for its open streams: their header lists (RFC 7541 sizes) and
 * request bodies, each body chunk counted with `CHUNK_OVERHEAD_BYTES` more (the object that holds
 * it: a body sent one byte per DATA frame costs far more than its bytes). 10 MiB, about Node's
 * HTTP/2 default (`maxSessionMemory`, 10 MB), which the grpc-js transport has. Beyond it, new streams are refused
 * (REFUSED_STREAM) and a body that would pass it is reset (ENHANCE_YOUR_CALM).
 */
const MAX_SESSION_BYTES = 10 << 20;
const CHUNK_OVERHEAD_BYTES = 256;
/** A request whose body has not ended this long after its headers is reset (CANCEL). */
const REQUEST_TIMEOUT_MS = 30_000;
/** SETTINGS entries one frame may carry (nghttp2's max_settings): more is a flood (CVE-2020-11080). */
const MAX_SETTINGS_ENTRIES = 32;
/**
 * Stream ids we reset whose late HEADERS are ignored, not a connection error (RFC 9113 5.1): as
 * many as streams may be open at once (ca-server.ts MAX_CONCURRENT_STREAMS).
 */
const RECENTLY_RESET = 1024;
/** The connection's receive window, topped up as DATA arrives (request bodies are bounded above). */
const CONNECTION_WINDOW = 1 << 20;
const OUR_MAX_FRAME_SIZE = 16384;
/** nghttp2's stream-reset budget (its defaults, which Node's HTTP/2 keeps): a burst of 1000, then 33 per second. */
const RESET_BURST = 1000;
const RESET_RATE_PER_S = 33;
/** DATA frames without payload or END_STREAM a connection may send (they cost us, carry nothing). */
const MAX_EMPTY_DATA_FRAMES = 1000;
/** CONTINUATION frames one header block may take (each may be empty: bytes alone do not bound it). */
const MAX_CONTINUATION_FRAMES = 64;
/** Bytes queued to a peer that does not read before the connection is ended (flood). */
const MAX_OUTPUT_BACKLOG = 1 << 20;
/** After our GOAWAY and end(), a peer that keeps the socket open is cut after this. */
const CLOSE_LINGER_MS = 1000;

/** Why a connection ended, for the connection metrics. */
export type H2CloseReason =
  | 'peer' // the client closed, or sent GOAWAY and its streams finished
  | 'idle'
  | 'unresponsive'
  | 'protocol-error'
  | 'flood'
  | 'stopping';

export interface H2Stream {
  readonly id: number;
  /** Flat [name, value, name, value, ...] as the client sent them, pseudo-headers first. */
  readonly headers: readonly string[];
  /** Body chunks so far (copies: the socket's buffers are reused). */
  readonly body: Buffer[];
  bodyBytes: number;
  /** The client reset the stream, or the connection ended before we finished it. */
  cancelled: boolean;
  /** Called once when `cancelled` becomes true. */
  onCancel: (() => void) | undefined;
  /** Called (in a microtask) when DATA that had to wait for a window has all gone out. */
  onDrain?: (() => void) | undefined;
}

export interface H2Handler {
  /** A stream's request headers arrived (END_HEADERS). */
  onStream(connection: H2Connection, stream: H2Stream): void;
  /** The client ended its side of the stream: the whole body is in. */
  onStreamEnd(connection: H2Connection, stream: H2Stream): void;
  /**
   * The body passed `maxStreamBodyBytes` with `overflow` (not kept): answer it (the rest of its
   * DATA is dropped).
   */
  onBodyTooLarge(connection: H2Connection, stream: H2Stream, overflow: Buffer): void;
}

interface StreamState {
  readonly s: H2Stream;
  /** What this stream holds against MAX_SESSION_BYTES. */
  sessionBytes: number;
  /** When its headers came (the clock's ms), for REQUEST_TIMEOUT_MS. */
  readonly openedAt: number;
  remoteClosed: boolean;
  localClosed: boolean;
  headersSent: boolean;
  sendWindow: number;
  /** DATA payloads waiting for send window. */
  readonly pending: Buffer[];
  /** The trailer block, sent once `pending` is empty. */
  trailers: Buffer | undefined;
  /** In the connection's `waiting` list (its DATA waits for a window). */
  waiting: boolean;
  /** Its DATA had to wait for a window since it last all went out: `onDrain` is owed. */
  stalled: boolean;
}

function frameHeader(length: number, type: number, flags: number, stream: number): Buffer {
  const b = Buffer.allocUnsafe(9);
  b[0] = (length >>> 16) & 0xff;
  b[1] = (length >>> 8) & 0xff;
  b[2] = length & 0xff;
  b[3] = type;
  b[4] = flags;
  b.writeUInt32BE(stream & 0x7fffffff, 5);
  return b;
}

export class H2Connection {
  private readonly decoder: HpackDecoder;
  /** Bytes of a frame not yet whole: kept as they came, joined once the frame is complete. */
  private readonly inputChunks: Buffer[] = [];
  private inputBytes = 0;
  /** How many bytes `inputChunks` must reach before parsing can go on. */
  private inputNeeded = 0;
  private settingsSeen = false;
  private readonly recentlyReset = new Set<number>();
  private readonly recentlyResetOrder: number[] = [];
  private prefaceSeen = false;
  /** Not a Map: see ../int-key-map.ts. */
  private readonly streams = new IntKeyMap<StreamState>();
  /**
   * Streams whose DATA waits for a window, in the order they began to wait: a window that opens
   * serves the longest waiting first. (Walking `streams` instead, in its hash order, starved the
   * streams late in that order while new ones kept taking the window: 200 calls on one
   * connection, ambient mode's burst, saw a p99 of 3.7 s against 0.2 s.)
   */
  private waiting: StreamState[] = [];
  /**
   * Entries of `waiting` whose stream finished or was reset before a window opened (a stream
   * window reopened by its own WINDOW_UPDATE, a cancel): the list is compacted once they are half
   * of it, so what it holds stays within twice the streams that really wait.
   */
  private waitingGone = 0;
  private lastStreamId = 0;
  private continuing:
    { id: number; flags: number; parts: Buffer[]; bytes: number; frames: number } | undefined;
  private peerInitialWindow = 65535;
  private peerMaxFrameSize = 16384;
  private connSendWindow = 65535;
  private receivedSinceUpdate = 0;
  private sessionBytes = 0;
  private requestSweep: Timer | undefined;
  private emptyDataFrames = 0;
  private resetBudget = RESET_BURST;
  private resetBudgetAt: number;
  private readonly out: Buffer[] = [];
  private flushScheduled = false;
  private closed = false;
  private goingAway = false;
  private closeReason: H2CloseReason | undefined;
  private keepalive: Timer | undefined;
  private pingTimeout: Timer | undefined;
  private idle: Timer | undefined;
  private linger: Timer | undefined;
  readonly peerAddress: string;

  constructor(
    readonly socket: TLSSocket,
    private readonly handler: H2Handler,
    private readonly limits: H2Limits,
    private readonly clock: Clock,
    private readonly onClosed: (reason: H2CloseReason) => void,
  ) {
    this.decoder = new HpackDecoder({ maxHeaderListBytes: limits.maxHeaderListBytes });
    this.resetBudgetAt = clock.now();
    this.peerAddress = `${socket.remoteAddress ?? ''}:${socket.remotePort ?? ''}`;
    socket.on('data', (chunk: Buffer) => this.onData(chunk));
    socket.on('close', () => this.onSocketClose());
    // Our SETTINGS: concurrent streams, a stream window just above the largest body we take,
    // the header list bound.
    const settings = Buffer.allocUnsafe(18);
    settings.writeUInt16BE(0x3, 0);
    settings.writeUInt32BE(limits.maxConcurrentStreams, 2);
    settings.writeUInt16BE(0x4, 6);
    settings.writeUInt32BE(this.streamWindow(), 8);
    settings.writeUInt16BE(0x6, 12);
    settings.writeUInt32BE(limits.maxHeaderListBytes, 14);
    this.queue(frameHeader(18, FrameType.SETTINGS, 0, 0), settings);
    this.windowUpdate(0, CONNECTION_WINDOW - 65535);
    this.flush();
    if (limits.keepaliveIntervalMs > 0) {
      this.keepalive = clock.every(limits.keepaliveIntervalMs, () => this.ping());
    }
    this.armIdle();
  }

  /** `closed`, read through a getter: a handler called from onFrame may have set it. */
  private get isClosed(): boolean {
    return this.closed;
  }

  private streamWindow(): number {
    return Math.min(this.limits.maxStreamBodyBytes + 1024, 0x7fffffff);
  }

  // ---- input ----

  private onData(chunk: Buffer): void {
    if (this.closed) return;
    let buf = chunk;
    if (this.inputBytes > 0) {
      // A frame (or the preface) arriving in pieces is joined once, when it is whole: joining at
      // every piece costs the square of its size (a peer sending one-byte TLS records).
      this.inputChunks.push(chunk);
      this.inputBytes += chunk.length;
      if (this.inputBytes < this.inputNeeded) return;
      buf = Buffer.concat(this.inputChunks, this.inputBytes);
      this.inputChunks.length = 0;
      this.inputBytes = 0;
    }
    let offset = 0;
    if (!this.prefaceSeen) {
      const n = Math.min(buf.length, PREFACE.length);
      if (!buf.subarray(0, n).equals(PREFACE.subarray(0, n))) {
        this.fail(H2Error.PROTOCOL_ERROR, 'protocol-error');
        return;
      }
      if (buf.length < PREFACE.length) {
        this.keepInput(buf, PREFACE.length);
        return;
      }
      this.prefaceSeen = true;
      offset = PREFACE.length;
    }
    let needed = 9;
    while (buf.length - offset >= 9) {
      const length =
        ((buf[offset] as number) << 16) |
        ((buf[offset + 1] as number) << 8) |
        (buf[offset + 2] as number);
      if (length > OUR_MAX_FRAME_SIZE) {
        this.fail(H2Error.FRAME_SIZE_ERROR, 'protocol-error');
        return;
      }
      if (buf.length - offset - 9 < length) {
        needed = 9 + length;
        break;
      }
      const type = buf[offset + 3] as number;
      const flags = buf[offset + 4] as number;
      const id = buf.readUInt32BE(offset + 5) & 0x7fffffff;
      const payload = buf.subarray(offset + 9, offset + 9 + length);
      offset += 9 + length;
      // A handler may have closed the connection too.
      if (!this.onFrame(type, flags, id, payload) || this.isClosed) return;
    }
    // A partial frame waits for the rest (at most one frame: 9 + 16384 bytes). A copy: a slice
    // would keep the whole chunk it came in.
    if (offset < buf.length) this.keepInput(Buffer.from(buf.subarray(offset)), needed);
    this.flush();
  }

  private keepInput(rest: Buffer, needed: number): void {
    this.inputChunks.push(rest);
    this.inputBytes = rest.length;
    this.inputNeeded = needed;
  }

  /** false: the connection failed. */
  private onFrame(type: number, flags: number, id: number, payload: Buffer): boolean {
    if (!this.settingsSeen) {
      // The client's preface ends with a SETTINGS frame (RFC 9113 3.4).
      if (type !== FrameType.SETTINGS || flags & FLAG_ACK) {
        return this.fail(H2Error.PROTOCOL_ERROR, 'protocol-error');
      }
      this.settingsSeen = true;
    }
    if (this.continuing && type !== FrameType.CONTINUATION) {
      return this.fail(H2Error.PROTOCOL_ERROR, 'protocol-error');
    }
    switch (type) {
      case FrameType.DATA:
        return this.onDataFrame(flags, id, payload);
      case FrameType.HEADERS:
        return this.onHeadersFrame(flags, id, payload);
      case FrameType.CONTINUATION:
        return this.onContinuation(flags, id, payload);
      case FrameType.PRIORITY:
        if (id === 0) return this.fail(H2Error.PROTOCOL_ERROR, 'protocol-error');
        if (payload.length !== 5) return this.resetStream(id, H2Error.FRAME_SIZE_ERROR);
        return true;
      case FrameType.RST_STREAM:
        return this.onReset(id, payload);
      case FrameType.SETTINGS:
        return this.onSettings(flags, id, payload);
      case FrameType.PING:
        if (id !== 0) return this.fail(H2Error.PROTOCOL_ERROR, 'protocol-error');
        if (payload.length !== 8) return this.fail(H2Error.FRAME_SIZE_ERROR, 'protocol-error');
        if (flags & FLAG_ACK) {
          this.pingTimeout?.cancel();
          this.pingTimeout = undefined;
          return true;
        }
        return this.answer(frameHeader(8, FrameType.PING, FLAG_ACK, 0), Buffer.from(payload));
      case FrameType.GOAWAY:
        if (id !== 0) return this.fail(H2Error.PROTOCOL_ERROR, 'protocol-error');
        if (payload.length < 8) return this.fail(H2Error.FRAME_SIZE_ERROR, 'protocol-error');
        // The client opens no more streams; those it has finish, then the connection ends.
        this.goingAway = true;
        this.closeReason ??= 'peer';
        if (this.streams.size === 0) this.end();
        return true;
      case FrameType.WINDOW_UPDATE:
        return this.onWindowUpdate(id, payload);
      case FrameType.PUSH_PROMISE:
        return this.fail(H2Error.PROTOCOL_ERROR, 'protocol-error');
      default:
        return true; // RFC 9113 5.5: unknown frame types are ignored
    }
  }

  private onSettings(flags: number, id: number, payload: Buffer): boolean {
    if (id !== 0) return this.fail(H2Error.PROTOCOL_ERROR, 'protocol-error');
    if (flags & FLAG_ACK) {
      return payload.length === 0 ? true : this.fail(H2Error.FRAME_SIZE_ERROR, 'protocol-error');
    }
    if (payload.length % 6 !== 0) return this.fail(H2Error.FRAME_SIZE_ERROR, 'protocol-error');
    if (payload.length / 6 > MAX_SETTINGS_ENTRIES)
      return this.fail(H2Error.ENHANCE_YOUR_CALM, 'flood');
    let initialWindow: number | undefined;
    for (let i = 0; i < payload.length; i += 6) {
      const key = payload.readUInt16BE(i);
      const value = payload.readUInt32BE(i + 2);
      if (key === 0x2 && value > 1) return this.fail(H2Error.PROTOCOL_ERROR, 'protocol-error');
      if (key === 0x4) {
        if (value > 0x7fffffff) return this.fail(H2Error.FLOW_CONTROL_ERROR, 'protocol-error');
        initialWindow = value; // the last one counts: each walks every stream
      }
      if (key === 0x5) {
        if (value < 16384 || value > 16777215)
          return this.fail(H2Error.PROTOCOL_ERROR, 'protocol-error');
        this.peerMaxFrameSize = value;
      }
      // HEADER_TABLE_SIZE bounds the table our encoder may use: it uses none, so any size does.
    }
    if (initialWindow !== undefined) {
      const delta = initialWindow - this.peerInitialWindow;
      this.peerInitialWindow = initialWindow;
      for (const st of this.streams.values()) {
        st.sendWindow += delta;
        // RFC 9113 6.9.2: a window pushed above 2^31-1 is a connection error.
        if (st.sendWindow > 0x7fffffff)
          return this.fail(H2Error.FLOW_CONTROL_ERROR, 'protocol-error');
      }
    }
    if (!this.answer(frameHeader(0, FrameType.SETTINGS, FLAG_ACK, 0))) return false;
    this.drainPending();
    return true;
  }

  private onHeadersFrame(flags: number, id: number, payload: Buffer): boolean {
    if (id === 0) return this.fail(H2Error.PROTOCOL_ERROR, 'protocol-error');
    let start = 0;
    let end = payload.length;
    if (flags & FLAG_PADDED) {
      if (payload.length < 1) return this.fail(H2Error.FRAME_SIZE_ERROR, 'protocol-error');
      start = 1;
      end -= payload[0] as number;
    }
    if (flags & FLAG_PRIORITY) start += 5;
    if (end < start) return this.fail(H2Error.PROTOCOL_ERROR, 'protocol-error');
    const block = payload.subarray(start, end);
    if (!(flags & FLAG_END_HEADERS)) {
      this.continuing = { id, flags, parts: [Buffer.from(block)], bytes: block.length, frames: 0 };
      if (block.length > this.limits.maxHeaderListBytes) return this.tooLargeBlock();
      return true;
    }
    return this.onHeaderBlock(id, flags, block);
  }

  private onContinuation(flags: number, id: number, payload: Buffer): boolean {
    const c = this.continuing;
    if (!c || c.id !== id) return this.fail(H2Error.PROTOCOL_ERROR, 'protocol-error');
    c.parts.push(Buffer.from(payload));
    c.bytes += payload.length;
    c.frames += 1;
    if (c.bytes > this.limits.maxHeaderListBytes) return this.tooLargeBlock();
    if (c.frames > MAX_CONTINUATION_FRAMES) return this.fail(H2Error.ENHANCE_YOUR_CALM, 'flood');
    if (!(flags & FLAG_END_HEADERS)) return true;
    this.continuing = undefined;
    return this.onHeaderBlock(id, c.flags, Buffer.concat(c.parts, c.bytes));
  }

  /**
   * A header block above the limit is not decoded, and the connection's HPACK table is lost
   * with it: COMPRESSION_ERROR, as nghttp2 answers (RFC 9113 4.3).
   */
  private tooLargeBlock(): false {
    return this.fail(H2Error.COMPRESSION_ERROR, 'protocol-error');
  }

  private onHeaderBlock(id: number, flags: number, block: Buffer): boolean {
    // Decoded whatever becomes of the stream: the block changes the connection's HPACK table.
    let headers: string[];
    try {
      headers = this.decoder.decode(block);
    } catch (e) {
      if (e instanceof HpackError) return this.fail(H2Error.COMPRESSION_ERROR, 'protocol-error');
      throw e;
    }
    const endStream = (flags & FLAG_END_STREAM) !== 0;
    const open = this.streams.get(id);
    if (open) {
      // Trailers from the client (gRPC clients send none): they must end its side (RFC 9113
      // 8.1), and a side already ended takes no more frames (5.1, STREAM_CLOSED).
      if (open.remoteClosed) return this.resetStream(id, H2Error.STREAM_CLOSED);
      if (!endStream) return this.resetStream(id, H2Error.PROTOCOL_ERROR);
      open.remoteClosed = true;
      if (!open.localClosed) this.handler.onStreamEnd(this, open.s);
      return true;
    }
    if (this.recentlyReset.has(id)) {
      // Sent before our RST_STREAM reached the client (trailers after an early answer): RFC 9113
      // 5.1 has them ignored, the block decoded above for its HPACK state.
      return true;
    }
    if (id < this.lastStreamId) {
      // A new stream must have a higher id than every stream before it: RFC 9113 5.1.1,
      // PROTOCOL_ERROR (which lower ids were used is not kept: a closed one is answered so too).
      return this.fail(H2Error.PROTOCOL_ERROR, 'protocol-error');
    }
    if (id === this.lastStreamId) {
      // The stream opened last, which we already closed: RFC 9113 5.1, STREAM_CLOSED.
      return this.fail(H2Error.STREAM_CLOSED, 'protocol-error');
    }
    if (id % 2 === 0) return this.fail(H2Error.PROTOCOL_ERROR, 'protocol-error');
    this.lastStreamId = id;
    // A peer that does not read our answers gets no new work: its backlog would only grow. Nor
    // does one whose open streams hold what a connection may.
    const headerBytes = this.decoder.lastListBytes;
    if (
      this.goingAway ||
      this.streams.size >= this.limits.maxConcurrentStreams ||
      this.socket.writableLength > MAX_OUTPUT_BACKLOG ||
      this.sessionBytes + headerBytes > MAX_SESSION_BYTES
    ) {
      return this.refuse(id);
    }
    this.sessionBytes += headerBytes;
    const st: StreamState = {
      s: { id, headers, body: [], bodyBytes: 0, cancelled: false, onCancel: undefined },
      sessionBytes: headerBytes,
      openedAt: this.clock.now(),
      remoteClosed: endStream,
      localClosed: false,
      headersSent: false,
      sendWindow: this.peerInitialWindow,
      pending: [],
      trailers: undefined,
      waiting: false,
      stalled: false,
    };
    this.streams.set(id, st);
    this.idle?.cancel();
    this.idle = undefined;
    if (!st.remoteClosed)
      this.requestSweep ??= this.clock.every(REQUEST_TIMEOUT_MS / 3, () => this.sweepRequests());
    this.handler.onStream(this, st.s);
    if (st.remoteClosed && !st.localClosed) this.handler.onStreamEnd(this, st.s);
    return true;
  }

  private onDataFrame(flags: number, id: number, payload: Buffer): boolean {
    if (id === 0) return this.fail(H2Error.PROTOCOL_ERROR, 'protocol-error');
    this.receivedSinceUpdate += payload.length;
    if (this.receivedSinceUpdate >= CONNECTION_WINDOW / 2) {
      this.windowUpdate(0, this.receivedSinceUpdate);
      this.receivedSinceUpdate = 0;
    }
    const st = this.streams.get(id);
    if (!st) {
      if (id > this.lastStreamId) return this.fail(H2Error.PROTOCOL_ERROR, 'protocol-error');
      return true; // a stream we finished or reset: its late DATA is dropped
    }
    if (st.remoteClosed) return this.resetStream(id, H2Error.STREAM_CLOSED);
    let data = payload;
    if (flags & FLAG_PADDED) {
      if (payload.length < 1) return this.fail(H2Error.FRAME_SIZE_ERROR, 'protocol-error');
      const pad = payload[0] as number;
      if (pad >= payload.length) return this.fail(H2Error.PROTOCOL_ERROR, 'protocol-error');
      data = payload.subarray(1, payload.length - pad);
    }
    // Frames that carry nothing and end nothing (padding alone counts as nothing).
    if (data.length === 0 && !(flags & FLAG_END_STREAM)) {
      if (++this.emptyDataFrames > MAX_EMPTY_DATA_FRAMES)
        return this.fail(H2Error.ENHANCE_YOUR_CALM, 'flood');
    }
    const s = st.s;
    if (s.bodyBytes + data.length > this.limits.maxStreamBodyBytes + 5) {
      // A message above the limit: the handler answers (gRPC's RESOURCE_EXHAUSTED), which
      // closes our side and resets the client's; if it did not, the stream is reset here.
      this.handler.onBodyTooLarge(this, s, data);
      if (this.streams.has(id)) return this.resetStream(id, H2Error.CANCEL);
      return true;
    }
    if (data.length > 0) {
      const cost = data.length + CHUNK_OVERHEAD_BYTES;
      if (this.sessionBytes + cost > MAX_SESSION_BYTES) {
        return this.resetStream(id, H2Error.ENHANCE_YOUR_CALM);
      }
      s.body.push(Buffer.from(data));
      s.bodyBytes += data.length;
      st.sessionBytes += cost;
      this.sessionBytes += cost;
    }
    if (flags & FLAG_END_STREAM) {
      st.remoteClosed = true;
      if (!st.localClosed) this.handler.onStreamEnd(this, s);
    }
    return true;
  }

  private onReset(id: number, payload: Buffer): boolean {
    if (id === 0) return this.fail(H2Error.PROTOCOL_ERROR, 'protocol-error');
    if (payload.length !== 4) return this.fail(H2Error.FRAME_SIZE_ERROR, 'protocol-error');
    if (id > this.lastStreamId) return this.fail(H2Error.PROTOCOL_ERROR, 'protocol-error');
    const st = this.streams.get(id);
    if (!st) return true;
    if (!this.spendReset()) return false;
    this.cancelStream(st);
    return true;
  }

  /**
   * CVE-2023-44487: a client that opens and resets streams makes us start work it never waits
   * for; CVE-2025-8671 (MadeYouReset): the same through frames that make us reset the stream
   * (a WINDOW_UPDATE of 0, DATA after END_STREAM...). Both spend one budget, nghttp2's as Node
   * had it: a burst of 1000, then 33 per second. false: spent, the connection failed.
   */
  private spendReset(): boolean {
    const now = this.clock.now();
    this.resetBudget = Math.min(
      RESET_BURST,
      this.resetBudget + ((now - this.resetBudgetAt) / 1000) * RESET_RATE_PER_S,
    );
    this.resetBudgetAt = now;
    if (--this.resetBudget < 0) return this.fail(H2Error.ENHANCE_YOUR_CALM, 'flood');
    return true;
  }

  private onWindowUpdate(id: number, payload: Buffer): boolean {
    if (payload.length !== 4) return this.fail(H2Error.FRAME_SIZE_ERROR, 'protocol-error');
    const inc = payload.readUInt32BE(0) & 0x7fffffff;
    if (id === 0) {
      if (inc === 0) return this.fail(H2Error.PROTOCOL_ERROR, 'protocol-error');
      this.connSendWindow += inc;
      if (this.connSendWindow > 0x7fffffff)
        return this.fail(H2Error.FLOW_CONTROL_ERROR, 'protocol-error');
      this.drainPending();
      return true;
    }
    const st = this.streams.get(id);
    if (!st) {
      // On a stream the client never opened: RFC 9113 5.1 (idle), PROTOCOL_ERROR.
      return id > this.lastStreamId ? this.fail(H2Error.PROTOCOL_ERROR, 'protocol-error') : true;
    }
    if (inc === 0) return this.resetStream(id, H2Error.PROTOCOL_ERROR);
    st.sendWindow += inc;
    if (st.sendWindow > 0x7fffffff) return this.resetStream(id, H2Error.FLOW_CONTROL_ERROR);
    this.sendPending(st);
    this.scheduleFlush();
    return true;
  }

  // ---- output ----

  /** The stream's response headers (an encoded block); `endStream`: Trailers-Only. */
  sendHeaders(stream: H2Stream, block: Buffer, endStream: boolean): void {
    const st = this.writable(stream);
    if (!st || st.headersSent) return;
    st.headersSent = true;
    this.queueHeaderBlock(stream.id, block, endStream);
    if (endStream) this.finishLocal(st);
    this.scheduleFlush();
  }

  /** A DATA payload on the stream, sent as the peer's windows allow. */
  sendData(stream: H2Stream, payload: Buffer): void {
    const st = this.writable(stream);
    if (!st || st.trailers) return;
    st.pending.push(payload);
    this.sendPending(st);
    this.scheduleFlush();
  }

  /** The trailer block that ends the stream, after the DATA queued before it. */
  sendTrailers(stream: H2Stream, block: Buffer): void {
    const st = this.writable(stream);
    if (!st || st.trailers) return;
    st.trailers = block;
    this.sendPending(st);
    this.scheduleFlush();
  }

  private writable(stream: H2Stream): StreamState | undefined {
    if (this.closed) return undefined;
    const st = this.streams.get(stream.id);
    return st && !st.localClosed && st.s === stream ? st : undefined;
  }

  private queueHeaderBlock(id: number, block: Buffer, endStream: boolean): void {
    const end = endStream ? FLAG_END_STREAM : 0;
    if (block.length <= this.peerMaxFrameSize) {
      this.queue(frameHeader(block.length, FrameType.HEADERS, FLAG_END_HEADERS | end, id), block);
      return;
    }
    let rest = block;
    let type: number = FrameType.HEADERS;
    let flags = end;
    while (rest.length > 0) {
      const n = Math.min(rest.length, this.peerMaxFrameSize);
      const last = n === rest.length;
      this.queue(
        frameHeader(n, type, flags | (last ? FLAG_END_HEADERS : 0), id),
        rest.subarray(0, n),
      );
      rest = rest.subarray(n);
      type = FrameType.CONTINUATION;
      flags = 0;
    }
  }

  private sendPending(st: StreamState): void {
    while (st.pending.length > 0) {
      const data = st.pending[0] as Buffer;
      const n = Math.min(data.length, st.sendWindow, this.connSendWindow, this.peerMaxFrameSize);
      if (n <= 0 && data.length > 0) {
        st.stalled = true;
        if (!st.waiting) {
          st.waiting = true;
          this.waiting.push(st);
        }
        return;
      }
      this.queue(frameHeader(n, FrameType.DATA, 0, st.s.id), data.subarray(0, n));
      st.sendWindow -= n;
      this.connSendWindow -= n;
      if (n === data.length) st.pending.shift();
      else st.pending[0] = data.subarray(n);
    }
    if (st.stalled) {
      st.stalled = false;
      const s = st.s;
      // Not from inside sendPending: a handler that writes again on 'drain' comes back here.
      if (s.onDrain && !st.trailers) queueMicrotask(() => s.onDrain?.());
    }
    if (st.trailers) {
      this.queueHeaderBlock(st.s.id, st.trailers, true);
      this.finishLocal(st);
    }
  }

  /** A window opened: the waiting streams, longest waiting first; those still short wait on. */
  private drainPending(): void {
    const waiting = this.waiting;
    this.waiting = [];
    this.waitingGone = 0;
    for (const st of waiting) {
      // Not waiting any more: gone since (forget() cleared it), or already served.
      if (!st.waiting) continue;
      st.waiting = false;
      this.sendPending(st);
    }
    // Emptied, as IntKeyMap's replaced arrays are: if it sits in the old generation, the
    // finished streams it held stay unreachable.
    waiting.length = 0;
    this.scheduleFlush();
  }

  private compactWaiting(): void {
    const waiting = this.waiting;
    this.waiting = waiting.filter((st) => st.waiting);
    this.waitingGone = 0;
    waiting.length = 0;
  }

  /**
   * DATA bytes the stream's handler has written that have not gone out for want of a window: a
   * streaming call's backpressure (grpc-server.ts, WritableCall.write).
   */
  unsentBytes(stream: H2Stream): number {
    const st = this.streams.get(stream.id);
    if (!st || st.s !== stream) return 0;
    // Summed when asked (a streaming call's write), not kept up on every call's send.
    let bytes = 0;
    for (const b of st.pending) bytes += b.length;
    return bytes;
  }

  /** Entries in the list of streams waiting for a window, finished ones included (for tests). */
  get waitingEntries(): number {
    return this.waiting.length;
  }

  private finishLocal(st: StreamState): void {
    st.localClosed = true;
    // A client still sending (a server that answers early): RST_STREAM(NO_ERROR), RFC 9113 8.1;
    // queued before forget(), which may end a connection that is going away.
    if (!st.remoteClosed) {
      this.queue(...rstFrame(st.s.id, H2Error.NO_ERROR));
      this.rememberReset(st.s.id);
    }
    this.forget(st);
  }

  private forget(st: StreamState): void {
    if (!this.streams.delete(st.s.id)) return;
    if (st.waiting) {
      st.waiting = false;
      if (++this.waitingGone * 2 > this.waiting.length) this.compactWaiting();
    }
    this.sessionBytes -= st.sessionBytes;
    st.sessionBytes = 0;
    st.s.body.length = 0;
    if (this.streams.size === 0) {
      if (this.goingAway) this.end();
      else this.armIdle();
    }
  }

  private cancelStream(st: StreamState): void {
    st.localClosed = true;
    this.forget(st);
    if (!st.s.cancelled) {
      st.s.cancelled = true;
      st.s.onCancel?.();
    }
  }

  private refuse(id: number): boolean {
    // The client may still be sending on it (DATA, trailers): those are ignored, not an error.
    this.rememberReset(id);
    return this.answer(...rstFrame(id, H2Error.REFUSED_STREAM));
  }

  /** Resets a stream because of what the peer sent (its reset budget pays for a live one). */
  private resetStream(id: number, code: number): boolean {
    const st = this.streams.get(id);
    if (st) {
      if (!this.spendReset()) return false;
      this.cancelStream(st);
    }
    this.rememberReset(id);
    // Not paid for by a live stream (a bad PRIORITY on any id): bounded by what the peer reads.
    return st ? (this.queue(...rstFrame(id, code)), true) : this.answer(...rstFrame(id, code));
  }

  private rememberReset(id: number): void {
    if (this.recentlyReset.has(id)) return;
    this.recentlyReset.add(id);
    if (this.recentlyResetOrder.push(id) > RECENTLY_RESET) {
      this.recentlyReset.delete(this.recentlyResetOrder.shift() as number);
    }
  }

  /** Requests whose body has not ended REQUEST_TIMEOUT_MS after their headers: reset. */
  private sweepRequests(): void {
    const before = this.clock.now() - REQUEST_TIMEOUT_MS;
    let waiting = false;
    for (const st of this.streams.values()) {
      if (st.remoteClosed) continue;
      if (st.openedAt <= before) {
        this.cancelStream(st);
        this.queue(...rstFrame(st.s.id, H2Error.CANCEL));
        this.rememberReset(st.s.id);
      } else waiting = true;
    }
    if (!waiting) {
      this.requestSweep?.cancel();
      this.requestSweep = undefined;
    }
    this.flush();
  }

  private windowUpdate(id: number, inc: number): void {
    const b = Buffer.allocUnsafe(4);
    b.writeUInt32BE(inc, 0);
    this.queue(frameHeader(4, FrameType.WINDOW_UPDATE, 0, id), b);
  }

  /** A frame the peer's frame obliges us to send (ACKs): refused if the peer reads nothing. */
  private answer(...bufs: Buffer[]): boolean {
    if (this.socket.writableLength > MAX_OUTPUT_BACKLOG)
      return this.fail(H2Error.ENHANCE_YOUR_CALM, 'flood');
    this.queue(...bufs);
    return true;
  }

  // ---- connection lifecycle ----

  private ping(): void {
    if (this.closed || this.pingTimeout) return;
    this.queue(frameHeader(8, FrameType.PING, 0, 0), Buffer.alloc(8));
    this.flush();
    this.pingTimeout = this.clock.after(this.limits.keepaliveTimeoutMs, () => {
      this.pingTimeout = undefined;
      this.destroy('unresponsive');
    });
  }

  private armIdle(): void {
    if (this.limits.idleTimeoutMs <= 0 || this.closed || this.goingAway) return;
    this.idle?.cancel();
    this.idle = this.clock.after(this.limits.idleTimeoutMs, () => {
      this.idle = undefined;
      if (this.streams.size === 0) this.goAway('idle');
    });
  }

  /** Connection error: GOAWAY with the code, its streams cancelled, the socket ended. */
  private fail(code: number, reason: H2CloseReason): false {
    if (this.closed) return false;
    this.closeReason = reason;
    this.queueGoAway(code);
    for (const st of this.streams.values()) this.cancelStream(st);
    this.end();
    return false;
  }

  /**
   * Graceful: GOAWAY(NO_ERROR) naming the last stream we took; those finish, later ones are
   * refused, then the connection ends.
   */
  goAway(reason: H2CloseReason): void {
    if (this.closed || this.goingAway) return;
    this.goingAway = true;
    this.closeReason = reason;
    this.queueGoAway(H2Error.NO_ERROR);
    this.flush();
    if (this.streams.size === 0) this.end();
  }

  /** Cuts the connection now: streams cancelled, socket destroyed. */
  destroy(reason: H2CloseReason): void {
    this.closeReason ??= reason;
    for (const st of this.streams.values()) this.cancelStream(st);
    this.closed = true;
    this.socket.destroy();
  }

  private queueGoAway(code: number): void {
    const b = Buffer.allocUnsafe(8);
    b.writeUInt32BE(this.lastStreamId, 0);
    b.writeUInt32BE(code, 4);
    this.queue(frameHeader(8, FrameType.GOAWAY, 0, 0), b);
  }

  private end(): void {
    if (this.closed) return;
    this.flush();
    this.closed = true;
    this.socket.end();
    this.linger = this.clock.after(CLOSE_LINGER_MS, () => this.socket.destroy());
  }

  private onSocketClose(): void {
    this.closed = true;
    this.keepalive?.cancel();
    this.pingTimeout?.cancel();
    this.idle?.cancel();
    this.linger?.cancel();
    this.requestSweep?.cancel();
    for (const st of this.streams.values()) this.cancelStream(st);
    this.onClosed(this.closeReason ?? 'peer');
  }

  private queue(...bufs: Buffer[]): void {
    if (this.closed) return; // ended: nothing more is written
    for (const b of bufs) this.out.push(b);
  }

  private scheduleFlush(): void {
    if (this.flushScheduled) return;
    this.flushScheduled = true;
    // Replies finished in the same turn (the crypto thread answers several at once) go out in
    // one TLS write.
    process.nextTick(() => {
      this.flushScheduled = false;
      this.flush();
    });
  }

  private flush(): void {
    if (this.out.length === 0) return;
    if (this.socket.destroyed || this.socket.writableEnded) {
      this.out.length = 0;
      return;
    }
    const data = this.out.length === 1 ? (this.out[0] as Buffer) : Buffer.concat(this.out);
    this.out.length = 0;
    this.socket.write(data);
  }
}

function rstFrame(id: number, code: number): [Buffer, Buffer] {
  const b = Buffer.allocUnsafe(4);
  b.writeUInt32BE(code, 0);
  return [frameHeader(4, FrameType.RST_STREAM, 0, id), b];
}
