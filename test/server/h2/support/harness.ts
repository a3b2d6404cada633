// A GrpcServer (src/server/h2/grpc-server.ts) on a plain TCP listener, with a test service whose
// handlers the test controls, a ManualClock for its timers, and the three kinds of client the
// h2 tests use: raw frames (test/reliability/support/raw-h2.ts), node:http2 and @grpc/grpc-js.
// Plain TCP, not TLS: H2Connection reads and writes the socket it is given and nothing else
// (getAuthContext reads `authorized`, undefined here), and the clients speak h2 with prior
// knowledge. A FakeSocket stands in for the network where a test needs input in pieces of the
// size it picks.
import { EventEmitter } from 'node:events';
import { createServer, type AddressInfo, type Server, type Socket } from 'node:net';
import type { TLSSocket } from 'node:tls';
import * as grpc from '@grpc/grpc-js';
import { GrpcServer } from '../../../../src/server/h2/grpc-server.js';
import type { H2CloseReason, H2Connection } from '../../../../src/server/h2/connection.js';
import { HpackDecoder } from '../../../../src/server/h2/hpack-decoder.js';
import { ManualClock } from '../../../support/manual-clock.js';
import { waitFor } from '../../../support/wait-for.js';
import {
  PREFACE,
  frame,
  grpcHeaderBlock,
  headersFrames,
  rawTcp,
  settingsFrame,
  type Frame,
  type RawConnection,
} from '../../../reliability/support/raw-h2.js';

export const ECHO = '/test.h2.Test/Echo';
export const STREAM = '/test.h2.Test/Stream';

/** Frame types (RFC 9113 6). */
export const T = {
  DATA: 0,
  HEADERS: 1,
  PRIORITY: 2,
  RST_STREAM: 3,
  SETTINGS: 4,
  PING: 6,
  GOAWAY: 7,
  WINDOW_UPDATE: 8,
  CONTINUATION: 9,
} as const;
/** Flags. */
export const F = { END_STREAM: 0x1, ACK: 0x1, END_HEADERS: 0x4, PADDED: 0x8, PRIORITY: 0x20 };
/** SETTINGS identifiers. */
export const S = {
  ENABLE_PUSH: 0x2,
  MAX_CONCURRENT_STREAMS: 0x3,
  INITIAL_WINDOW_SIZE: 0x4,
  MAX_FRAME_SIZE: 0x5,
  MAX_HEADER_LIST_SIZE: 0x6,
};

const identity = (b: Buffer): Buffer => b;
const method = (path: string, responseStream: boolean): grpc.MethodDefinition<Buffer, Buffer> => ({
  path,
  requestStream: false,
  responseStream,
  requestSerialize: identity,
  requestDeserialize: identity,
  responseSerialize: identity,
  responseDeserialize: identity,
});
const SERVICE: grpc.ServiceDefinition = {
  Echo: method(ECHO, false),
  Stream: method(STREAM, true),
};

type UnaryCall = grpc.ServerUnaryCall<Buffer, Buffer>;
type StreamCall = grpc.ServerWritableStream<Buffer, Buffer>;
interface ReceivedUnary {
  readonly call: UnaryCall;
  readonly respond: grpc.sendUnaryData<Buffer>;
}

export interface HarnessOptions {
  readonly maxConcurrentStreams?: number;
  readonly maxReceiveMessageBytes?: number;
  readonly maxHeaderListBytes?: number;
  readonly keepaliveIntervalMs?: number;
  readonly keepaliveTimeoutMs?: number;
  readonly idleTimeoutMs?: number;
}

export interface Raw extends RawConnection {
  send(...bytes: Buffer[]): void;
}

export class Harness {
  readonly clock = new ManualClock();
  /** Close reasons GrpcServer reported, in order. */
  readonly closes: H2CloseReason[] = [];
  /** Server-side sockets, in the order accepted. */
  readonly sockets: Socket[] = [];
  /** The server's connections, in the order accepted (raw and client ones; not `fake()`'s). */
  readonly connections: H2Connection[] = [];
  readonly unaryCalls: ReceivedUnary[] = [];
  readonly streamCalls: StreamCall[] = [];
  /** The unary handler after the call is recorded; default: echo. */
  unary: (call: UnaryCall, respond: grpc.sendUnaryData<Buffer>) => void = (call, respond) => {
    respond(null, call.request);
  };
  /** The streaming handler after the call is recorded; default: the request three times. */
  stream: (call: StreamCall) => void = (call) => {
    for (let i = 0; i < 3; i++) call.write(call.request);
    call.end();
  };
  readonly server: GrpcServer;
  port = 0;
  private readonly listener: Server;
  private readonly cleanups: (() => void)[] = [];

