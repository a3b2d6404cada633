// The agent's TLS to the CA (src/agent/tls-channel-credentials.ts): the certificate checked
// against the host dialled or --server-name, and a TLS server name (SNI) only for a DNS name, as
// Go's crypto/tls (pilot-agent's) does. grpc-js's own credentials send an IP address as the
// server name, which Node 26 refuses (DEP0123): the agent could not reach a CA by address there.
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { connect as netConnect, type AddressInfo } from 'node:net';
import { createSecureContext, createServer, type Server, type TLSSocket } from 'node:tls';
import { CallCredentials, Metadata } from '@grpc/grpc-js';
import { TlsChannelCredentials } from '../../src/agent/tls-channel-credentials.js';
import { isCastellanError } from '../../src/errors.js';
import { makeServingTls, type ServingTls } from '../support/fake-apiserver/tls.js';
import { waitFor } from '../support/wait-for.js';

let pki: ServingTls;
let other: ServingTls;
let server: Server;
/** The server name each handshake carried (false: none), in order. */
const seen: Array<string | false> = [];

before(async () => {
  [pki, other] = await Promise.all([makeServingTls(), makeServingTls()]);
  server = createServer({ cert: pki.certPem, key: pki.keyPem, ALPNProtocols: ['h2'] }, (s) => {
    seen.push((s as TLSSocket & { servername: string | false }).servername);
    s.end();
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
});
after(() => new Promise<void>((r) => server.close(() => r())));

/** One handshake with the credentials' connector over a fresh TCP socket to the server. */
async function handshake(name: string, caPem = pki.caPem): Promise<TLSSocket> {
  const { port } = server.address() as AddressInfo;
  const socket = netConnect(port, '127.0.0.1');
  await new Promise<void>((resolve, reject) =>
    socket.once('connect', resolve).once('error', reject),
  );
  const credentials = new TlsChannelCredentials(createSecureContext({ ca: caPem }), name);
  const connector = credentials._createSecureConnector(undefined, undefined);
  try {
    const { socket: tls, secure } = await connector.connect(socket);
    assert.equal(secure, true);
    return tls as TLSSocket;
  } finally {
    socket.unref();
  }
}

test('an IP address: no server name sent, the certificate checked against its IP SANs', async () => {
  seen.length = 0;
  const tls = await handshake('127.0.0.1');
  assert.equal(tls.authorized, true);
  assert.equal(tls.alpnProtocol, 'h2');
  await waitForServer();
  tls.destroy();
  assert.deepEqual(seen, [false]);
});

test('a DNS name: sent as the server name and checked against the DNS SANs', async () => {
  seen.length = 0;
  const tls = await handshake('kubernetes.default.svc');
  assert.equal(tls.authorized, true);
  await waitForServer();
  tls.destroy();
  assert.deepEqual(seen, ['kubernetes.default.svc']);
});

test('a certificate that does not name the host or address is refused', async () => {
  await assert.rejects(handshake('127.0.0.2'), { code: 'ERR_TLS_CERT_ALTNAME_INVALID' });
  await assert.rejects(handshake('ca.example'), { code: 'ERR_TLS_CERT_ALTNAME_INVALID' });
});

test('a certificate from a root we do not trust is refused', async () => {
  await assert.rejects(handshake('127.0.0.1', other.caPem), {
    code: 'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
  });
});

test('from PEM: roots without a certificate are refused (Node would trust its own store instead)', async () => {
  for (const rootsPem of ['', '\n', pki.keyPem]) {
    assert.throws(
      () => TlsChannelCredentials.fromPem({ rootsPem }, '127.0.0.1'),
      (e: unknown) => isCastellanError(e, 'malformed'),
      JSON.stringify(rootsPem.slice(0, 20)),
    );
  }
  const credentials = TlsChannelCredentials.fromPem({ rootsPem: pki.caPem }, '127.0.0.1');
  const { port } = server.address() as AddressInfo;
  const socket = netConnect(port, '127.0.0.1');
  await new Promise<void>((resolve, reject) =>
    socket.once('connect', resolve).once('error', reject),
  );
  const { socket: tls } = await credentials
    ._createSecureConnector(undefined, undefined)
    .connect(socket);
  assert.equal((tls as TLSSocket).authorized, true);
  tls.destroy();
});

test("credentials equal only themselves; a channel's per-call credentials are kept", () => {
  const ctx = createSecureContext({ ca: pki.caPem });
  const a = new TlsChannelCredentials(ctx, 'localhost');
  assert.equal(a._isSecure(), true);
  assert.equal(a._equals(a), true);
  assert.equal(a._equals(new TlsChannelCredentials(ctx, 'localhost')), false);
  const perCall = CallCredentials.createFromMetadataGenerator((_o, cb) => cb(null, new Metadata()));
  assert.equal(
    a._createSecureConnector(undefined, undefined, perCall).getCallCredentials(),
    perCall,
  );
  assert.ok(a._createSecureConnector(undefined, undefined).getCallCredentials());
});

/** The server records a handshake in its connection callback, after the client's ends. */
const waitForServer = (): Promise<void> =>
  waitFor('the server saw the handshake', () => seen.length > 0, 5000).then(() => undefined);
