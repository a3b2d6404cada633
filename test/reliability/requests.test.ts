// What CreateCertificate answers to requests that are not what they should be, over a real TLS
// channel: undecodable protobuf, a call its client cancelled, and a seeded hostile-input fuzz
// (random and mutated protobuf, CSRs and tokens), each class with its exact gRPC code.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import * as grpc from '@grpc/grpc-js';
import { ISTIO_CA_SERVICE, istioCaPackageDefinition } from '../../src/api/istioca.js';
import { MAX_CSR_BYTES } from '../../src/server/create-certificate.js';
import { workloadLeafIssuer } from '../../src/server/issuers.js';
import { systemClock } from '../../src/clock.js';
import { waitFor } from '../support/wait-for.js';
import { opensslCsr } from '../server/support/client.js';
import { mintToken, startReliable, type Reliable } from './support/harness.js';
import {
  FRAME,
  frame,
  grpcHeaderBlock,
  headersFrames,
  rawH2,
  rstStream,
} from './support/raw-h2.js';
import { seededRng } from '../support/seeded-rng.js';

const CREATE = `/${ISTIO_CA_SERVICE}/CreateCertificate`;
const method = (istioCaPackageDefinition()[ISTIO_CA_SERVICE] as unknown as Record<string, unknown>)[
  'CreateCertificate'
] as {
  requestSerialize(r: unknown): Buffer;
  requestDeserialize(b: Buffer): { csr: string; validityDuration: number };
};
const encode = (csr: string, validityDuration = 0): Buffer =>
  method.requestSerialize({ csr, validityDuration });

/** Protobuf field 1 (csr) of length 5 with one byte; field 3 (validity) as a 11-byte varint. */
const MALFORMED_VARINT = Buffer.from([0x18, ...Array<number>(11).fill(0xff)]);

/** An IstioCertificateRequest whose metadata Struct nests `depth` levels. */
function deepStruct(depth: number): Buffer {
  const tag = (field: number, wire: number): Buffer => Buffer.from([(field << 3) | wire]);
  const varint = (n: number): Buffer => {
    const out: number[] = [];
    while (n > 127) {
      out.push((n & 127) | 128);
      n >>>= 7;
    }
    out.push(n);
    return Buffer.from(out);
  };
  const ld = (field: number, body: Buffer): Buffer =>
    Buffer.concat([tag(field, 2), varint(body.length), body]);
  let struct: Buffer = Buffer.alloc(0);
  for (let i = 0; i < depth; i++) {
    // Struct.fields entry {key "k", value Value{struct_value (5) = struct}}
    struct = ld(1, Buffer.concat([ld(1, Buffer.from('k')), ld(2, ld(5, struct))]));
  }
  return Buffer.concat([ld(1, Buffer.from('x')), ld(4, struct)]);
}

/** Sends raw bytes as the request message: what a hostile client can put on the wire. */
function rawCall(
  client: grpc.Client,
  body: Buffer,
  token?: string,
): Promise<{ code: grpc.status; details: string }> {
  const md = new grpc.Metadata();
  if (token !== undefined) md.set('authorization', `Bearer ${token}`);
  return new Promise((resolve) => {
    client.makeUnaryRequest(
      CREATE,
      (b: Buffer) => b,
      (b: Buffer) => b,
      body,
      md,
      { deadline: Date.now() + 20_000 },
      (err: grpc.ServiceError | null) =>
        resolve(
          err ? { code: err.code, details: err.details } : { code: grpc.status.OK, details: '' },
        ),
    );
  });
}

function channel(r: Reliable): grpc.Client {
  return new grpc.Client(r.target, grpc.credentials.createSsl(Buffer.from(r.ca.rootPem)), {
    'grpc.use_local_subchannel_pool': 1,
  });
}

