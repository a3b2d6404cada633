import { EventEmitter } from 'node:events';
import type { TLSSocket } from 'node:tls';
import { gunzipSync, inflateSync } from 'node:zlib';
import { Metadata, status, type ServiceDefinition } from '@grpc/grpc-js';
import type { Clock, Timer } from '../../clock.js';
import {
  H2Connection,
  type H2CloseReason,
  type H2Handler,
  type H2Limits,
  type H2Stream,
} from './connection.js';

/**
 * gRPC over our HTTP/2 connection (./connection.ts): unary and server-streaming methods, handed
 * to the same grpc-js-shaped handlers the grpc-js server calls (`call.request`, `metadata`,
 * `getPeer()`, `getAuthContext()`, `cancelled` and its event; `callback(err, value)`, or
 * `write`/`end`/`emit('error')`). What a client sees follows grpc-js 1.14's server where the
 * gRPC protocol leaves a choice (server.js, server-interceptors.js): its status codes for an
 * unknown method, a missing or second message, a message above the limit, an unsupported
 * compression, a bad or passed `grpc-timeout`, and its texts where they name the case; gzip and
 * deflate messages accepted; `grpc-timeout`, `grpc-encoding`, `grpc-accept-encoding`,
 * `accept-encoding`, `te` and `content-type` kept out of the metadata; no parser text in a
 * status. Deliberate differences: a missing or second message on a unary method says "unary
 * method" (grpc-js says "server streaming method" there, a slip); a message above the limit
 * says "vs." (grpc-js "vs"); a body that ends inside a message is INTERNAL "Incomplete
 * message"; the content type is `application/grpc` and every status carries `grpc-message`,
 * empty for OK, as istiod's grpc-go sends them (internal/transport/http2_server.go,
 * WriteStatus; grpc-js sends "OK"); a request that is not a POST is answered 415
 * like one that is not gRPC. A header a client repeats stays separate metadata values (node:http2
 * joins them with ", "), and a `-bin` value is one value, not split at commas.
 */

type Handler = (call: never, callback?: (err: unknown, value?: unknown) => void) => void;

interface Route {
  readonly streaming: boolean;
  readonly deserialize: (b: Buffer) => unknown;
  readonly serialize: (v: never) => Buffer;
  readonly handler: Handler;
}

// ---- HPACK encoding of what we send: literals without indexing, no Huffman, no table. ----

function hpackInt(value: number, prefixBits: number, high: number, out: number[]): void {
  const max = (1 << prefixBits) - 1;
  if (value < max) {
    out.push(high | value);
    return;
  }
  out.push(high | max);
  let rest = value - max;
  while (rest >= 128) {
    out.push((rest & 0x7f) | 0x80);
    rest >>>= 7;
  }
  out.push(rest);
}

function pushString(s: string, out: number[]): void {
  const bytes = Buffer.from(s, 'latin1');
  hpackInt(bytes.length, 7, 0, out);
  for (const b of bytes) out.push(b);
}

/** Literal header field without indexing, new name (RFC 7541 6.2.2). */
function literal(name: string, value: string, out: number[]): void {
  out.push(0x00);
  pushString(name, out);
  pushString(value, out);
}

/**
 * `:status: 200` (static index 8), `content-type: application/grpc` (static name 31, as grpc-go
 * sends it) and the encodings a client may compress with (grpc-js's list).
 */
const HEAD_200: readonly number[] = (() => {
  const out = [0x88, 0x0f, 0x10];
  pushString('application/grpc', out);
  literal('grpc-accept-encoding', 'identity,deflate,gzip', out);
  return out;
})();
const RESPONSE_HEADERS = Buffer.from(HEAD_200);
const OK_TRAILERS = (() => {
  const out: number[] = [];
  literal('grpc-status', '0', out);
  literal('grpc-message', '', out);
  return Buffer.from(out);
})();
/** `:status: 415` (a literal with static name 8): grpc-js's answer to a non-gRPC content type. */
const UNSUPPORTED_MEDIA_TYPE = (() => {
  const out = [0x08];
  pushString('415', out);
  return Buffer.from(out);
})();