  constructor(o: HarnessOptions = {}) {
    this.server = new GrpcServer({
      maxReceiveMessageBytes: o.maxReceiveMessageBytes ?? 64 * 1024,
      limits: {
        maxConcurrentStreams: o.maxConcurrentStreams ?? 100,
        maxHeaderListBytes: o.maxHeaderListBytes ?? 65535,
        keepaliveIntervalMs: o.keepaliveIntervalMs ?? 0,
        keepaliveTimeoutMs: o.keepaliveTimeoutMs ?? 1000,
        idleTimeoutMs: o.idleTimeoutMs ?? 0,
      },
      clock: this.clock,
      onConnectionClosed: (reason) => this.closes.push(reason),
    });
    this.server.addService(SERVICE, {
      Echo: (call: UnaryCall, respond: grpc.sendUnaryData<Buffer>) => {
        this.unaryCalls.push({ call, respond });
        this.unary(call, respond);
      },
      Stream: (call: StreamCall) => {
        this.streamCalls.push(call);
        this.stream(call);
      },
    });
    this.listener = createServer((socket) => {
      this.sockets.push(socket);
      socket.on('error', () => {}); // as the production listener: a reset is a close
      const c = this.server.takeConnection(socket as unknown as TLSSocket);
      if (c) this.connections.push(c);
    });
  }

  static async start(o: HarnessOptions = {}): Promise<Harness> {
    const h = new Harness(o);
    await new Promise<void>((resolve) => h.listener.listen(0, '127.0.0.1', resolve));
    h.port = (h.listener.address() as AddressInfo).port;
    return h;
  }

  get address(): string {
    return `127.0.0.1:${this.port}`;
  }

  /** A raw connection: the preface and one SETTINGS frame with `settings`, then nothing. */
  async raw(settings: readonly (readonly [number, number])[] = []): Promise<Raw> {
    return this.rawBytes(Buffer.concat([PREFACE, settingsFrame(settings)]));
  }

  /** A raw connection that sends `bytes` first (maybe not even a preface). */
  async rawBytes(bytes: Buffer): Promise<Raw> {
    const conn = await rawTcp(this.port, bytes);
    this.cleanups.push(() => conn.socket.destroy());
    return Object.assign(conn, {
      send: (...b: Buffer[]) => {
        conn.socket.write(Buffer.concat(b));
      },
    });
  }

  /** A connection on a FakeSocket (nothing sent yet: `feed` the preface). */
  fake(): FakeSocket {
    const socket = new FakeSocket();
    this.cleanups.push(() => socket.destroy());
    this.server.takeConnection(socket as unknown as TLSSocket);
    return socket;
  }

  /** A grpc-js client with a connection of its own (closed by `close()`). */
  client(options: grpc.ChannelOptions = {}): grpc.Client {
    const c = new grpc.Client(this.address, grpc.credentials.createInsecure(), {
      'grpc.use_local_subchannel_pool': 1,
      ...options,
    });
    this.cleanups.push(() => c.close());
    return c;
  }

  /** Registers something for `close()` to end (a node:http2 session, ...). */
  onClose(f: () => void): void {
    this.cleanups.push(f);
  }

  /** Waits for the `n`th (1-based) close GrpcServer reports and returns its reason. */
  async closed(n: number): Promise<H2CloseReason> {
    return waitFor(`connection close #${n} reported`, () => this.closes[n - 1]);
  }

  async close(): Promise<void> {
    for (const f of this.cleanups.splice(0)) f();
    this.server.destroyAll();
    await new Promise<void>((resolve) => this.listener.close(() => resolve()));
  }
}

// ---- a socket without a network ----

