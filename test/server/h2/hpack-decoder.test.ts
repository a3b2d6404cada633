// The HPACK decoder (src/server/h2/hpack-decoder.ts): RFC 7541 Appendix C, the header blocks
// a real encoder (node:http2, i.e. nghttp2) sends, the failure modes, and the same-string property
// (an indexed hit returns the very string made when the entry was inserted).
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { once } from 'node:events';
import http2 from 'node:http2';
import { createServer, type AddressInfo, type Socket } from 'node:net';
import {
  HpackDecoder,
  HpackError,
  HUFFMAN_CODES,
  HUFFMAN_LENGTHS,
} from '../../../src/server/h2/hpack-decoder.js';

const hex = (s: string): Buffer => Buffer.from(s.replace(/\s+/g, ''), 'hex');
const pairs = (flat: string[]): [string, string][] => {
  const out: [string, string][] = [];
  for (let i = 0; i < flat.length; i += 2) out.push([flat[i]!, flat[i + 1]!]);
  return out;
};

/** An HPACK integer (RFC 7541 5.1) with `prefixBits`, the first octet's other bits `flags`. */
function int(value: number, prefixBits: number, flags = 0): number[] {
  const max = (1 << prefixBits) - 1;
  if (value < max) return [flags | value];
  const out = [flags | max];
  value -= max;
  while (value >= 128) {
    out.push((value & 0x7f) | 0x80);
    value = Math.floor(value / 128);
  }
  out.push(value);
  return out;
}
/** Huffman-encodes (RFC 7541 Appendix B) a latin1 string, padded with ones. */
function huffman(s: string): number[] {
  const out: number[] = [];
  let acc = 0n;
  let bits = 0n;
  for (const c of Buffer.from(s, 'latin1')) {
    acc = (acc << BigInt(HUFFMAN_LENGTHS[c]!)) | BigInt(HUFFMAN_CODES[c]!);
    bits += BigInt(HUFFMAN_LENGTHS[c]!);
  }
  const pad = (8n - (bits % 8n)) % 8n;
  acc = (acc << pad) | ((1n << pad) - 1n);
  bits += pad;
  for (let shift = bits - 8n; shift >= 0n; shift -= 8n) out.push(Number((acc >> shift) & 0xffn));
  return out;
}
/** A Huffman string literal. */
const hstr = (s: string): number[] => {
  const h = huffman(s);
  return [...int(h.length, 7, 0x80), ...h];
};
/** A raw (not Huffman) string literal. */
const str = (s: string): number[] => [...int(s.length, 7), ...Buffer.from(s, 'latin1')];

