// A hand-written HTTP/2 client over TLS (RFC 9113): it writes exactly the frames a test asks
// for, answers nothing (no SETTINGS ack, no PING ack) and never closes on its own, as a hostile
// or dead peer would. Only the frames it reads from the server are parsed.
import { connect as tlsConnect, type ConnectionOptions, type TLSSocket } from 'node:tls';
import { connect as netConnect, type Socket } from 'node:net';

export const FRAME = {
  DATA: 0,
  HEADERS: 1,
  RST_STREAM: 3,
  SETTINGS: 4,
  PING: 6,
  GOAWAY: 7,
  CONTINUATION: 9,
} as const;
const END_STREAM = 0x1;
const END_HEADERS = 0x4;
export const PREFACE = Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n');

export interface Frame {
  readonly type: number;
  readonly flags: number;
  readonly streamId: number;
  readonly payload: Buffer;
}

export function frame(type: number, flags: number, streamId: number, payload: Buffer): Buffer {
  const header = Buffer.alloc(9);
  header.writeUIntBE(payload.length, 0, 3);
  header[3] = type;
  header[4] = flags;
  header.writeUInt32BE(streamId & 0x7fffffff, 5);
  return Buffer.concat([header, payload]);
}

/** HPACK string literal, no Huffman (RFC 7541 §5.2): 7-bit prefix length. */
function hpackString(s: Buffer): Buffer {
  return Buffer.concat([hpackInt(s.length, 7, 0), s]);
}
function hpackInt(value: number, prefixBits: number, firstByteFlags: number): Buffer {
  const max = (1 << prefixBits) - 1;
  if (value < max) return Buffer.from([firstByteFlags | value]);
  const out = [firstByteFlags | max];
  let v = value - max;
  while (v >= 128) {
    out.push((v % 128) + 128);
    v = Math.floor(v / 128);
  }
  out.push(v);
  return Buffer.from(out);
}

/**
 * A gRPC request's header block: :method POST, :scheme https, :path, :authority localhost,
 * content-type application/grpc, te trailers, then any extra headers, all literal without
 * indexing (RFC 7541 §6.2.2), so the block is as large as its values.
 */
export function grpcHeaderBlock(path: string, extra: Record<string, string> = {}): Buffer {
  const literal = (name: string, value: string): Buffer =>
    Buffer.concat([
      Buffer.from([0x00]),
      hpackString(Buffer.from(name)),
      hpackString(Buffer.from(value)),
    ]);
  return Buffer.concat([
    Buffer.from([0x83, 0x87]), // :method POST, :scheme https (static table 3 and 7)
    literal(':path', path),
    literal(':authority', 'localhost'),
    literal('content-type', 'application/grpc'),
    literal('te', 'trailers'),
    ...Object.entries(extra).map(([n, v]) => literal(n, v)),
  ]);
}

/** HEADERS (+ CONTINUATION frames past 16 KiB, the default max frame size) opening a stream. */
export function headersFrames(streamId: number, block: Buffer, endStream: boolean): Buffer {
  const max = 16_384;
  const parts: Buffer[] = [];
  for (let at = 0; at < block.length || at === 0; at += max) {
    const chunk = block.subarray(at, at + max);
    const last = at + max >= block.length;
    const first = at === 0;
    const flags = (last ? END_HEADERS : 0) | (first && endStream ? END_STREAM : 0);
    parts.push(frame(first ? FRAME.HEADERS : FRAME.CONTINUATION, flags, streamId, chunk));
    if (last) break;
  }
  return Buffer.concat(parts);
}

export function rstStream(streamId: number, code = 0x8 /* CANCEL */): Buffer {
  const payload = Buffer.alloc(4);
  payload.writeUInt32BE(code);
  return frame(FRAME.RST_STREAM, 0, streamId, payload);
}

/** A connection as the test sees it: the frames received, and when the server closed it. */
export interface RawConnection {
  readonly socket: Socket;
  readonly frames: Frame[];
  /** Resolves when the socket closed (the server closed it, or it was reset). */
  readonly closed: Promise<void>;
  isClosed(): boolean;
  /** The GOAWAY the server sent, if it sent one: its error code. */
  goawayCode(): number | undefined;
}

function watch(socket: Socket): RawConnection {
  const frames: Frame[] = [];
  let buffered = Buffer.alloc(0);
  let closed = false;
  socket.on('data', (chunk: Buffer) => {
    buffered = Buffer.concat([buffered, chunk]);
    while (buffered.length >= 9) {
      const length = buffered.readUIntBE(0, 3);
      if (buffered.length < 9 + length) break;
      frames.push({
        type: buffered[3]!,
        flags: buffered[4]!,
        streamId: buffered.readUInt32BE(5) & 0x7fffffff,
        payload: buffered.subarray(9, 9 + length),
      });
      buffered = buffered.subarray(9 + length);
    }
  });
  socket.on('error', () => {}); // A reset is a close for these tests.
  const done = new Promise<void>((resolve) =>
    socket.once('close', () => {
      closed = true;
      resolve();
    }),
  );
  return {
    socket,
    frames,
    closed: done,
    isClosed: () => closed,
    goawayCode: () => {
      const g = frames.find((f) => f.type === FRAME.GOAWAY);
      return g?.payload.readUInt32BE(4);
    },
  };
}

/**
 * TLS with ALPN h2, the connection preface and a SETTINGS frame (empty, or `settings`); nothing
 * else. `tls`: more TLS options, e.g. a client certificate.
 */
export async function rawH2(
  port: number,
  tls: ConnectionOptions = {},
  settings: readonly (readonly [number, number])[] = [],
): Promise<RawConnection> {
  const socket: TLSSocket = tlsConnect({
    host: '127.0.0.1',
    port,
    servername: 'localhost',
    ALPNProtocols: ['h2'],
    rejectUnauthorized: false,
    ...tls,
  });
  const conn = watch(socket);
  await new Promise<void>((resolve, reject) => {
    socket.once('secureConnect', resolve);
    socket.once('error', reject);
  });
  socket.write(Buffer.concat([PREFACE, settingsFrame(settings)]));
  return conn;
}

/** A SETTINGS frame with these [identifier, value] entries (RFC 9113 6.5.1). */
export function settingsFrame(settings: readonly (readonly [number, number])[]): Buffer {
  const payload = Buffer.alloc(6 * settings.length);
  settings.forEach(([id, value], i) => {
    payload.writeUInt16BE(id, 6 * i);
    payload.writeUInt32BE(value, 6 * i + 2);
  });
  return frame(FRAME.SETTINGS, 0, 0, payload);
}

/** A bare TCP connection that sends `bytes` (maybe none) and then nothing. */
export async function rawTcp(port: number, bytes?: Buffer): Promise<RawConnection> {
  const socket = netConnect({ host: '127.0.0.1', port });
  const conn = watch(socket);
  await new Promise<void>((resolve, reject) => {
    socket.once('connect', resolve);
    socket.once('error', reject);
  });
  if (bytes) socket.write(bytes);
  return conn;
}

/** The first bytes of a TLS ClientHello record: a handshake that never finishes. */
export const PARTIAL_CLIENT_HELLO = Buffer.from([0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01]);