/** gRPC's grpc-message encoding: UTF-8, then %XX for bytes outside 0x20–0x7E and '%'. */
function percentEncode(message: string): string {
  let out = '';
  for (const b of Buffer.from(message, 'utf8')) {
    out +=
      b >= 0x20 && b <= 0x7e && b !== 0x25
        ? String.fromCharCode(b)
        : `%${b.toString(16).toUpperCase().padStart(2, '0')}`;
  }
  return out;
}

/** What a handler passes as an error: grpc-js's StatusObject shape. */
interface StatusLike {
  readonly code?: number;
  readonly details?: string;
  readonly metadata?: Metadata | null;
}

/**
 * What a handler's error becomes, as grpc-js's serverErrorToStatus: UNKNOWN with the error's
 * message, unless it has an integer `code` (then its `details`, if a string).
 */
function errorToStatus(e: unknown): StatusLike {
  const err = (typeof e === 'object' && e !== null ? e : {}) as {
    code?: unknown;
    details?: unknown;
    message?: unknown;
    metadata?: Metadata | null;
  };
  let code: number = status.UNKNOWN;
  let details = typeof err.message === 'string' ? err.message : 'Unknown Error';
  if (typeof err.code === 'number' && Number.isInteger(err.code)) {
    code = err.code;
    if (typeof err.details === 'string') details = err.details;
  }
  return { code, details, metadata: err.metadata ?? null };
}

function statusBlock(
  code: number,
  details: string,
  metadata: Metadata | null | undefined,
  head: boolean,
): Buffer {
  const out = head ? [...HEAD_200] : [];
  literal('grpc-status', String(code), out);
  literal('grpc-message', percentEncode(details), out); // empty too, as grpc-go
  if (metadata) {
    for (const [name, values] of Object.entries(metadata.toJSON())) {
      for (const v of values) {
        literal(name, typeof v === 'string' ? v : Buffer.from(v).toString('base64'), out);
      }
    }
  }
  return Buffer.from(out);
}

const NOT_METADATA = new Set([
  'grpc-timeout',
  'grpc-encoding',
  'grpc-accept-encoding',
  'accept-encoding',
  'te',
  'content-type',
]);

/** A body that ends inside a message (grpc-go: INTERNAL; grpc-js says there is no message). */
const INCOMPLETE = 'Incomplete message';

const DEADLINE = /^(\d{1,8})\s*([HMSmun])$/;
const UNIT_MS: Record<string, number> = {
  H: 3_600_000,
  M: 60_000,
  S: 1000,
  m: 1,
  u: 0.001,
  n: 0.000001,
};

/** As grpc-js: a handler that throws ends its call with UNKNOWN, the error's text withheld. */
function runHandler(call: BaseCall, run: () => void): void {
  try {
    run();
  } catch {
    call.sendStatus({ code: status.UNKNOWN, details: 'Unknown error' });
  }
}

/** What both kinds of call have. */
class BaseCall extends EventEmitter {
  cancelled = false;
  private authContext: object | undefined;
  private deadlineTimer: Timer | undefined;
  private statusSent = false;
  private closeEmitted = false;
  protected headersSent = false;

  constructor(
    readonly request: unknown,
    readonly metadata: Metadata,
    protected readonly connection: H2Connection,
    protected readonly stream: H2Stream,
  ) {
    super();
    stream.onCancel = () => this.onCancelled();
  }

  getPeer(): string {
    return this.connection.peerAddress;
  }

  /** As grpc-js: the peer certificate only when the TLS handshake verified it (`authorized`). */
  getAuthContext(): object {
    if (!this.authContext) {
      const socket = this.connection.socket;
      if (!socket.authorized) this.authContext = {};
      else {
        // Node returns {} when the client sent no certificate, whatever the type says.
        const cert = socket.getPeerCertificate();
        const raw = (cert as { raw?: Buffer }).raw;
        this.authContext = {
          transportSecurityType: 'ssl',
          sslPeerCertificate: raw ? cert : undefined,
        };
      }
    }
    return this.authContext;
  }

  setDeadline(clock: Clock, ms: number): void {
    this.deadlineTimer = clock.after(ms, () => {
      this.sendStatus({ code: status.DEADLINE_EXCEEDED, details: 'Deadline exceeded' });
      this.onCancelled();
    });
  }