describe('RFC 7541 Appendix C', () => {
  test('C.2.1 literal with indexing', () => {
    const d = new HpackDecoder();
    const block = hex('400a 6375 7374 6f6d 2d6b 6579 0d63 7573 746f 6d2d 6865 6164 6572');
    assert.deepEqual(d.decode(block), ['custom-key', 'custom-header']);
    assert.deepEqual(d.dynamicTableEntries(), [['custom-key', 'custom-header']]);
    assert.equal(d.dynamicTableSize, 55);
  });

  test('C.2.2 literal without indexing', () => {
    const d = new HpackDecoder();
    assert.deepEqual(d.decode(hex('040c 2f73 616d 706c 652f 7061 7468')), [
      ':path',
      '/sample/path',
    ]);
    assert.deepEqual(d.dynamicTableEntries(), []);
    assert.equal(d.dynamicTableSize, 0);
  });

  test('C.2.3 literal never indexed', () => {
    const d = new HpackDecoder();
    const block = hex('1008 7061 7373 776f 7264 0673 6563 7265 74');
    assert.deepEqual(d.decode(block), ['password', 'secret']);
    assert.deepEqual(d.dynamicTableEntries(), []);
    assert.equal(d.dynamicTableSize, 0);
  });

  test('C.2.4 indexed field', () => {
    const d = new HpackDecoder();
    assert.deepEqual(d.decode(hex('82')), [':method', 'GET']);
    assert.deepEqual(d.dynamicTableEntries(), []);
  });

  const requests = [
    {
      headers: [':method', 'GET', ':scheme', 'http', ':path', '/', ':authority', 'www.example.com'],
      table: [[':authority', 'www.example.com']],
      size: 57,
    },
    {
      headers: [
        ':method',
        'GET',
        ':scheme',
        'http',
        ':path',
        '/',
        ':authority',
        'www.example.com',
        'cache-control',
        'no-cache',
      ],
      table: [
        ['cache-control', 'no-cache'],
        [':authority', 'www.example.com'],
      ],
      size: 110,
    },
    {
      headers: [
        ':method',
        'GET',
        ':scheme',
        'https',
        ':path',
        '/index.html',
        ':authority',
        'www.example.com',
        'custom-key',
        'custom-value',
      ],
      table: [
        ['custom-key', 'custom-value'],
        ['cache-control', 'no-cache'],
        [':authority', 'www.example.com'],
      ],
      size: 164,
    },
  ];

  const run = (blocks: string[]): void => {
    const d = new HpackDecoder();
    blocks.forEach((b, i) => {
      assert.deepEqual(d.decode(hex(b)), requests[i]!.headers, `request ${i + 1}`);
      assert.deepEqual(d.dynamicTableEntries(), requests[i]!.table, `table after request ${i + 1}`);
      assert.equal(d.dynamicTableSize, requests[i]!.size, `table size after request ${i + 1}`);
    });
  };

  test('C.3 requests without Huffman coding, one decoder', () => {
    run([
      '8286 8441 0f77 7777 2e65 7861 6d70 6c65 2e63 6f6d',
      '8286 84be 5808 6e6f 2d63 6163 6865',
      '8287 85bf 400a 6375 7374 6f6d 2d6b 6579 0c63 7573 746f 6d2d 7661 6c75 65',
    ]);
  });

  test('C.4 requests with Huffman coding, one decoder', () => {
    run([
      '8286 8441 8cf1 e3c2 e5f2 3a6b a0ab 90f4 ff',
      '8286 84be 5886 a8eb 1064 9cbf',
      '8287 85bf 4088 25a8 49e9 5ba9 7d7f 8925 a849 e95b b8e8 b4bf',
    ]);
  });
});

/** HTTP/2 frames as a server sees them: the header blocks, in order, and frame types seen. */
class FrameReader {
  private buf = Buffer.alloc(0);
  private prefaceSeen = false;
  private pending: Buffer[] = [];
  readonly blocks: Buffer[] = [];
  readonly types = new Set<number>();

  push(chunk: Buffer): void {
    this.buf = Buffer.concat([this.buf, chunk]);
    if (!this.prefaceSeen) {
      if (this.buf.length < 24) return;
      assert.equal(this.buf.subarray(0, 24).toString('latin1'), 'PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n');
      this.buf = this.buf.subarray(24);
      this.prefaceSeen = true;
    }
    while (this.buf.length >= 9) {
      const length = this.buf.readUIntBE(0, 3);
      if (this.buf.length < 9 + length) return;
      const type = this.buf[3]!;
      const flags = this.buf[4]!;
      let payload = this.buf.subarray(9, 9 + length);
      this.buf = this.buf.subarray(9 + length);
      this.types.add(type);
      if (type === 1) {
        // HEADERS: strip padding (PADDED 0x8) and the priority fields (PRIORITY 0x20).
        let start = 0;
        let end = payload.length;
        if (flags & 0x8) {
          end -= payload[0]!;
          start = 1;
        }
        if (flags & 0x20) start += 5;
        payload = payload.subarray(start, end);
        assert.equal(this.pending.length, 0, 'HEADERS inside another header block');
        this.pending.push(payload);
      } else if (type === 9) {
        assert.ok(this.pending.length > 0, 'CONTINUATION outside a header block');
        this.pending.push(payload);
      } else {
        continue;
      }
      if (flags & 0x4) {
        this.blocks.push(Buffer.concat(this.pending));
        this.pending = [];
      }
    }
  }
}

