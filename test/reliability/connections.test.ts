// Connection hygiene of the gRPC port (src/server/connection-guard.ts), over real TLS on
// loopback with hand-written HTTP/2 clients that never close on their own (support/raw-h2.ts):
// every hostile or dead connection is closed by the server, within a bound, and the count of
// open connections returns to zero.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { performance } from 'node:perf_hooks';
import { connect as http2Connect } from 'node:http2';
import { Socket } from 'node:net';
import { execFile } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { status, type ServiceError } from '@grpc/grpc-js';
import { waitFor } from '../support/wait-for.js';
import { ManualClock } from '../support/manual-clock.js';
import { projectRoot } from '../support/paths.js';
import { caClient, createCertificate, opensslCsr, tmp } from '../server/support/client.js';
import { mintToken, startReliable, type Reliable } from './support/harness.js';
import { GRPC_TRANSPORTS } from '../../src/server/grpc-transport.js';
import {
  FRAME,
  PARTIAL_CLIENT_HELLO,
  grpcHeaderBlock,
  headersFrames,
  rawH2,
  rawTcp,
  rstStream,
  type RawConnection,
} from './support/raw-h2.js';
import { PYTHON } from '../support/python.js';

const execFileAsync = promisify(execFile);
/** Debian's interpreter and its python3-grpcio (scripts/setup-test-deps.sh), never PATH's. */
const CREATE = '/istio.v1.auth.IstioCertificateService/CreateCertificate';
const LONG = 600_000;
/** HTTP/2 error codes (RFC 9113 §7). */
const H2 = { NO_ERROR: 0, INTERNAL_ERROR: 2, COMPRESSION_ERROR: 9, ENHANCE_YOUR_CALM: 11 } as const;

/** Resolves with how long the server took to close `conn` (fails after `boundMs`). */
async function closedWithin(what: string, conn: RawConnection, boundMs: number): Promise<number> {
  const started = performance.now();
  await waitFor(what, () => conn.isClosed(), boundMs);
  return performance.now() - started;
}

async function issueOnce(r: Reliable): Promise<void> {
  const client = caClient(r.target, r.ca.rootPem, undefined, {
    'grpc.use_local_subchannel_pool': 1,
  });
  try {
    const chain = await createCertificate(
      client,
      { csr: opensslCsr('ec').csrPem },
      await mintToken(r),
    );
    assert.ok(chain.length >= 2);
  } finally {
    client.close();
  }
}

/**
 * Whether this Node destroys an HTTP/2 session that nghttp2 ended with a connection error by
 * itself. Node 24.22 does (the connection closes within milliseconds of the GOAWAY, before any
 * probe); Node 20.20 leaves it open and silent, which is what the listener's probe is for
 * (connection-guard.ts, watchSession). Measured on those two; others are assumed to follow
 * their major version's neighbour.
 */
const NODE_ENDS_FAILED_SESSIONS = Number(process.versions.node.split('.')[0]) >= 24;
/**
 * The `unresponsive` closes one such connection adds: the probe's where Node leaves it open; where
 * Node closes it, none, or the probe's if it was already out (a loaded machine can take longer
 * than the probe's 500 ms here to let Node close the session).
 */
function assertProbeCloses(added: number): void {
  if (NODE_ENDS_FAILED_SESSIONS) assert.ok(added === 0 || added === 1, `unresponsive +${added}`);
  else assert.equal(added, 1, 'the probe closed the connection');
}