describe('CreateCertificate: undecodable requests and cancelled calls', () => {
  let r: Reliable;
  let client: grpc.Client;
  let releaseAuth: (() => void) | undefined;
  let held = false;
  before(async () => {
    r = await startReliable({
      // A request with the `x-hold` header waits in authentication until the test lets it go.
      authenticate: async (request, next) => {
        if (request.metadata['x-hold']) {
          held = true;
          await new Promise<void>((resolve) => (releaseAuth = resolve));
        }
        return next(request);
      },
    });
    client = channel(r);
  });
  after(async () => {
    client.close();
    await r.stop();
  });

  test('a malformed varint: INVALID_ARGUMENT (not INTERNAL), audited as refused', async () => {
    const res = await rawCall(client, MALFORMED_VARINT, await mintToken(r));
    assert.equal(res.code, grpc.status.INVALID_ARGUMENT, res.details);
    assert.match(res.details, /could not be decoded: invalid varint/);
    const line = r.auditLines().at(-1)!;
    assert.equal(line.outcome, 'refused');
    assert.equal(line.code, 'INVALID_ARGUMENT');
  });

  test('a Struct nested 50 and 5000 levels: INVALID_ARGUMENT; 10 levels decodes', async () => {
    for (const depth of [50, 5000]) {
      const res = await rawCall(client, deepStruct(depth));
      assert.equal(res.code, grpc.status.INVALID_ARGUMENT, `${depth}: ${res.details}`);
      assert.match(res.details, /nesting depth/);
    }
    // Decodable: it goes on to authentication (no token here).
    const shallow = await rawCall(client, deepStruct(10));
    assert.equal(shallow.code, grpc.status.UNAUTHENTICATED, shallow.details);
  });

  test('a call cancelled while it authenticates is not signed, and is audited as cancelled', async () => {
    const token = await mintToken(r);
    const conn = await rawH2(r.port);
    try {
      const message = encode(opensslCsr('ec').csrPem);
      const prefix = Buffer.alloc(5);
      prefix.writeUInt32BE(message.length, 1);
      const block = grpcHeaderBlock(CREATE, { authorization: `Bearer ${token}`, 'x-hold': '1' });
      conn.socket.write(
        Buffer.concat([
          headersFrames(1, block, false),
          frame(FRAME.DATA, 0x1, 1, Buffer.concat([prefix, message])),
        ]),
      );
      await waitFor('the call reached authentication', () => held);
      // RST_STREAM(CANCEL), then a PING: its ACK says the server has read the reset.
      conn.socket.write(Buffer.concat([rstStream(1), frame(FRAME.PING, 0, 0, Buffer.alloc(8, 7))]));
      await waitFor('PING ACK', () =>
        conn.frames.some((f) => f.type === FRAME.PING && f.flags & 1),
      );
      releaseAuth!();
      const line = await waitFor('the audit line', () =>
        r.auditLines().find((l) => l.outcome === 'cancelled'),
      );
      assert.equal(line.code, 'CANCELLED');
      assert.equal(line.spiffeId, 'spiffe://cluster.local/ns/foo/sa/bar');
      assert.match(String(line.reason), /before signing/);
      assert.equal(r.signed(), 0, 'nothing signed for a caller that left');
      assert.equal(await r.metric('castellan_csr_cancelled_total'), 1);
      assert.equal(await r.metric('citadel_server_success_cert_issuance_count'), 0);
    } finally {
      conn.socket.destroy();
    }
  });
});