test('decodes the header blocks node:http2 (nghttp2) sends', { timeout: 20_000 }, async () => {
  const reader = new FrameReader();
  let wanted = Infinity;
  let gotAll!: () => void;
  const allArrived = new Promise<void>((resolve) => (gotAll = resolve));
  const sockets: Socket[] = [];
  const server = createServer((socket) => {
    sockets.push(socket);
    socket.on('data', (chunk: Buffer) => {
      reader.push(chunk);
      if (reader.blocks.length >= wanted) gotAll();
    });
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const port = (server.address() as AddressInfo).port;
  const authorization = `Bearer ${'eyJhbGciOiJSUzI1NiJ9.'.repeat(48)}`.slice(0, 1000);
  const big = 'x'.repeat(20_000); // over one 16 KiB frame after Huffman: needs CONTINUATION
  type Sent = Record<string, string>;
  const sent: { headers: Sent; sensitive?: string[] }[] = [
    {
      headers: {
        ':method': 'POST',
        ':path': '/istio.v1.auth.IstioCertificateService/CreateCertificate',
        'content-type': 'application/grpc',
        te: 'trailers',
        authorization,
        'user-agent': 'grpc-go/1.60.0',
      },
    },
    {
      headers: {
        ':method': 'POST',
        ':path': '/istio.v1.auth.IstioCertificateService/CreateCertificate',
        'content-type': 'application/grpc',
        te: 'trailers',
        authorization,
        'user-agent': 'grpc-go/1.60.0',
        'x-request-id': 'b4f6c2d0-1',
      },
    },
    {
      headers: {
        ':method': 'GET',
        ':path': '/a/b?c=d&e=%20f',
        authorization,
        'x-custom': 'one',
        'x-secret': 'hunter2',
        'accept-encoding': 'gzip, deflate',
      },
      sensitive: ['x-secret'],
    },
    { headers: { ':method': 'GET', ':path': '/big', 'x-big': big, authorization } },
    {
      headers: {
        ':method': 'POST',
        ':path': '/istio.v1.auth.IstioCertificateService/CreateCertificate',
        'content-type': 'application/grpc',
        te: 'trailers',
        authorization,
        'user-agent': 'grpc-go/1.60.0',
        'x-request-id': 'b4f6c2d0-2',
        'x-secret': 'hunter2',
      },
      sensitive: ['x-secret'],
    },
  ];
  wanted = sent.length;
  const client = http2.connect(`http://127.0.0.1:${port}`);
  client.on('error', () => {});
  try {
    for (const s of sent) {
      const headers: http2.OutgoingHttpHeaders = { ...s.headers };
      if (s.sensitive) (headers as Record<symbol, unknown>)[http2.sensitiveHeaders] = s.sensitive;
      const req = client.request(headers, { endStream: true });
      req.on('error', () => {});
    }
    await allArrived;
  } finally {
    client.destroy();
    for (const s of sockets) s.destroy();
    server.close();
  }
  assert.ok(reader.types.has(9), 'a CONTINUATION frame was sent');
  assert.equal(reader.blocks.length, sent.length);

  const d = new HpackDecoder();
  const authValues: string[] = [];
  reader.blocks.forEach((block, i) => {
    const got = pairs(d.decode(block));
    const expected: [string, string][] = [
      ...Object.entries(sent[i]!.headers),
      [':scheme', 'http'],
      [':authority', `127.0.0.1:${port}`],
    ];
    const sort = (a: [string, string][]): [string, string][] =>
      [...a].sort((x, y) => (x[0] + '\0' + x[1] < y[0] + '\0' + y[1] ? -1 : 1));
    assert.deepEqual(sort(got), sort(expected), `request ${i + 1}`);
    for (const [name, value] of got) if (name === 'authorization') authValues.push(value);
  });
  // nghttp2 sends authorization as a never-indexed literal, every time.
  assert.equal(authValues.length, sent.length);
  const table = d.dynamicTableEntries();
  assert.ok(!table.some(([n]) => n === 'authorization'), 'nghttp2 never indexes authorization');
  assert.ok(!table.some(([n]) => n === 'x-secret'), 'a sensitive header is never indexed');
  assert.ok(table.some(([n, v]) => n === 'x-custom' && v === 'one'));
  assert.ok(table.some(([n, v]) => n === 'content-type' && v === 'application/grpc'));
});

test('Huffman: every octet value round-trips, at every bit alignment', () => {
  const d = new HpackDecoder();
  const all = Array.from({ length: 256 }, (_, i) => String.fromCharCode(i)).join('');
  for (let lead = 0; lead < 8; lead++) {
    const s = 'a'.repeat(lead) + all + all.split('').reverse().join('');
    assert.equal(d.decode(Uint8Array.from([0x04, ...hstr(s)]))[1], s);
  }
  assert.equal(d.decode(Uint8Array.from([0x04, 0x80]))[1], ''); // empty Huffman string
});

describe('failures are HpackError', () => {
  const fails = (
    block: number[],
    message: RegExp,
    options?: ConstructorParameters<typeof HpackDecoder>[0],
  ) =>
    assert.throws(
      () => new HpackDecoder(options).decode(Uint8Array.from(block)),
      (e: unknown) => e instanceof HpackError && message.test(e.message),
    );

  test('index 0', () => {
    fails([0x80], /index 0/);
  });
  test('index beyond the table', () => {
    fails([0xbe], /index 62 beyond/); // empty dynamic table
    fails([...int(70, 7, 0x80)], /index 70 beyond/);
    fails([0x7e, ...str('v')], /index 62 beyond/); // as a literal's name
    fails([0x0f, 0x30, ...str('v')], /index 63 beyond/);
  });
  test('table size update above the maximum', () => {
    assert.deepEqual(new HpackDecoder().decode(Uint8Array.from(int(4096, 5, 0x20))), []);
    fails(int(4097, 5, 0x20), /table size update to 4097/);
    fails(int(101, 5, 0x20), /table size update to 101/, { maxTableSize: 100 });
  });
  test('table size update not at the start of the block', () => {
    fails([0x82, 0x20], /after the start/);
  });
  test('truncated integer', () => {
    fails([0xff], /truncated integer/);
    fails([0xff, 0x80], /truncated integer/);
    fails([0x40, 0x7f], /truncated integer/); // a string length
  });
  test('integer overflow', () => {
    fails([0xff, 0xff, 0xff, 0xff, 0xff, 0x0f], /integer too large/);
    fails([0x04, 0x7f, 0x80, 0x80, 0x80, 0x80, 0x00], /integer too large/);
  });
  test('string length past the end of the block', () => {
    fails([0x40, 0x0a, 0x61], /past the end/);
    fails([0x04, 0x05, 0x61, 0x62], /past the end/);
    fails([0x04], /string expected/);
  });
  test('Huffman: 8 bits or more of padding', () => {
    // 'a' is 00011: 0x1f is 'a' + 3 bits of padding (fine), then a whole octet of ones.
    assert.deepEqual(new HpackDecoder().decode(Uint8Array.from([0x04, 0x81, 0x1f])), [
      ':path',
      'a',
    ]);
    fails([0x04, 0x82, 0x1f, 0xff], /padding/);
    fails([0x04, 0x81, 0xff], /padding/);
  });
  test('Huffman: padding that is not all ones', () => {
    fails([0x04, 0x81, 0x18], /padding/);
    fails([0x04, 0x81, 0x1e], /padding/);
  });
  test('Huffman: EOS in the string', () => {
    fails([0x04, 0x84, 0xff, 0xff, 0xff, 0xfc], /EOS/); // EOS is 30 ones
    fails([0x04, 0x85, 0x1f, 0xff, 0xff, 0xff, 0xff], /EOS/); // 'a', then EOS
  });
  test('uppercase header name', () => {
    fails([0x40, ...str('X-Foo'), ...str('v')], /uppercase/);
    fails([0x00, ...str('x-Foo'), ...str('v')], /uppercase/);
    fails([0x10, ...str('AUTH'), ...str('v')], /uppercase/);
  });
  test('header list over maxHeaderListBytes', () => {
    const block = [0x00, ...str('a'.repeat(30)), ...str('b'.repeat(30))]; // 92 octets
    assert.equal(
      new HpackDecoder({ maxHeaderListBytes: 92 }).decode(Uint8Array.from(block)).length,
      2,
    );
    fails(block, /header list above 91/, { maxHeaderListBytes: 91 });
    fails([0x82, 0x82, 0x82], /header list above 100/, { maxHeaderListBytes: 100 }); // 3 x 42
    const d = new HpackDecoder(); // default 64 KiB
    assert.throws(
      () => d.decode(Uint8Array.from([0x00, ...str('x'), ...str('y'.repeat(65_536))])),
      HpackError,
    );
  });
});

describe('dynamic table', () => {
  test('evicts oldest first, by size', () => {
    const d = new HpackDecoder({ maxTableSize: 100 });
    d.decode(Uint8Array.from([0x40, ...str('aa'), ...str('1'.repeat(20))])); // 54
    d.decode(Uint8Array.from([0x40, ...str('bb'), ...str('2'.repeat(10))])); // 44: 98 in all
    assert.equal(d.dynamicTableSize, 98);
    d.decode(Uint8Array.from([0x40, ...str('cc'), ...str('3')])); // 35: evicts aa
    assert.deepEqual(d.dynamicTableEntries(), [
      ['cc', '3'],
      ['bb', '2'.repeat(10)],
    ]);
    assert.equal(d.dynamicTableSize, 79);
    // 62 is the newest, 63 the one before.
    assert.deepEqual(d.decode(Uint8Array.from([0xbe, 0xbf])), ['cc', '3', 'bb', '2'.repeat(10)]);
    assert.throws(() => d.decode(Uint8Array.from([0xc0])), HpackError);
  });

  test('an entry larger than the table empties it, without error (RFC 7541 4.4)', () => {
    const d = new HpackDecoder({ maxTableSize: 100 });
    d.decode(Uint8Array.from([0x40, ...str('aa'), ...str('1')]));
    assert.equal(d.dynamicTableEntries().length, 1);
    const big = 'z'.repeat(80);
    // Literal with incremental indexing whose name is the entry about to be evicted (4.4).
    assert.deepEqual(d.decode(Uint8Array.from([0x7e, ...str(big)])), ['aa', big]);
    assert.deepEqual(d.dynamicTableEntries(), []);
    assert.equal(d.dynamicTableSize, 0);
  });

  test('size updates at the start shrink the table, and a zero-size table indexes nothing', () => {
    const d = new HpackDecoder();
    d.decode(Uint8Array.from([0x40, ...str('aa'), ...str('1'), 0x40, ...str('bb'), ...str('2')]));
    assert.equal(d.dynamicTableSize, 70);
    // Two updates (0, then 4096) at the start: the table is emptied, then may grow again.
    assert.deepEqual(d.decode(Uint8Array.from([0x20, ...int(4096, 5, 0x20), 0x82])), [
      ':method',
      'GET',
    ]);
    assert.equal(d.dynamicTableSize, 0);
    d.decode(Uint8Array.from([0x20]));
    d.decode(Uint8Array.from([0x40, ...str('cc'), ...str('3')]));
    assert.deepEqual(d.dynamicTableEntries(), []);
    d.decode(Uint8Array.from(int(4096, 5, 0x20)));
    d.decode(Uint8Array.from([0x40, ...str('dd'), ...str('4')]));
    assert.deepEqual(d.dynamicTableEntries(), [['dd', '4']]);
  });

  test('a long history wraps the ring without losing entries', () => {
    const d = new HpackDecoder({ maxTableSize: 256 });
    for (let i = 0; i < 500; i++) {
      const value = String(i).padStart(4, '0');
      d.decode(Uint8Array.from([0x40, ...str('k'), ...str(value)])); // 37 octets each: 6 fit
      const table = d.dynamicTableEntries();
      assert.equal(table.length, Math.min(i + 1, 6));
      assert.deepEqual(table[0], ['k', value]);
      assert.deepEqual(d.decode(Uint8Array.from(int(61 + table.length, 7, 0x80))), [
        'k',
        table.at(-1)![1],
      ]);
    }
  });
});

describe('the same strings come back', () => {
  // Which string object a decode returns cannot be seen from JavaScript (Object.is compares
  // strings by value): these read the decoder's own table and cache.
  test('a warm block decodes from the dynamic table, which it leaves as it was', () => {
    const d = new HpackDecoder();
    const auth = `Bearer ${'t'.repeat(900)}`;
    // First block inserts; the warm block refers to the entries by index.
    d.decode(
      Uint8Array.from([
        0x40,
        ...str('x-a'),
        ...str('alpha'),
        0x57, // authorization (23) with incremental indexing
        ...str(auth),
      ]),
    );
    const warm = Uint8Array.from([0x83, 0x87, 0xbe, 0xbf, 0x04, 0x03, 0x61, 0x62, 0x63]);
    const table = d.dynamicTableEntries();
    const size = d.dynamicTableSize;
    const a = d.decode(warm);
    const b = d.decode(warm);
    assert.deepEqual(a, [
      ':method',
      'POST',
      ':scheme',
      'https',
      'authorization',
      auth,
      'x-a',
      'alpha',
      ':path',
      'abc',
    ]);
    assert.deepEqual(b, a);
    assert.deepEqual(d.dynamicTableEntries(), table);
    assert.equal(d.dynamicTableSize, size);
    const values = (d as unknown as { values: string[] }).values;
    assert.ok(values.includes(auth), 'the table holds the string it hands out');
  });

  test('non-indexed literals (raw and Huffman) come from the cache, keyed by their octets', () => {
    const d = new HpackDecoder();
    // :path /sample/path raw, then the RFC's Huffman "www.example.com" as a non-indexed value.
    const block = hex('040c 2f73 616d 706c 652f 7061 7468 018c f1e3 c2e5 f23a 6ba0 ab90 f4ff');
    const a = d.decode(block);
    assert.deepEqual(a, [':path', '/sample/path', ':authority', 'www.example.com']);
    // Copies of the block in another buffer: the cache compares octets, not buffers.
    const b = d.decode(Uint8Array.from(block));
    assert.deepEqual(b, a);
    const cached = (d as unknown as { cacheStrings: string[] }).cacheStrings;
    assert.ok(cached.includes('/sample/path') && cached.includes('www.example.com'));
    // Other octets of the same length: a different string.
    const c = d.decode(hex('040c 2f73 616d 706c 652f 7061 7479'));
    assert.equal(c[1], '/sample/paty');
    assert.equal(d.decode(block)[1], '/sample/path');
  });

  test('the literal cache holds at most 8 strings of at most 2048 octets; a longer literal is decoded each time, not kept', () => {
    const d = new HpackDecoder();
    const cache = d as unknown as { cacheKeys: Buffer[]; cacheStrings: string[] };
    // A literal never indexed (RFC 7541 6.2.3), new name, raw value.
    const neverIndexed = (value: string): Uint8Array =>
      Uint8Array.from([0x10, ...str('x-v'), ...str(value)]);
    for (const octets of [1000, 2048, 2049]) {
      const value = `${octets}:`.padEnd(octets, 'v');
      const a = d.decode(neverIndexed(value));
      const b = d.decode(neverIndexed(value));
      assert.deepEqual(a, ['x-v', value]);
      assert.deepEqual(b, a);
      assert.equal(cache.cacheStrings.includes(value), octets <= 2048, `${octets} octets`);
    }
    for (let i = 0; i < 200; i++) d.decode(neverIndexed(`${i}:`.padEnd(2048 - (i % 50), 'w')));
    assert.equal(cache.cacheKeys.length, 8);
    assert.equal(cache.cacheStrings.length, 8);
    const held = cache.cacheKeys.reduce((n, k) => n + k.length, 0);
    assert.ok(held <= 8 * 2048, `${held} octets held`);
  });

  test('two literals a client repeats in turn both stay cached, whatever set they fall in (two ways per set)', () => {
    const cache = (d: HpackDecoder): string[] =>
      (d as unknown as { cacheStrings: string[] }).cacheStrings;
    const neverIndexed = (value: string): Uint8Array =>
      Uint8Array.from([0x10, ...str('x-v'), ...str(value)]);
    // Pairs of values of the same length and first, middle and last octets: the same set.
    for (let n = 10; n < 60; n++) {
      const d = new HpackDecoder();
      const a = `a${'x'.repeat(n)}m${'y'.repeat(n)}z`;
      const b = `a${'q'.repeat(n)}m${'r'.repeat(n)}z`;
      for (let round = 0; round < 3; round++) {
        d.decode(neverIndexed(a));
        d.decode(neverIndexed(b));
      }
      assert.ok(cache(d).includes(a) && cache(d).includes(b), `length ${a.length}`);
      // A third literal of the same set replaces the one used least recently (a), not b.
      const c = `a${'s'.repeat(n)}m${'t'.repeat(n)}z`;
      d.decode(neverIndexed(c));
      assert.ok(cache(d).includes(b) && cache(d).includes(c) && !cache(d).includes(a));
    }
  });
});

describe('lastListBytes', () => {
  /** RFC 7541 4.1: each field's name and value octets, plus 32. */
  const listBytes = (flat: string[]): number =>
    pairs(flat).reduce((n, [name, value]) => n + name.length + value.length + 32, 0);

  test('the header list size of the last block decoded: indexed, Huffman, literal fields', () => {
    const d = new HpackDecoder();
    assert.equal(d.lastListBytes, 0);
    // RFC 7541 C.4.1: :method GET, :scheme http, :path /, :authority www.example.com (Huffman,
    // 12 octets on the wire for 15).
    const first = d.decode(hex('8286 8441 8cf1 e3c2 e5f2 3a6b a0ab 90f4 ff'));
    assert.equal(d.lastListBytes, 42 + 43 + 38 + 57);
    assert.equal(d.lastListBytes, listBytes(first));
    // C.4.2: the same, :authority from the dynamic table, and cache-control: no-cache.
    const second = d.decode(hex('8286 84be 5886 a8eb 1064 9cbf'));
    assert.equal(d.lastListBytes, 42 + 43 + 38 + 57 + 53, 'the last block alone');
    assert.equal(d.lastListBytes, listBytes(second));
    const big = 'x'.repeat(5000);
    const third = d.decode(
      Uint8Array.from([0x10, ...str('x-big'), ...str(big), 0x00, ...str('a'), ...str('')]),
    );
    assert.equal(d.lastListBytes, 5 + 5000 + 32 + 1 + 0 + 32);
    assert.equal(d.lastListBytes, listBytes(third));
    d.decode(new Uint8Array(0));
    assert.equal(d.lastListBytes, 0);
  });
});