/**
 * What H2Connection uses of a socket, with no network under it: the test's input arrives in
 * 'data' events of the sizes it picks (loopback TCP coalesces small writes), at once; what the
 * server writes is parsed into `frames`, as a RawConnection's.
 */
export class FakeSocket extends EventEmitter {
  readonly frames: Frame[] = [];
  readonly remoteAddress = '127.0.0.1';
  readonly remotePort = 0;
  readonly writableLength = 0;
  destroyed = false;
  writableEnded = false;
  private written = Buffer.alloc(0);

  /** Emits `bytes` as 'data' events of `piece` bytes (the last maybe fewer). */
  feed(bytes: Buffer, piece = bytes.length): void {
    for (let at = 0; at < bytes.length; at += piece) {
      this.emit('data', bytes.subarray(at, at + piece));
    }
  }

  write(data: Buffer): boolean {
    if (this.writableEnded) throw new Error('FakeSocket: write after end');
    this.written = Buffer.concat([this.written, data]);
    while (this.written.length >= 9) {
      const length = this.written.readUIntBE(0, 3);
      if (this.written.length < 9 + length) break;
      this.frames.push({
        type: this.written[3]!,
        flags: this.written[4]!,
        streamId: this.written.readUInt32BE(5) & 0x7fffffff,
        payload: this.written.subarray(9, 9 + length),
      });
      this.written = this.written.subarray(9 + length);
    }
    return true;
  }

  end(): void {
    this.writableEnded = true;
  }

  destroy(): void {
    if (this.destroyed) return;
    this.destroyed = true;
    this.writableEnded = true;
    process.nextTick(() => this.emit('close'));
  }
}

// ---- frames ----

export { settingsFrame };

export function dataFrame(streamId: number, payload: Buffer, endStream = false): Buffer {
  return frame(T.DATA, endStream ? F.END_STREAM : 0, streamId, payload);
}

export function windowUpdate(streamId: number, increment: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(increment);
  return frame(T.WINDOW_UPDATE, 0, streamId, b);
}

export function pingFrame(payload: Buffer, ack = false): Buffer {
  return frame(T.PING, ack ? F.ACK : 0, 0, payload);
}

export function goawayFrame(lastStreamId: number, code: number): Buffer {
  const b = Buffer.alloc(8);
  b.writeUInt32BE(lastStreamId, 0);
  b.writeUInt32BE(code, 4);
  return frame(T.GOAWAY, 0, 0, b);
}

/** A gRPC length-prefixed message. */
export function grpcMessage(payload: Buffer, compressed = false): Buffer {
  const prefix = Buffer.alloc(5);
  prefix[0] = compressed ? 1 : 0;
  prefix.writeUInt32BE(payload.length, 1);
  return Buffer.concat([prefix, payload]);
}

/** A whole request on `streamId`: HEADERS, then one DATA frame with the message and END_STREAM. */
export function request(
  streamId: number,
  message: Buffer,
  path = ECHO,
  extra: Record<string, string> = {},
): Buffer {
  return Buffer.concat([
    headersFrames(streamId, grpcHeaderBlock(path, extra), false),
    dataFrame(streamId, grpcMessage(message), true),
  ]);
}

// ---- what the server sent ----

/** Anything whose received frames a test reads: a RawConnection, a FakeSocket. */
type Frames = Pick<RawConnection, 'frames'>;

/** The header list size (RFC 7541 4.1: name + value + 32 octets per field) of a header block. */
export function headerListBytes(block: Buffer): number {
  const flat = new HpackDecoder({ maxHeaderListBytes: 1 << 24 }).decode(block);
  let bytes = 0;
  for (let i = 0; i < flat.length; i += 2) bytes += flat[i]!.length + flat[i + 1]!.length + 32;
  return bytes;
}

export interface HeaderBlock {
  readonly streamId: number;
  readonly endStream: boolean;
  /** HEADERS plus CONTINUATION frames it took. */
  readonly frames: number;
  readonly fields: readonly (readonly [string, string])[];
}