describe('CreateCertificate: seeded hostile-input fuzz over TLS', () => {
  const SEED = 20261206;
  const CALLS = 300;
  let r: Reliable;
  let client: grpc.Client;
  before(async () => {
    r = await startReliable();
    client = channel(r);
  });
  after(async () => {
    client.close();
    await r.stop();
  });

  test(`${CALLS} calls (seed ${SEED}): each class gets its exact code, and the server still serves`, async () => {
    const rand = seededRng(SEED);
    const int = (n: number): number => Math.floor(rand() * n);
    const bytes = (n: number): Buffer => Buffer.from(Array.from({ length: n }, () => int(256)));
    const token = await mintToken(r);
    const goodCsr = opensslCsr('ec').csrPem;
    const goodDer = Buffer.from(goodCsr.replace(/-----[^-]+-----|\s/g, ''), 'base64');
    const pem = (der: Buffer): string =>
      `-----BEGIN CERTIFICATE REQUEST-----\n${der.toString('base64').replace(/.{64}/g, '$&\n')}\n-----END CERTIFICATE REQUEST-----\n`;
    const parser = workloadLeafIssuer(systemClock);
    const { OK, INVALID_ARGUMENT, UNAUTHENTICATED } = grpc.status;
    /** What the server must answer a decodable request carrying a valid token (the CSR is checked by the production parser, here). */
    const expectWithToken = async (csr: string, ttlSeconds: number): Promise<grpc.status> => {
      if (Buffer.byteLength(csr) > MAX_CSR_BYTES) return INVALID_ARGUMENT;
      if (ttlSeconds * 1000 > 90 * 86_400_000) return INVALID_ARGUMENT;
      return Promise.resolve()
        .then(() => parser.parseCsr(csr))
        .then(
          () => OK,
          () => INVALID_ARGUMENT,
        );
    };
    const decodeOrUndefined = (
      b: Buffer,
    ): { csr: string; validityDuration: number } | undefined => {
      try {
        return method.requestDeserialize(b);
      } catch {
        return undefined;
      }
    };
    const mutateToken = (t: string): string => {
      // Flip a character that is not the last of its segment (a last base64url character
      // carries padding bits some decoders ignore).
      const segments = t.split('.');
      const s = int(segments.length);
      const seg = segments[s]!;
      if (seg.length < 2) return `${t}x`;
      const at = int(seg.length - 1);
      const c = seg[at] === 'A' ? 'B' : 'A';
      segments[s] = seg.slice(0, at) + c + seg.slice(at + 1);
      return segments.join('.');
    };

    const counts: Record<string, number> = {};
    for (let i = 0; i < CALLS; i++) {
      const kind = [
        'random-protobuf',
        'truncated-protobuf',
        'mutated-csr',
        'garbage-csr',
        'bad-token',
        'ttl',
        'good',
      ][int(7)]!;
      counts[kind] = (counts[kind] ?? 0) + 1;
      let body: Buffer;
      let sendToken: string | undefined = token;
      let expected: grpc.status;
      switch (kind) {
        case 'random-protobuf': {
          body = bytes(int(200));
          sendToken = undefined;
          const decoded = decodeOrUndefined(body);
          expected =
            decoded === undefined || Buffer.byteLength(decoded.csr) > MAX_CSR_BYTES
              ? INVALID_ARGUMENT
              : UNAUTHENTICATED;
          break;
        }
        case 'truncated-protobuf': {
          const full = encode(goodCsr, 3600);
          body = full.subarray(0, int(full.length));
          const decoded = decodeOrUndefined(body);
          expected =
            decoded === undefined
              ? INVALID_ARGUMENT
              : await expectWithToken(decoded.csr, decoded.validityDuration);
          break;
        }
        case 'mutated-csr': {
          const der = Buffer.from(goodDer);
          for (let n = 1 + int(3); n > 0; n--) {
            const at = int(der.length);
            der[at] = der[at]! ^ (1 + int(255));
          }
          const csr = pem(der);
          body = encode(csr);
          expected = der.equals(goodDer) ? OK : await expectWithToken(csr, 0);
          break;
        }
        case 'garbage-csr': {
          const choice = int(4);
          const csr =
            choice === 0
              ? ''
              : choice === 1
                ? bytes(int(300)).toString('latin1')
                : choice === 2
                  ? pem(bytes(64 + int(200)))
                  : 'A'.repeat(MAX_CSR_BYTES + 1 + int(1000));
          body = encode(csr);
          expected = await expectWithToken(csr, 0);
          break;
        }
        case 'bad-token': {
          const choice = int(3);
          sendToken =
            choice === 0
              ? mutateToken(token)
              : choice === 1
                ? bytes(int(100)).toString('base64url')
                : '';
          body = encode(goodCsr);
          expected = UNAUTHENTICATED;
          break;
        }
        case 'ttl': {
          const ttl = int(2) === 0 ? 90 * 86_400 + 1 + int(1e9) : -int(1e6);
          body = encode(goodCsr, ttl);
          expected = await expectWithToken(goodCsr, ttl);
          break;
        }
        default:
          body = encode(goodCsr, int(86_400));
          expected = OK;
      }
      const res = await rawCall(client, body, sendToken);
      assert.equal(
        grpc.status[res.code],
        grpc.status[expected],
        `call ${i} (${kind}, seed ${SEED}): ${res.details}`,
      );
      assert.notEqual(res.details, 'Error deserializing request');
    }
    for (const kind of Object.keys(counts))
      assert.ok(counts[kind]! > 10, `${kind}: ${counts[kind]} calls`);
    // Still serving: a good request is signed.
    const last = await rawCall(client, encode(goodCsr), token);
    assert.equal(last.code, OK, last.details);
  });
});