  /** Ends the call with a status: trailers after our headers, or Trailers-Only. */
  sendStatus(s: StatusLike): void {
    if (this.statusSent || this.cancelled) return;
    this.statusSent = true;
    this.deadlineTimer?.cancel();
    const code = typeof s.code === 'number' ? s.code : status.UNKNOWN;
    if (code === (status.OK as number) && !s.metadata && this.headersSent) {
      this.connection.sendTrailers(this.stream, OK_TRAILERS);
    } else if (this.headersSent) {
      this.connection.sendTrailers(
        this.stream,
        statusBlock(code, s.details ?? '', s.metadata, false),
      );
    } else {
      this.connection.sendHeaders(
        this.stream,
        statusBlock(code, s.details ?? '', s.metadata, true),
        true,
      );
    }
    this.emit('finish');
    this.emitClose();
  }

  protected sendMessage(bytes: Buffer): void {
    if (!this.headersSent) {
      this.headersSent = true;
      this.connection.sendHeaders(this.stream, RESPONSE_HEADERS, false);
    }
    const framed = Buffer.allocUnsafe(5 + bytes.length);
    framed[0] = 0;
    framed.writeUInt32BE(bytes.length, 1);
    bytes.copy(framed, 5);
    this.connection.sendData(this.stream, framed);
  }

  private onCancelled(): void {
    if (this.cancelled) return;
    this.cancelled = true;
    this.deadlineTimer?.cancel();
    this.emit('cancelled', 'cancelled');
    this.emitClose();
  }

  /** 'close' once, whichever ends the call first (a status sent, a cancel, or both). */
  private emitClose(): void {
    if (this.closeEmitted) return;
    this.closeEmitted = true;
    this.emit('close');
  }
}

class UnaryCall extends BaseCall {
  respond(serialize: (v: never) => Buffer, err: unknown, value: unknown): void {
    if (this.cancelled) return;
    if (err) {
      this.sendStatus(errorToStatus(err));
      return;
    }
    let bytes: Buffer;
    try {
      bytes = serialize(value as never);
    } catch {
      this.sendStatus({
        code: status.INTERNAL,
        details: 'Error serializing response', // as grpc-js: the parser's words stay here
      });
      return;
    }
    this.sendMessage(bytes);
    this.sendStatus({ code: status.OK });
  }
}

/**
 * What a streaming call may have written and not yet sent (the client's windows closed) before
 * `write` returns false, as a Node Writable's highWaterMark: the handler waits for 'drain'.
 * grpc-js's call, an object-mode Writable (highWaterMark 16), says so after 16 messages its
 * HTTP/2 stream has not yet taken.
 */
export const STREAM_HIGH_WATER_BYTES = 64 * 1024;

/** grpc-js's ServerWritableStream, as our streaming handler uses it. */
class WritableCall extends BaseCall {
  private ended = false;
  /** A write returned false: 'drain' is owed once what waits has gone out (as a Writable). */
  private needDrain = false;

  constructor(
    request: unknown,
    metadata: Metadata,
    connection: H2Connection,
    stream: H2Stream,
    private readonly serialize: (v: never) => Buffer,
  ) {
    super(request, metadata, connection, stream);
    stream.onDrain = () => {
      if (!this.needDrain || this.ended || this.cancelled) return;
      this.needDrain = false;
      this.emit('drain');
    };
    // As grpc-js: emitting 'error' on the call ends it with that status.
    this.on('error', (e: unknown) => {
      this.ended = true;
      this.sendStatus(errorToStatus(e));
    });
  }

  write(message: unknown): boolean {
    if (this.ended || this.cancelled) return false;
    let bytes: Buffer;
    try {
      bytes = this.serialize(message as never);
    } catch {
      this.ended = true;
      this.sendStatus({
        code: status.INTERNAL,
        details: 'Error serializing response', // as grpc-js: the parser's words stay here
      });
      return false;
    }
    this.sendMessage(bytes);
    // false: the client is not reading; write again on 'drain'.
    if (this.connection.unsentBytes(this.stream) < STREAM_HIGH_WATER_BYTES) return true;
    this.needDrain = true;
    return false;
  }

  end(): void {
    if (this.ended) return;
    this.ended = true;
    this.sendStatus({ code: status.OK });
  }
}

