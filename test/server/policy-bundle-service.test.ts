// Serving bundles over real TLS: GET /v1/bundles/<ns>/<pod> and the gRPC Watch stream. The
// caller presents Istio's sample workload certificate (spiffe://trust-domain-foo/ns/foo/sa/foo).
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { readFileSync } from 'node:fs';
import { createServer, request, type Server as HttpsServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import {
  createServer as createTlsServer,
  type Server as TlsServer,
  type TLSSocket,
} from 'node:tls';
import { join } from 'node:path';
import { X509Certificate } from 'node:crypto';
import {
  Client,
  Server,
  ServerCredentials,
  credentials,
  status,
  type ClientReadableStream,
} from '@grpc/grpc-js';
import { ClientCertAuthenticator } from '../../src/authn/client-cert-authenticator.js';
import { systemClock } from '../../src/clock.js';
import { GrpcServer } from '../../src/server/h2/grpc-server.js';
import { PolicyCompiler } from '../../src/policy/compiler.js';
import { DEFAULT_MESH } from '../../src/policy/mesh.js';
import { parseWorkload } from '../../src/policy/workload.js';
import {
  handleBundleHttp,
  policyBundleService,
  type PolicyBundleServingOptions,
} from '../../src/server/policy-bundle-service.js';
import { ap, resources } from '../policy/helpers.js';
import { istioSampleCerts } from '../support/paths.js';
import { policyBundleClient } from './support/client.js';
import { FRAME, rawH2, rstStream } from '../reliability/support/raw-h2.js';
import { dataOf, messagesOf, request as h2Request, windowUpdate } from './h2/support/harness.js';
import { waitFor } from '../support/wait-for.js';

/** RFC 9113 SETTINGS_INITIAL_WINDOW_SIZE. */
const SETTINGS_INITIAL_WINDOW_SIZE = 4;

const read = (f: string): string => readFileSync(join(istioSampleCerts, f), 'utf8');
const root = read('root-cert.pem');
const chain = read('cert-chain.pem');
const serverCert = read('workload-bar-cert.pem');
const serverKey = read('workload-bar-key.pem');
const clientCert = read('workload-foo-cert.pem');
const clientKey = read('workload-foo-key.pem');

const compiler = new PolicyCompiler(DEFAULT_MESH);
compiler.upsertWorkload(
  parseWorkload({ namespace: 'foo', name: 'foo-1', serviceAccount: 'foo', labels: { app: 'foo' } }),
);
compiler.upsertWorkload(
  parseWorkload({
    namespace: 'foo',
    name: 'other-1',
    serviceAccount: 'other',
    labels: { app: 'other' },
  }),
);
const options: PolicyBundleServingOptions = {
  source: compiler,
  authenticator: new ClientCertAuthenticator({
    trustDomain: 'trust-domain-foo',
    roots: () => [new X509Certificate(root)],
  }),
  intermediates: () => [new Uint8Array(new X509Certificate(chain).raw)],
};

let https: HttpsServer;
let grpc: Server;
let httpsPort = 0;
let grpcPort = 0;
/** The same service on Castellan's own transport (the CA port's default), behind TLS. */
let ours: GrpcServer;
/** Watch calls of `ours` following the compiler now. */
let oursFollowing = 0;
let oursTls: TlsServer;
let oursPort = 0;

before(async () => {
  https = createServer(
    { key: serverKey, cert: serverCert, ca: root, requestCert: true, rejectUnauthorized: false },
    (req, res) => {
      if (!handleBundleHttp(options, req, res)) res.writeHead(404).end();
    },
  );
  await new Promise<void>((r) => https.listen(0, '127.0.0.1', r));
  httpsPort = (https.address() as AddressInfo).port;
  grpc = new Server();
  const { service, implementation } = policyBundleService(options);
  grpc.addService(service, implementation);
  grpcPort = await new Promise<number>((resolve, reject) =>
    grpc.bindAsync(
      '127.0.0.1:0',
      ServerCredentials.createSsl(
        Buffer.from(root),
        [{ private_key: Buffer.from(serverKey), cert_chain: Buffer.from(serverCert) }],
        // grpc-js only hands out a peer certificate it requested; the CA port's own
        // credentials decide that, here we ask for one.
        true,
      ),
      (e, p) => (e ? reject(e) : resolve(p)),
    ),
  );
});

before(async () => {
  ours = new GrpcServer({
    maxReceiveMessageBytes: 4096,
    limits: {
      maxConcurrentStreams: 100,
      maxHeaderListBytes: 65535,
      keepaliveIntervalMs: 0,
      keepaliveTimeoutMs: 10_000,
      idleTimeoutMs: 0,
    },
    clock: systemClock,
  });
  const { service, implementation } = policyBundleService({
    ...options,
    source: {
      bundle: (namespace, name) => compiler.bundle(namespace, name),
      onBundle: (listener) => {
        oursFollowing++;
        const stop = compiler.onBundle(listener);
        let stopped = false;
        return () => {
          if (stopped) return;
          stopped = true;
          oursFollowing--;
          stop();
        };
      },
    },
  });
  ours.addService(service, implementation);
  oursTls = createTlsServer(
    {
      key: serverKey,
      cert: serverCert,
      ca: root,
      requestCert: true,
      rejectUnauthorized: false,
      ALPNProtocols: ['h2'],
    },
    (socket: TLSSocket) => ours.takeConnection(socket),
  );
  await new Promise<void>((r) => oursTls.listen(0, '127.0.0.1', r));
  oursPort = (oursTls.address() as AddressInfo).port;
});

after(async () => {
  await new Promise<void>((r) => https.close(() => r()));
  grpc.forceShutdown();
  ours.destroyAll();
  await new Promise<void>((r) => oursTls.close(() => r()));
});

function get(
  path: string,
  withCert: boolean,
  headers: Record<string, string> = {},
): Promise<{ status: number; body: string; etag: string | undefined }> {
  return new Promise((resolve, reject) => {
    const req = request(
      {
        host: '127.0.0.1',
        port: httpsPort,
        path,
        headers,
        ca: root,
        checkServerIdentity: () => undefined,
        ...(withCert ? { cert: clientCert, key: clientKey } : {}),
      },
      (res) => {
        let body = '';
        res
          .setEncoding('utf8')
          .on('data', (c: string) => (body += c))
          .on('end', () => resolve({ status: res.statusCode ?? 0, body, etag: res.headers.etag }));
      },
    );
    req.on('error', reject).end();
  });
}

test('GET /v1/bundles: the workload receives its own bundle', async () => {
  const r = await get('/v1/bundles/foo/foo-1', true);
  assert.equal(r.status, 200, r.body);
  const bundle = JSON.parse(r.body) as { workload: { name: string }; hash: string };
  assert.equal(bundle.workload.name, 'foo-1');
  assert.equal(bundle.hash, compiler.bundle('foo', 'foo-1')!.hash);
});

test('GET /v1/bundles: If-None-Match that matches the ETag gets 304 with no body', async () => {
  const first = await get('/v1/bundles/foo/foo-1', true);
  assert.equal(first.status, 200, first.body);
  const etag = first.etag!;
  assert.equal(etag, `"${compiler.bundle('foo', 'foo-1')!.hash}"`);
  for (const inm of [etag, `W/${etag}`, '*', `"other", ${etag}`, `"a,b",W/${etag} , "c"`]) {
    const r = await get('/v1/bundles/foo/foo-1', true, { 'if-none-match': inm });
    assert.equal(r.status, 304, inm);
    assert.equal(r.body, '', inm);
    assert.equal(r.etag, etag, inm);
  }
  for (const inm of ['"other"', `"${etag}"`, `"x", "y"`, etag.slice(1, -1)]) {
    const r = await get('/v1/bundles/foo/foo-1', true, { 'if-none-match': inm });
    assert.equal(r.status, 200, inm);
    assert.equal(r.body, first.body, inm);
  }
  // Authorization comes first: a matching tag does not reveal another workload's bundle.
  const other = `"${compiler.bundle('foo', 'other-1')!.hash}"`;
  assert.equal(
    (await get('/v1/bundles/foo/other-1', true, { 'if-none-match': other })).status,
    403,
  );
  assert.equal((await get('/v1/bundles/foo/foo-1', false, { 'if-none-match': '*' })).status, 401);
});

// The refusal bodies are the wire answer this path has always sent (status-map.ts BUNDLE_TEXTS).
test("GET /v1/bundles: another service account's bundle, or a missing pod, is refused with 403", async () => {
  for (const path of ['/v1/bundles/foo/other-1', '/v1/bundles/foo/nope']) {
    const r = await get(path, true);
    assert.deepEqual([r.status, r.body], [403, 'permission-denied\n'], path);
  }
});

test('GET /v1/bundles: without a client certificate, 401', async () => {
  const r = await get('/v1/bundles/foo/foo-1', false);
  assert.deepEqual([r.status, r.body], [401, 'unauthenticated\n']);
});

/**
 * A Watch as `foo` (default) or as another identity (cert and key PEM). The server's certificate
 * is a workload's (a SPIFFE ID, no host name): no name is checked, and the target is a name,
 * since Node 26 refuses an IP address as the TLS server name grpc-js sends.
 */
function watch(
  pod: string,
  as: { cert: string; key: string } = { cert: clientCert, key: clientKey },
  port = grpcPort,
): ClientReadableStream<Record<string, string>> {
  const creds = credentials.createSsl(
    Buffer.from(root),
    Buffer.from(as.key),
    Buffer.from(as.cert),
    { checkServerIdentity: () => undefined },
  );
  return policyBundleClient(`localhost:${port}`, creds).Watch({ namespace: 'foo', pod });
}

/** How a Watch that should be refused ends: its status code and details. */
function refusal(
  stream: ClientReadableStream<Record<string, string>>,
): Promise<{ code: number | undefined; details: string | undefined }> {
  return new Promise((resolve) => {
    stream.on('data', () => resolve({ code: -1, details: 'a bundle was sent' }));
    stream.on('error', (e: Error & { code?: number; details?: string }) =>
      resolve({ code: e.code, details: e.details }),
    );
  });
}

test('Watch streams the current bundle, then a new version when a policy changes', async () => {
  const stream = watch('foo-1');
  const updates: Record<string, string>[] = [];
  await new Promise<void>((resolve, reject) => {
    stream.on('error', (e: Error & { code?: number }) => (e.code === 1 ? resolve() : reject(e)));
    stream.on('status', (s: unknown) => process.stderr.write(`status ${JSON.stringify(s)}\n`));
    stream.on('data', (u: Record<string, string>) => {
      updates.push(u);
      if (updates.length === 1)
        compiler.upsertPolicy(
          resources(
            ap('foo', 'allow-foo', '{selector: {matchLabels: {app: foo}}, rules: [{}]}'),
          )[0]!,
        );
      if (updates.length === 2) {
        stream.cancel();
      }
    });
  });
  assert.equal(updates.length, 2);
  assert.notEqual(updates[0]!['hash'], updates[1]!['hash']);
  assert.ok(updates[1]!['bundleJson']!.includes('foo/allow-foo'));
});

const WATCH_PATH = '/castellan.v1.PolicyBundleService/Watch';
/** WatchBundleRequest{namespace: "foo", pod: "foo-1"}, as protobuf, for raw HTTP/2 clients. */
const watchRequest = Buffer.from([
  0x0a,
  3,
  ...Buffer.from('foo'),
  0x12,
  5,
  ...Buffer.from('foo-1'),
]);
/**
 * foo/coalesce, version `i`: a bundle of ≈ 14 KB, so that a few of them pass the 64 KiB our
 * transport lets a streaming call's writes wait with (src/server/h2/grpc-server.ts).
 */
const padding = Array.from({ length: 400 }, (_, k) => `"/pad/${k}"`).join(', ');
const bigPolicy = (i: number) =>
  resources(
    ap(
      'foo',
      'coalesce',
      `{selector: {matchLabels: {app: foo}}, rules: [{to: [{operation: {paths: ["/p${i}", ${padding}]}}]}]}`,
    ),
  )[0]!;

test('Watch (our transport) to a client that does not read: the updates made meanwhile are coalesced, and it gets the newest when it reads', async () => {
  // On our transport only: grpc-js's server call takes every write (its HTTP/2 stream queues
  // them whatever the client's window), so there the backlog stays in memory, as before.
  // A raw client with stream windows of 0: nothing the server writes can go out until it opens
  // them, so what the server holds meanwhile is exactly what its writes kept.
  const conn = await rawH2(oursPort, { cert: clientCert, key: clientKey, ca: root }, [
    [SETTINGS_INITIAL_WINDOW_SIZE, 0],
  ]);
  conn.socket.write(h2Request(1, watchRequest, WATCH_PATH));
  // The first bundle is made once the call is authorized.
  await waitFor('the Watch call in', () => conn.frames.some((f) => f.type === FRAME.HEADERS));
  const changes = 100;
  for (let i = 0; i < changes; i++) {
    compiler.upsertPolicy(bigPolicy(i));
    await new Promise((r) => setImmediate(r));
  }
  assert.equal(dataOf(conn, 1).length, 0, 'nothing went out through the closed window');
  // The windows open: what was held goes out, then the newest bundle, then nothing more.
  conn.socket.write(Buffer.concat([windowUpdate(0, 1 << 30), windowUpdate(1, 1 << 30)]));
  const newest = `/p${changes - 1}"`;
  await waitFor('the newest bundle', () => dataOf(conn, 1).includes(newest));
  const updates = messagesOf(dataOf(conn, 1));
  compiler.removePolicy('AuthorizationPolicy', 'foo', 'coalesce');
  conn.socket.destroy();
  // The first bundle (small: no such policy yet), five changes (the writes said yes until 64
  // KiB waited: the fifth bundle of ≈ 14 KB passed it and its write said no), then the newest:
  // seven, for a hundred changes.
  assert.equal(updates.length, 7, `${updates.length} updates for ${changes} changes`);
  assert.ok(updates.at(-1)!.includes(newest));
  assert.ok(!updates[5]!.includes(newest));
});

test('Watch (our transport) whose client resets it while updates wait: it stops following the policies, and the port serves on', async () => {
  const conn = await rawH2(oursPort, { cert: clientCert, key: clientKey, ca: root }, [
    [SETTINGS_INITIAL_WINDOW_SIZE, 0],
  ]);
  conn.socket.write(h2Request(1, watchRequest, WATCH_PATH));
  await waitFor('the Watch following', () => oursFollowing === 1);
  for (let i = 0; i < 10; i++) {
    compiler.upsertPolicy(bigPolicy(i));
    await new Promise((r) => setImmediate(r));
  }
  conn.socket.write(rstStream(1));
  await waitFor('the Watch stopped following', () => oursFollowing === 0);
  // Changes after the reset reach no call, and nothing fails.
  compiler.upsertPolicy(bigPolicy(10));
  compiler.removePolicy('AuthorizationPolicy', 'foo', 'coalesce');
  conn.socket.destroy();
  const again = watch('foo-1', undefined, oursPort);
  const [first] = (await once(again, 'data')) as [Record<string, string>];
  again.on('error', () => {}); // CANCELLED, by us
  again.cancel();
  assert.equal(first['pod'], 'foo-1');
});

test("Watch of another workload's bundle fails with PERMISSION_DENIED", async () => {
  assert.deepEqual(await refusal(watch('other-1')), {
    code: status.PERMISSION_DENIED,
    details: 'permission-denied',
  });
});

test('Watch with a certificate of another trust domain fails with UNAUTHENTICATED', async () => {
  // This port requires a client certificate that chains to the root (TLS refuses one without);
  // workload-bar's does, but names trust-domain-bar, which the authenticator refuses.
  assert.deepEqual(await refusal(watch('foo-1', { cert: serverCert, key: serverKey })), {
    code: status.UNAUTHENTICATED,
    details: 'unauthenticated',
  });
});

test('Watch with bytes that do not decode fails with INVALID_ARGUMENT, not INTERNAL (as CreateCertificate: src/api/istioca.ts)', async () => {
  const creds = credentials.createSsl(
    Buffer.from(root),
    Buffer.from(clientKey),
    Buffer.from(clientCert),
    { checkServerIdentity: () => undefined },
  );
  const client = new Client(`localhost:${grpcPort}`, creds);
  try {
    // Field 3 (unknown) as a varint of 11 bytes, all with the continuation bit: no end.
    const stream = client.makeServerStreamRequest(
      '/castellan.v1.PolicyBundleService/Watch',
      (b: Buffer) => b,
      (b: Buffer) => b,
      Buffer.from([0x18, ...Array<number>(11).fill(0xff)]),
    ) as unknown as ClientReadableStream<Record<string, string>>;
    const ended = await refusal(stream);
    assert.equal(ended.code, status.INVALID_ARGUMENT, ended.details);
  } finally {
    client.close();
  }
});