for (const transport of GRPC_TRANSPORTS) {
  describe(`gRPC port (${transport}): handshakes and HTTP/2 connection errors`, () => {
    let r: Reliable;
    before(async () => {
      // Keepalive and idle far away: what closes these connections is the handshake timeout and
      // the reset-flood probe, nothing else.
      r = await startReliable({
        transport,
        connections: {
          handshakeTimeoutMs: 300,
          idleTimeoutMs: LONG,
          keepaliveIntervalMs: LONG,
          keepaliveTimeoutMs: 500,
        },
      });
    });
    after(() => r.stop());
    const closedFor = (reason: string): Promise<number> =>
      r.metric('castellan_grpc_connections_closed_total', { reason });
    const unresponsiveClosed = (): Promise<number> => closedFor('unresponsive');

    test('stalled TLS handshakes (no bytes, half a ClientHello) are closed after the handshake timeout', async () => {
      const silent = await rawTcp(r.port);
      const partial = await rawTcp(r.port, PARTIAL_CLIENT_HELLO);
      const waited = await closedWithin('silent handshake closed', silent, 5000);
      await closedWithin('partial handshake closed', partial, 5000);
      assert.ok(waited >= 200, `closed after ${waited} ms, before the 300 ms timeout`);
      assert.equal(
        await r.metric('castellan_grpc_connections_closed_total', { reason: 'handshake-timeout' }),
        2,
      );
      await waitFor(
        'no connection left open',
        async () => (await r.metric('castellan_grpc_open_connections')) === 0,
      );
    });

    test("Nagle's algorithm is off on every accepted connection (TCP_NODELAY, as Go sets it on istiod's)", async () => {
      // Node offers no getsockopt, so the setter is watched: the guard calls it on the accepted
      // TCP socket before TLS. Why it matters: src/server/connection-guard.ts.
      const calls: { remotePort: number | undefined; noDelay: boolean }[] = [];
      // eslint-disable-next-line @typescript-eslint/unbound-method -- called below with the socket as `this`
      const original = Socket.prototype.setNoDelay;
      Socket.prototype.setNoDelay = function (this: Socket, noDelay?: boolean) {
        calls.push({ remotePort: this.remotePort, noDelay: noDelay ?? true });
        return original.call(this, noDelay);
      };
      let conn: RawConnection | undefined;
      try {
        conn = await rawTcp(r.port);
        const clientPort = conn.socket.localPort;
        await waitFor('the accepted socket seen', () =>
          calls.some((c) => c.remotePort === clientPort),
        );
        const mine = calls.filter((c) => c.remotePort === clientPort);
        assert.deepEqual(mine.at(-1), { remotePort: clientPort, noDelay: true });
      } finally {
        Socket.prototype.setNoDelay = original;
        conn?.socket.destroy();
      }
    });

    test('a rapid-reset flood (streams opened and reset): GOAWAY, then the server closes the connection', async () => {
      const unresponsiveBefore = await unresponsiveClosed();
      const floodBefore = await closedFor('flood');
      const conn = await rawH2(r.port);
      const started = performance.now();
      // 3000 streams opened and cancelled at once, well past nghttp2's limit (a burst of 1000).
      const block = grpcHeaderBlock(CREATE);
      for (let batch = 0; batch < 6 && !conn.isClosed(); batch++) {
        const frames: Buffer[] = [];
        for (let i = 0; i < 500; i++) {
          const id = 1 + 2 * (batch * 500 + i);
          frames.push(headersFrames(id, block, false), rstStream(id));
        }
        conn.socket.write(Buffer.concat(frames));
      }
      await waitFor('the server closed the flooded connection', () => conn.isClosed(), 15_000);
      if (transport === 'grpc-js') {
        assert.equal(conn.goawayCode(), H2.INTERNAL_ERROR, 'nghttp2 ended the session with GOAWAY');
        // Not keepalive (10 min away here): a probe (the session reset 100 streams) unanswered,
        // or Node itself.
        assertProbeCloses((await unresponsiveClosed()) - unresponsiveBefore);
      } else {
        // src/server/h2/connection.ts onReset: nghttp2's budget, our own GOAWAY code.
        assert.equal(conn.goawayCode(), H2.ENHANCE_YOUR_CALM);
        // Counted when the server's socket closes, which may be a moment after the client's.
        await waitFor(
          'the flood close counted',
          async () => (await closedFor('flood')) - floodBefore === 1,
        );
      }
      assert.ok(performance.now() - started < 15_000);
      await issueOnce(r); // The server still serves.
    });

    test('a header field nghttp2 cannot decompress: GOAWAY(COMPRESSION_ERROR), then the server closes the connection', async () => {
      const unresponsiveBefore = await unresponsiveClosed();
      const protocolErrorsBefore = await closedFor('protocol-error');
      const conn = await rawH2(r.port);
      // A 100 KiB literal: beyond nghttp2's 64 KiB limit for one header field.
      const block = grpcHeaderBlock(CREATE, { authorization: `Bearer ${'a'.repeat(100 * 1024)}` });
      conn.socket.write(headersFrames(1, block, false));
      await waitFor('the server closed the connection', () => conn.isClosed(), 10_000);
      assert.equal(conn.goawayCode(), H2.COMPRESSION_ERROR);
      if (transport === 'grpc-js') {
        // Not keepalive (10 min away here): the sweep's probe of bytes that opened no stream, or
        // Node itself.
        assertProbeCloses((await unresponsiveClosed()) - unresponsiveBefore);
      } else {
        await waitFor(
          'the protocol-error close counted',
          async () => (await closedFor('protocol-error')) - protocolErrorsBefore === 1,
        );
      }
    });

    test('python3-grpcio (gRPC core) with a 70 KiB authorization header: UNAVAILABLE within seconds, not at its deadline', async () => {
      const dir = tmp();
      const root = join(dir, 'root.pem');
      writeFileSync(root, r.ca.rootPem);
      const deadlineSeconds = 30;
      const { stdout } = await execFileAsync(PYTHON, [
        join(projectRoot, 'test', 'reliability', 'raw_call.py'),
        r.target,
        root,
        String(70 * 1024),
        String(deadlineSeconds),
      ]);
      const outcome = JSON.parse(stdout) as { code: string; details: string; seconds: number };
      // Before the server closed such connections, this call ended DEADLINE_EXCEEDED after 30 s.
      assert.equal(outcome.code, 'UNAVAILABLE', outcome.details);
      assert.ok(outcome.seconds < 10, `failed after ${outcome.seconds} s`);
    });

    test('a grpc-js call whose metadata is beyond the HPACK limit fails promptly, not at its deadline', async () => {
      const client = caClient(r.target, r.ca.rootPem, undefined, {
        'grpc.use_local_subchannel_pool': 1,
      });
      try {
        const started = performance.now();
        const err = (await createCertificate(client, { csr: 'x' }, 'a'.repeat(200 * 1024)).then(
          () => assert.fail('expected a failure'),
          (e: unknown) => e,
        )) as ServiceError;
        const took = performance.now() - started;
        // The server's GOAWAY(COMPRESSION_ERROR) ends the client's connection, and the call fails
        // with the transport's code. Our port also announces its limit in SETTINGS
        // (MAX_HEADER_LIST_SIZE): a client that has read them before its first call refuses to
        // send it at all (RESOURCE_EXHAUSTED). Either way, well before any deadline.
        const expected =
          transport === 'grpc-js'
            ? [status.UNAVAILABLE, status.INTERNAL]
            : [status.UNAVAILABLE, status.INTERNAL, status.RESOURCE_EXHAUSTED];
        assert.ok(expected.includes(err.code), `code ${status[err.code]}: ${err.details}`);
        assert.ok(took < 5000, `failed after ${took} ms`);
      } finally {
        client.close();
      }
    });

    test('metadata under the HPACK limit but no valid token: UNAUTHENTICATED, as any bad token', async () => {
      const client = caClient(r.target, r.ca.rootPem, undefined, {
        'grpc.use_local_subchannel_pool': 1,
      });
      try {
        const err = (await createCertificate(
          client,
          { csr: opensslCsr('ec').csrPem },
          'a'.repeat(30 * 1024),
        ).then(
          () => assert.fail('expected a failure'),
          (e: unknown) => e,
        )) as ServiceError;
        assert.equal(err.code, status.UNAUTHENTICATED, `${status[err.code]}: ${err.details}`);
      } finally {
        client.close();
      }
    });
  });

  describe(`gRPC port (${transport}): keepalive and idle connections`, () => {
    let r: Reliable;
    before(async () => {
      r = await startReliable({
        transport,
        connections: {
          handshakeTimeoutMs: 300,
          idleTimeoutMs: 400,
          keepaliveIntervalMs: 300,
          keepaliveTimeoutMs: 300,
        },
      });
    });
    after(() => r.stop());

    test('a peer that never answers PING (dead) is closed after keepalive interval + timeout', async () => {
      const conn = await rawH2(r.port);
      await waitFor('the dead peer closed', () => conn.isClosed(), 10_000);
      assert.ok(
        conn.frames.some((f) => f.type === FRAME.PING && (f.flags & 0x1) === 0),
        'the server pinged before closing',
      );
    });

    test('an idle connection (no call) gets GOAWAY(NO_ERROR) and is closed', async () => {
      const session = http2Connect(`https://127.0.0.1:${r.port}`, {
        rejectUnauthorized: false,
        servername: 'localhost',
      });
      let goaway: number | undefined;
      session.on('goaway', (code: number) => (goaway = code));
      session.on('error', () => {});
      let closed = false;
      session.on('close', () => (closed = true));
      await waitFor('the idle connection closed', () => closed, 10_000);
      assert.equal(goaway, H2.NO_ERROR);
    });

    test('30 hostile connections (stalled handshakes, silent h2 peers): all closed, none left open', async () => {
      const conns: RawConnection[] = [];
      for (let i = 0; i < 10; i++) {
        conns.push(
          await rawTcp(r.port),
          await rawTcp(r.port, PARTIAL_CLIENT_HELLO),
          await rawH2(r.port),
        );
      }
      assert.ok((await r.metric('castellan_grpc_open_connections')) > 0);
      await waitFor(
        'every hostile connection closed',
        () => conns.every((c) => c.isClosed()),
        15_000,
      );
      await waitFor(
        'the server counts no open connection',
        async () => (await r.metric('castellan_grpc_open_connections')) === 0,
      );
      await issueOnce(r);
    });
  });
}