export interface GrpcServerOptions {
  readonly maxReceiveMessageBytes: number;
  readonly limits: Omit<H2Limits, 'maxStreamBodyBytes'>;
  readonly clock: Clock;
  /** A connection ended (for the connection metrics and the log). */
  readonly onConnectionClosed?: (reason: H2CloseReason) => void;
}

/** The gRPC server on our HTTP/2 connections: services added, TLS sockets taken. */
export class GrpcServer implements H2Handler {
  private readonly routes = new Map<string, Route>();
  private readonly connections = new Set<H2Connection>();
  private readonly limits: H2Limits;
  private stopping = false;
  private drained: (() => void)[] = [];

  constructor(private readonly options: GrpcServerOptions) {
    this.limits = { ...options.limits, maxStreamBodyBytes: options.maxReceiveMessageBytes };
  }

  addService(service: ServiceDefinition, implementation: Record<string, unknown>): void {
    for (const [name, method] of Object.entries(service)) {
      const handler = implementation[name];
      if (typeof handler !== 'function') continue;
      if (method.requestStream) {
        throw new Error(`${method.path}: client-streaming methods are not served`);
      }
      this.routes.set(method.path, {
        streaming: method.responseStream,
        deserialize: method.requestDeserialize as (b: Buffer) => unknown,
        serialize: method.responseSerialize as (v: never) => Buffer,
        handler: handler as Handler,
      });
    }
  }

  /** Serves HTTP/2 on a TLS socket that negotiated h2. */
  /** Serves `socket`; the connection, for tests (undefined when stopping: the socket is closed). */
  takeConnection(socket: TLSSocket): H2Connection | undefined {
    if (this.stopping) {
      socket.destroy();
      return undefined;
    }
    const c = new H2Connection(socket, this, this.limits, this.options.clock, (reason) => {
      this.connections.delete(c);
      this.options.onConnectionClosed?.(reason);
      if (this.connections.size === 0) {
        for (const f of this.drained.splice(0)) f();
      }
    });
    this.connections.add(c);
    return c;
  }

  /** GOAWAY to every connection: calls in flight finish, new ones go elsewhere. */
  drain(): Promise<void> {
    this.stopping = true;
    for (const c of this.connections) c.goAway('stopping');
    if (this.connections.size === 0) return Promise.resolve();
    return new Promise((resolve) => this.drained.push(resolve));
  }

  /** Cuts every connection now. */
  destroyAll(): void {
    this.stopping = true;
    for (const c of [...this.connections]) c.destroy('stopping');
  }

  onStream(connection: H2Connection, stream: H2Stream): void {
    const h = stream.headers;
    let method = '';
    let contentType = '';
    for (let i = 0; i < h.length; i += 2) {
      const name = h[i] as string;
      if (name === ':method') method = h[i + 1] as string;
      else if (name === 'content-type') contentType = h[i + 1] as string;
    }
    if (method !== 'POST' || !contentType.startsWith('application/grpc')) {
      connection.sendHeaders(stream, UNSUPPORTED_MEDIA_TYPE, true);
    }
  }