/** The complete header blocks the server sent (on `streamId`), decoded by our HPACK decoder. */
export function headerBlocks(conn: Frames, streamId?: number): HeaderBlock[] {
  const out: HeaderBlock[] = [];
  let open: { streamId: number; endStream: boolean; parts: Buffer[] } | undefined;
  for (const f of conn.frames) {
    if (f.type === T.HEADERS) {
      open = { streamId: f.streamId, endStream: (f.flags & F.END_STREAM) !== 0, parts: [] };
    } else if (f.type !== T.CONTINUATION || !open) {
      continue;
    }
    open.parts.push(f.payload);
    if (f.flags & F.END_HEADERS) {
      const flat = new HpackDecoder({ maxHeaderListBytes: 1 << 24 }).decode(
        Buffer.concat(open.parts),
      );
      const fields: [string, string][] = [];
      for (let i = 0; i < flat.length; i += 2) fields.push([flat[i]!, flat[i + 1]!]);
      if (streamId === undefined || open.streamId === streamId) {
        out.push({ ...open, frames: open.parts.length, fields });
      }
      open = undefined;
    }
  }
  return out;
}

export function field(block: HeaderBlock, name: string): string | undefined {
  return block.fields.find(([n]) => n === name)?.[1];
}

export function framesOf(conn: Frames, type: number, streamId?: number): Frame[] {
  return conn.frames.filter(
    (f) => f.type === type && (streamId === undefined || f.streamId === streamId),
  );
}

/** The DATA payloads sent on a stream, concatenated. */
export function dataOf(conn: Frames, streamId: number): Buffer {
  return Buffer.concat(framesOf(conn, T.DATA, streamId).map((f) => f.payload));
}

/** The gRPC messages in a response body. */
export function messagesOf(body: Buffer): Buffer[] {
  const out: Buffer[] = [];
  for (let at = 0; at < body.length;) {
    const length = body.readUInt32BE(at + 1);
    out.push(body.subarray(at + 5, at + 5 + length));
    at += 5 + length;
  }
  return out;
}

/** The RST_STREAM code the server sent on a stream, if it sent one. */
export function rstCode(conn: Frames, streamId: number): number | undefined {
  return framesOf(conn, T.RST_STREAM, streamId)[0]?.payload.readUInt32BE(0);
}

/** The trailer block (Trailers-Only or trailers) the server ended `streamId` with. */
export async function trailersOf(conn: Frames, streamId: number): Promise<HeaderBlock> {
  return waitFor(`trailers on stream ${streamId}`, () =>
    headerBlocks(conn, streamId).find((b) => b.endStream),
  );
}

/**
 * Sends a PING and waits for its ACK: the server has read and acted on everything sent before
 * (it handles input in order, and answers in order).
 */
export async function roundTrip(conn: Raw, tag: string): Promise<void> {
  const payload = Buffer.from(tag.padEnd(8, '.').slice(0, 8), 'latin1');
  conn.send(pingFrame(payload));
  await waitFor(`PING ${tag} answered`, () =>
    conn.frames.some((f) => f.type === T.PING && f.flags & F.ACK && f.payload.equals(payload)),
  );
}

interface Goaway {
  readonly lastStreamId: number;
  readonly code: number;
}

export async function goawayOf(conn: RawConnection): Promise<Goaway> {
  const f = await waitFor('GOAWAY', () => framesOf(conn, T.GOAWAY)[0]);
  return { lastStreamId: f.payload.readUInt32BE(0) & 0x7fffffff, code: f.payload.readUInt32BE(4) };
}

/** The server answered a connection error: GOAWAY with `code`, then it closed the connection. */
export async function connectionError(conn: RawConnection, code: number): Promise<Goaway> {
  const g = await goawayOf(conn);
  if (g.code !== code) throw new Error(`GOAWAY code ${g.code}, expected ${code}`);
  await waitFor('connection closed by the server', () => conn.isClosed());
  return g;
}

/** A fresh raw connection gets a unary call answered (OK, the request echoed). */
export async function stillServes(h: Harness): Promise<void> {
  const conn = await h.raw();
  conn.send(request(1, Buffer.from('still serving')));
  const t = await trailersOf(conn, 1);
  if (field(t, 'grpc-status') !== '0') throw new Error(`grpc-status ${field(t, 'grpc-status')}`);
  const got = messagesOf(dataOf(conn, 1));
  if (got.length !== 1 || got[0]!.toString() !== 'still serving') throw new Error('wrong echo');
  conn.socket.destroy();
}
