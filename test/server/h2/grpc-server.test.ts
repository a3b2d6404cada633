// Our gRPC server (src/server/h2/grpc-server.ts) as a real @grpc/grpc-js client sees it (unary
// and server-streaming calls, statuses, deadlines, cancellation, compression, metadata), and
// the requests a grpc-js client would never send, written as raw frames: each answered with
// the status grpc-js 1.14's server gives.
import { describe, test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { once } from 'node:events';
import http2 from 'node:http2';
import { gzipSync } from 'node:zlib';
import * as grpc from '@grpc/grpc-js';
import { waitFor } from '../../support/wait-for.js';
import { grpcHeaderBlock, headersFrames } from '../../reliability/support/raw-h2.js';
import {
  ECHO,
  Harness,
  S,
  STREAM,
  T,
  dataFrame,
  dataOf,
  field,
  grpcMessage,
  headerBlocks,
  messagesOf,
  request,
  roundTrip,
  rstCode,
  stillServes,
  trailersOf,
  windowUpdate,
  type HarnessOptions,
  type HeaderBlock,
  type Raw,
} from './support/harness.js';

const { status } = grpc;
const identity = (b: Buffer): Buffer => b;

async function start(t: TestContext, o: HarnessOptions = {}): Promise<Harness> {
  const h = await Harness.start(o);
  t.after(() => h.close());
  return h;
}

interface Unary {
  readonly call: grpc.ClientUnaryCall;
  /** The response, or the ServiceError the call ended with. */
  readonly result: Promise<Buffer | grpc.ServiceError>;
}

function unary(
  client: grpc.Client,
  message: Buffer,
  o: { path?: string; metadata?: grpc.Metadata; options?: grpc.CallOptions } = {},
): Unary {
  let call!: grpc.ClientUnaryCall;
  const result = new Promise<Buffer | grpc.ServiceError>((resolve) => {
    call = client.makeUnaryRequest(
      o.path ?? ECHO,
      identity,
      identity,
      message,
      o.metadata ?? new grpc.Metadata(),
      o.options ?? {},
      (err, value) => resolve(err ?? value!),
    );
  });
  return { call, result };
}

async function failure(u: Unary): Promise<grpc.ServiceError> {
  const r = await u.result;
  assert.ok(!Buffer.isBuffer(r), `the call succeeded: ${String(r)}`);
  return r;
}

/** Asserts a Trailers-Only answer (HTTP 200, gRPC status in the only header block). */
function assertTrailersOnly(conn: Raw, id: number, t: HeaderBlock): void {
  assert.equal(headerBlocks(conn, id).length, 1, 'one header block: Trailers-Only');
  assert.equal(field(t, ':status'), '200');
  assert.equal(field(t, 'content-type'), 'application/grpc');
  assert.equal(dataOf(conn, id).length, 0);
}

describe('GrpcServer with a @grpc/grpc-js client', () => {
  test('unary: the response and OK', async (t) => {
    const h = await start(t);
    const r = await unary(h.client(), Buffer.from('hello')).result;
    assert.deepEqual(r, Buffer.from('hello'));
    assert.deepEqual(h.unaryCalls[0]!.call.request, Buffer.from('hello'));
  });

  test('server streaming: several messages, then OK', async (t) => {
    const h = await start(t);
    h.stream = (call) => {
      for (let i = 0; i < 5; i++) call.write(Buffer.from(`${call.request.toString()} ${i}`));
      call.end();
    };
    const stream = h.client().makeServerStreamRequest(STREAM, identity, identity, Buffer.from('m'));
    const got: string[] = [];
    stream.on('data', (b: Buffer) => got.push(b.toString()));
    const [s] = (await once(stream, 'status')) as [grpc.StatusObject];
    assert.equal(s.code, status.OK);
    assert.deepEqual(got, ['m 0', 'm 1', 'm 2', 'm 3', 'm 4']);
  });

  test("server streaming: write() says false once 64 KiB wait for the client's window, and 'drain' comes when they have gone out", async (t) => {
    const h = await start(t);
    const chunk = Buffer.alloc(10_000, 1);
    let accepted = 0;
    let refused = 0;
    let drains = 0;
    h.stream = (call) => {
      while (call.write(chunk)) accepted++;
      refused++;
      call.on('drain', () => {
        drains++;
        call.write(Buffer.from('last'));
        call.end();
      });
    };
    // Stream windows of 0: nothing the handler writes can go out.
    const conn = await h.raw([[S.INITIAL_WINDOW_SIZE, 0]]);
    conn.send(request(1, Buffer.from('s'), STREAM));
    await waitFor('a write refused', () => refused === 1);
    // Six messages (60,030 bytes with their prefixes) are under 64 KiB; the seventh is not.
    assert.equal(accepted, 6);
    await roundTrip(conn, 'held');
    assert.equal(dataOf(conn, 1).length, 0);
    assert.equal(drains, 0);
    conn.send(windowUpdate(0, 1 << 20), windowUpdate(1, 1 << 20));
    const trailers = await trailersOf(conn, 1);
    assert.equal(field(trailers, 'grpc-status'), '0');
    assert.equal(drains, 1);
    assert.deepEqual(messagesOf(dataOf(conn, 1)), [
      ...Array.from({ length: 7 }, () => chunk),
      Buffer.from('last'),
    ]);
  });

  test('a handler error: code, details (non-ASCII and "%", percent-encoded on the wire) and metadata arrive as such', async (t) => {
    const h = await start(t);
    const details = 'refusé: 100% “quota” ✓\nsecond line';
    const metadata = new grpc.Metadata();
    metadata.add('x-reason', 'quota');
    metadata.add('x-detail-bin', Buffer.from([0, 1, 0xfe, 0xff]));
    h.unary = (_call, respond) => respond({ code: status.PERMISSION_DENIED, details, metadata });
    const err = await failure(unary(h.client(), Buffer.from('x')));
    assert.equal(err.code, status.PERMISSION_DENIED);
    assert.equal(err.details, details);
    assert.deepEqual(err.metadata.get('x-reason'), ['quota']);
    assert.deepEqual(err.metadata.get('x-detail-bin'), [Buffer.from([0, 1, 0xfe, 0xff])]);

    const conn = await h.raw();
    conn.send(request(1, Buffer.from('y')));
    const trailers = await trailersOf(conn, 1);
    assert.equal(
      field(trailers, 'grpc-message'),
      'refus%C3%A9: 100%25 %E2%80%9Cquota%E2%80%9D %E2%9C%93%0Asecond line',
    );
    assert.equal(
      field(trailers, 'x-detail-bin'),
      Buffer.from([0, 1, 0xfe, 0xff]).toString('base64'),
    );
  });

  test('a handler error without `details` (an Error): UNKNOWN with its message, as grpc-js', async (t) => {
    const h = await start(t);
    h.unary = (_call, respond) => respond(new Error('boom'));
    const err = await failure(unary(h.client(), Buffer.from('x')));
    assert.equal(err.code, status.UNKNOWN);
    assert.equal(err.details, 'boom');
  });

  test('a handler that throws: UNKNOWN "Unknown error" as grpc-js, and the server goes on serving', async (t) => {
    const h = await start(t);
    h.unary = () => {
      throw new Error('handler bug');
    };
    h.stream = () => {
      throw new Error('handler bug');
    };
    const client = h.client();
    const err = await failure(unary(client, Buffer.from('x')));
    assert.equal(err.code, status.UNKNOWN);
    assert.equal(err.details, 'Unknown error');
    const stream = client.makeServerStreamRequest(STREAM, identity, identity, Buffer.from('s'));
    stream.on('error', () => {});
    const s = await new Promise<grpc.StatusObject>((resolve) => stream.on('status', resolve));
    assert.equal(s.code, status.UNKNOWN);
    assert.equal(s.details, 'Unknown error');
    h.unary = (call, respond) => respond(null, call.request);
    assert.deepEqual(await unary(client, Buffer.from('after')).result, Buffer.from('after'));
  });

  test("an unknown method: UNIMPLEMENTED with grpc-js's text", async (t) => {
    const h = await start(t);
    const err = await failure(unary(h.client(), Buffer.from('x'), { path: '/test.h2.Test/Nope' }));
    assert.equal(err.code, status.UNIMPLEMENTED);
    assert.equal(err.details, 'The server does not implement the method /test.h2.Test/Nope');
  });

  test("the client's deadline (grpc-timeout) passes on the server's clock: DEADLINE_EXCEEDED, the handler's call cancelled", async (t) => {
    const h = await start(t);
    h.unary = () => {}; // never answers
    const events: string[] = [];
    const u = unary(h.client(), Buffer.from('x'), {
      options: { deadline: Date.now() + 600_000 },
    });
    const { call } = await waitFor('handler called', () => h.unaryCalls[0]);
    call.on('cancelled', (reason: string) => events.push(reason));
    assert.equal(call.cancelled, false);
    await h.clock.advance(600_000);
    const err = await failure(u);
    assert.equal(err.code, status.DEADLINE_EXCEEDED);
    assert.equal(err.details, 'Deadline exceeded', "the server's status, not the client's own");
    assert.equal(call.cancelled, true);
    assert.deepEqual(events, ['cancelled']);
  });

  test("the client's own deadline passes first: it resets the stream, the handler's call is cancelled", async (t) => {
    const h = await start(t);
    const client = h.client();
    await unary(client, Buffer.from('connect')).result; // a warm connection: the call is quick
    h.unary = () => {};
    const u = unary(client, Buffer.from('x'), { options: { deadline: Date.now() + 500 } });
    const { call } = await waitFor('handler called', () => h.unaryCalls[1]);
    const cancelled = once(call, 'cancelled');
    const err = await failure(u);
    assert.equal(err.code, status.DEADLINE_EXCEEDED);
    assert.match(err.details, /^Deadline exceeded after/, "the client's own status");
    await cancelled;
    assert.equal(call.cancelled, true);
  });

  test("the client cancels: the handler's call is cancelled and told", async (t) => {
    const h = await start(t);
    h.unary = () => {};
    const u = unary(h.client(), Buffer.from('x'));
    const { call, respond } = await waitFor('handler called', () => h.unaryCalls[0]);
    const cancelled = once(call, 'cancelled');
    u.call.cancel();
    assert.equal((await failure(u)).code, status.CANCELLED);
    await cancelled;
    assert.equal(call.cancelled, true);
    respond(null, Buffer.from('too late')); // ignored
  });

  test("the client's connection drops mid-call (no RST_STREAM): the handler's call is cancelled and told, the late answer dropped", async (t) => {
    const h = await start(t);
    h.unary = () => {};
    const conn = await h.raw();
    conn.send(request(1, Buffer.from('x')));
    const { call, respond } = await waitFor('handler called', () => h.unaryCalls[0]);
    const cancelled = once(call, 'cancelled');
    conn.socket.destroy();
    await cancelled;
    assert.equal(call.cancelled, true);
    respond(null, Buffer.from('too late')); // nothing to write to: no throw
    await waitFor('the server side closed', () => h.closes.length === 1);
    assert.deepEqual(h.closes, ['peer']);
  });

  test('the client cancels a server stream: the call is cancelled, write() returns false', async (t) => {
    const h = await start(t);
    h.stream = (call) => call.write(Buffer.from('first'));
    const stream = h.client().makeServerStreamRequest(STREAM, identity, identity, Buffer.from('s'));
    stream.on('error', () => {});
    await once(stream, 'data');
    const call = h.streamCalls[0]!;
    const cancelled = once(call, 'cancelled');
    stream.cancel();
    await cancelled;
    assert.equal(call.cancelled, true);
    assert.equal(call.write(Buffer.from('more')), false);
  });

  for (const [name, algorithm] of [
    ['gzip', grpc.compressionAlgorithms.gzip],
    ['deflate', grpc.compressionAlgorithms.deflate],
  ] as const) {
    test(`a ${name}-compressed request (grpc.default_compression_algorithm) is decoded`, async (t) => {
      const h = await start(t);
      const message = Buffer.alloc(50_000, 'a');
      const client = h.client({ 'grpc.default_compression_algorithm': algorithm });
      assert.deepEqual(await unary(client, message).result, message);
      assert.deepEqual(h.unaryCalls[0]!.call.request, message);
      assert.ok(
        h.sockets[0]!.bytesRead < 5000,
        `${h.sockets[0]!.bytesRead} bytes read: not compressed`,
      );
      assert.deepEqual(h.unaryCalls[0]!.call.metadata.get('grpc-encoding'), []);
    });
  }

  test('metadata: custom and -bin headers reach the handler; grpc-timeout, te, content-type and the encodings do not', async (t) => {
    const h = await start(t);
    const metadata = new grpc.Metadata();
    metadata.add('x-custom', 'custom value');
    metadata.add('x-trace-bin', Buffer.from([0, 0x80, 0xff]));
    await unary(h.client(), Buffer.from('x'), {
      metadata,
      options: { deadline: Date.now() + 600_000 },
    }).result;
    const got = h.unaryCalls[0]!.call.metadata;
    assert.deepEqual(got.get('x-custom'), ['custom value']);
    assert.deepEqual(got.get('x-trace-bin'), [Buffer.from([0, 0x80, 0xff])]);
    const names = Object.keys(got.getMap());
    for (const name of [
      'grpc-timeout',
      'te',
      'content-type',
      'grpc-accept-encoding',
      'accept-encoding',
      'grpc-encoding',
    ]) {
      assert.ok(!names.includes(name), `${name} in the metadata`);
    }
    assert.ok(!names.some((n) => n.startsWith(':')), `pseudo-headers in ${names.join(', ')}`);
    assert.ok(names.includes('user-agent'), names.join(', '));
  });
});

describe('GrpcServer: requests a grpc-js client would not send (raw frames)', () => {
  test("an answer's headers and trailers: grpc-go's content type, grpc-js's accepted encodings, OK with an empty grpc-message as grpc-go", async (t) => {
    const h = await start(t);
    const conn = await h.raw();
    conn.send(request(1, Buffer.from('hi')));
    await trailersOf(conn, 1);
    const [head, trailers] = headerBlocks(conn, 1);
    assert.ok(head && trailers && !head.endStream && trailers.endStream);
    assert.deepEqual(head.fields, [
      [':status', '200'],
      ['content-type', 'application/grpc'],
      ['grpc-accept-encoding', 'identity,deflate,gzip'],
    ]);
    assert.deepEqual(trailers.fields, [
      ['grpc-status', '0'],
      ['grpc-message', ''],
    ]);
  });

  test('a message above maxReceiveMessageBytes: RESOURCE_EXHAUSTED Trailers-Only, then RST_STREAM(NO_ERROR)', async (t) => {
    const h = await start(t, { maxReceiveMessageBytes: 1024 });
    const conn = await h.raw();
    conn.send(
      headersFrames(1, grpcHeaderBlock(ECHO), false),
      dataFrame(1, grpcMessage(Buffer.alloc(2000))),
    );
    const trailers = await trailersOf(conn, 1);
    assertTrailersOnly(conn, 1, trailers);
    assert.equal(field(trailers, 'grpc-status'), String(status.RESOURCE_EXHAUSTED));
    // The length its prefix declares, as grpc-js says it.
    assert.equal(
      field(trailers, 'grpc-message'),
      'Received message larger than max (2000 vs. 1024)',
    );
    await waitFor('RST_STREAM', () => rstCode(conn, 1) !== undefined);
    assert.equal(rstCode(conn, 1), 0);
    const onStream = conn.frames.filter((f) => f.streamId === 1).map((f) => f.type);
    assert.deepEqual(onStream, [T.HEADERS, T.RST_STREAM]);
    // The rest of its body is dropped, the connection goes on.
    conn.send(dataFrame(1, Buffer.alloc(100), true), request(3, Buffer.from('next')));
    const next = await trailersOf(conn, 3);
    assert.equal(field(next, 'grpc-status'), '0');
    assert.equal(h.unaryCalls.length, 1);
  });

  test('a message whose length prefix is above the limit, in a small body: RESOURCE_EXHAUSTED', async (t) => {
    const h = await start(t, { maxReceiveMessageBytes: 1024 });
    const conn = await h.raw();
    const prefix = Buffer.from([0, 0, 0, 0x10, 0]); // 4096 bytes announced, none sent
    conn.send(headersFrames(1, grpcHeaderBlock(ECHO), false), dataFrame(1, prefix, true));
    const trailers = await trailersOf(conn, 1);
    assert.equal(field(trailers, 'grpc-status'), String(status.RESOURCE_EXHAUSTED));
    assert.equal(
      field(trailers, 'grpc-message'),
      'Received message larger than max (4096 vs. 1024)',
    );
    assert.equal(h.unaryCalls.length, 0);
  });

  test('a second message in a unary request: UNIMPLEMENTED', async (t) => {
    const h = await start(t);
    const conn = await h.raw();
    conn.send(
      headersFrames(1, grpcHeaderBlock(ECHO), false),
      dataFrame(
        1,
        Buffer.concat([grpcMessage(Buffer.from('one')), grpcMessage(Buffer.from('two'))]),
        true,
      ),
    );
    const trailers = await trailersOf(conn, 1);
    assertTrailersOnly(conn, 1, trailers);
    assert.equal(field(trailers, 'grpc-status'), String(status.UNIMPLEMENTED));
    assert.equal(
      field(trailers, 'grpc-message'),
      `Received a second request message for unary method ${ECHO}`,
    );
    assert.equal(h.unaryCalls.length, 0);
  });

  test('no message: UNIMPLEMENTED', async (t) => {
    const h = await start(t);
    const conn = await h.raw();
    conn.send(
      headersFrames(1, grpcHeaderBlock(ECHO), true),
      headersFrames(3, grpcHeaderBlock(STREAM), true),
    );
    for (const [id, kind, path] of [
      [1, 'unary', ECHO],
      [3, 'server streaming', STREAM],
    ] as const) {
      const trailers = await trailersOf(conn, id);
      assertTrailersOnly(conn, id, trailers);
      assert.equal(field(trailers, 'grpc-status'), String(status.UNIMPLEMENTED));
      assert.equal(
        field(trailers, 'grpc-message'),
        `Received no request message for ${kind} method ${path}`,
      );
    }
    assert.equal(h.unaryCalls.length + h.streamCalls.length, 0);
  });

  test('a compressed message with grpc-encoding br: UNIMPLEMENTED', async (t) => {
    const h = await start(t);
    const conn = await h.raw();
    conn.send(
      headersFrames(1, grpcHeaderBlock(ECHO, { 'grpc-encoding': 'br' }), false),
      dataFrame(1, grpcMessage(Buffer.from('not really brotli'), true), true),
    );
    const trailers = await trailersOf(conn, 1);
    assert.equal(field(trailers, 'grpc-status'), String(status.UNIMPLEMENTED));
    assert.equal(
      field(trailers, 'grpc-message'),
      'Received message compressed with unsupported encoding "br"',
    );
  });

  test('a gzip message that inflates above the limit: RESOURCE_EXHAUSTED; a good one is decoded', async (t) => {
    const h = await start(t, { maxReceiveMessageBytes: 1024 });
    const conn = await h.raw();
    const gzip = { 'grpc-encoding': 'gzip' };
    conn.send(
      headersFrames(1, grpcHeaderBlock(ECHO, gzip), false),
      dataFrame(1, grpcMessage(gzipSync(Buffer.alloc(100_000)), true), true),
      headersFrames(3, grpcHeaderBlock(ECHO, gzip), false),
      dataFrame(3, grpcMessage(gzipSync(Buffer.from('zipped')), true), true),
    );
    const bomb = await trailersOf(conn, 1);
    assert.equal(field(bomb, 'grpc-status'), String(status.RESOURCE_EXHAUSTED));
    assert.equal(
      field(bomb, 'grpc-message'),
      'Received message that decompresses to a size larger than 1024',
    );
    const ok = await trailersOf(conn, 3);
    assert.equal(field(ok, 'grpc-status'), '0');
    assert.deepEqual(messagesOf(dataOf(conn, 3)), [Buffer.from('zipped')]);
  });

  test('a bad grpc-timeout: INTERNAL', async (t) => {
    const h = await start(t);
    const conn = await h.raw();
    conn.send(request(1, Buffer.from('x'), ECHO, { 'grpc-timeout': 'soon' }));
    const trailers = await trailersOf(conn, 1);
    assert.equal(field(trailers, 'grpc-status'), String(status.INTERNAL));
    assert.equal(field(trailers, 'grpc-message'), 'Invalid grpc-timeout value "soon"');
    assert.equal(h.unaryCalls.length, 0);
  });

  test('a non-POST request or a non-gRPC content type: HTTP 415 (node:http2 client)', async (t) => {
    const h = await start(t);
    const session = http2.connect(`http://${h.address}`);
    h.onClose(() => session.destroy());
    const statusOf = async (
      headers: http2.OutgoingHttpHeaders,
      body?: Buffer,
    ): Promise<unknown> => {
      const req = session.request(headers);
      req.on('data', () => {});
      const response = once(req, 'response') as Promise<[http2.IncomingHttpHeaders]>;
      req.end(body);
      const [res] = await response;
      await once(req, 'close');
      return res[':status'];
    };
    assert.equal(
      await statusOf({ ':method': 'GET', ':path': ECHO, 'content-type': 'application/grpc' }),
      415,
    );
    assert.equal(
      await statusOf(
        { ':method': 'POST', ':path': ECHO, 'content-type': 'application/json' },
        grpcMessage(Buffer.from('{}')),
      ),
      415,
    );
    assert.equal(
      await statusOf({ ':method': 'POST', ':path': ECHO }, grpcMessage(Buffer.from('x'))),
      415,
    );
    assert.equal(h.unaryCalls.length, 0);
    await stillServes(h);
  });

  test('a 415 on a stream the client is still sending on: RST_STREAM(NO_ERROR) after it', async (t) => {
    const h = await start(t);
    const conn = await h.raw();
    conn.send(headersFrames(1, grpcHeaderBlock(ECHO, { 'content-type': 'text/plain' }), false));
    await waitFor('RST_STREAM', () => rstCode(conn, 1) !== undefined);
    await roundTrip(conn, 'after');
    const [block] = headerBlocks(conn, 1);
    assert.equal(block!.endStream, true);
    assert.ok(block!.fields.some(([n, v]) => n === ':status' && v === '415'));
    assert.equal(rstCode(conn, 1), 0);
    assert.deepEqual(
      conn.frames.filter((f) => f.streamId === 1).map((f) => f.type),
      [T.HEADERS, T.RST_STREAM],
    );
  });
});