  onStreamEnd(connection: H2Connection, stream: H2Stream): void {
    const h = stream.headers;
    let path = '';
    let timeout: string | undefined;
    let encoding: string | undefined;
    const metadata = new Metadata();
    for (let i = 0; i < h.length; i += 2) {
      const name = h[i] as string;
      const value = h[i + 1] as string;
      if (name.charCodeAt(0) === 58 /* ':' */) {
        if (name === ':path') path = value;
        continue;
      }
      if (name === 'grpc-timeout') timeout = value;
      else if (name === 'grpc-encoding') encoding = value;
      if (NOT_METADATA.has(name)) continue;
      try {
        if (name.endsWith('-bin')) metadata.add(name, Buffer.from(value, 'base64'));
        else metadata.add(name, value);
      } catch {
        // grpc-js drops a header its Metadata refuses (an invalid key or value) the same way.
      }
    }
    const fail = (code: number, details: string): void => {
      connection.sendHeaders(stream, statusBlock(code, details, null, true), true);
    };
    const route = this.routes.get(path);
    if (!route) {
      fail(status.UNIMPLEMENTED, `The server does not implement the method ${path}`);
      return;
    }
    const messages = this.messages(stream);
    if (typeof messages === 'string') {
      fail(messages === INCOMPLETE ? status.INTERNAL : status.RESOURCE_EXHAUSTED, messages);
      return;
    }
    const kind = route.streaming ? 'server streaming' : 'unary';
    const [message, second] = messages;
    if (!message || second) {
      const which = message ? 'a second' : 'no';
      fail(status.UNIMPLEMENTED, `Received ${which} request message for ${kind} method ${path}`);
      return;
    }
    let bytes = message.bytes;
    if (message.compressed) {
      const inflate =
        encoding === 'gzip' ? gunzipSync : encoding === 'deflate' ? inflateSync : undefined;
      if (!inflate) {
        fail(
          status.UNIMPLEMENTED,
          `Received message compressed with unsupported encoding "${encoding ?? 'identity'}"`,
        );
        return;
      }
      try {
        bytes = inflate(bytes, { maxOutputLength: this.options.maxReceiveMessageBytes });
      } catch (e) {
        if ((e as { code?: string }).code === 'ERR_BUFFER_TOO_LARGE') {
          fail(
            status.RESOURCE_EXHAUSTED,
            `Received message that decompresses to a size larger than ${this.options.maxReceiveMessageBytes}`,
          );
        } else {
          fail(status.INTERNAL, 'Failed to decompress message');
        }
        return;
      }
    }
    let deadlineMs: number | undefined;
    if (timeout !== undefined) {
      const m = DEADLINE.exec(timeout);
      if (!m) {
        fail(status.INTERNAL, `Invalid grpc-timeout value "${timeout}"`);
        return;
      }
      deadlineMs = Math.trunc(Number(m[1]) * (UNIT_MS[m[2] as string] as number));
    }
    let request: unknown;
    try {
      request = route.deserialize(bytes);
    } catch {
      fail(status.INTERNAL, 'Error deserializing request'); // as grpc-js: no parser text
      return;
    }
    if (route.streaming) {
      const call = new WritableCall(request, metadata, connection, stream, route.serialize);
      if (deadlineMs !== undefined) call.setDeadline(this.options.clock, deadlineMs);
      runHandler(call, () => route.handler(call as never));
    } else {
      const call = new UnaryCall(request, metadata, connection, stream);
      if (deadlineMs !== undefined) call.setDeadline(this.options.clock, deadlineMs);
      runHandler(call, () =>
        route.handler(call as never, (err, value) => call.respond(route.serialize, err, value)),
      );
    }
  }

  onBodyTooLarge(connection: H2Connection, stream: H2Stream, overflow: Buffer): void {
    // grpc-js names the length the message's prefix declares: read it from the body so far, or
    // from the chunk that passed the limit.
    const head = Buffer.concat([...stream.body, overflow.subarray(0, 5)]);
    const declared = head.length >= 5 ? head.readUInt32BE(1) : stream.bodyBytes + overflow.length;
    const message = `Received message larger than max (${declared} vs. ${this.options.maxReceiveMessageBytes})`;
    connection.sendHeaders(
      stream,
      statusBlock(status.RESOURCE_EXHAUSTED, message, null, true),
      true,
    );
  }

  /** The length-prefixed messages of a request body, or why they are refused. */
  private messages(stream: H2Stream): { compressed: boolean; bytes: Buffer }[] | string {
    const body =
      stream.body.length === 1
        ? (stream.body[0] as Buffer)
        : Buffer.concat(stream.body, stream.bodyBytes);
    const out: { compressed: boolean; bytes: Buffer }[] = [];
    let offset = 0;
    while (offset < body.length) {
      if (body.length - offset < 5) return INCOMPLETE;
      const length = body.readUInt32BE(offset + 1);
      if (length > this.options.maxReceiveMessageBytes) {
        return `Received message larger than max (${length} vs. ${this.options.maxReceiveMessageBytes})`;
      }
      if (body.length - offset - 5 < length) return INCOMPLETE;
      out.push({
        compressed: body[offset] !== 0,
        bytes: body.subarray(offset + 5, offset + 5 + length),
      });
      offset += 5 + length;
    }
    return out;
  }
}