/** nghttp2's sessions only: the listener's probes are how grpc-js's port finds a session nghttp2 gave up on. */
describe('gRPC port (grpc-js): probes of live sessions', () => {
  let r: Reliable;
  let clock: ManualClock;
  before(async () => {
    clock = new ManualClock(Date.now());
    r = await startReliable({
      transport: 'grpc-js',
      clock,
      connections: { keepaliveIntervalMs: LONG },
    });
  });
  after(() => r.stop());

  test('a live idle session answers one probe and is not probed again (its answer earns no probe)', async () => {
    const session = http2Connect(`https://127.0.0.1:${r.port}`, {
      rejectUnauthorized: false,
      servername: 'localhost',
    });
    session.on('error', () => {});
    let pings = 0;
    session.on('ping', () => (pings += 1));
    try {
      await new Promise<void>((resolve) => session.once('remoteSettings', () => resolve()));
      const sent = (): Promise<number> =>
        r.metric('castellan_grpc_ping_probes_total', { outcome: 'sent' });
      // Wait until the server has read the client's preface, SETTINGS and SETTINGS ack.
      await waitFor('the server acknowledged our SETTINGS', () =>
        session.pendingSettingsAck ? false : true,
      );
      await clock.advance(1000); // A sweep: the preface and SETTINGS opened no stream.
      assert.equal(await sent(), 1);
      await waitFor(
        'the probe answered',
        async () =>
          (await r.metric('castellan_grpc_ping_probes_total', { outcome: 'answered' })) === 1,
      );
      assert.equal(pings, 1);
      for (let i = 0; i < 3; i++) await clock.advance(1000);
      assert.equal(await sent(), 1, 'no probe for the answer itself');
      assert.ok(!session.closed && !session.destroyed, 'the live session stays open');
    } finally {
      session.destroy();
    }
  });
});
