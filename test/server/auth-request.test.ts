// The one AuthRequest builder and its two adapters: grpc-js calls (faked: only the three
// members the adapter reads) and node TLS sockets (a real TLS handshake with Istio's sample
// workload certificate, leaf + intermediate, as a client sends it).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { Socket, type AddressInfo } from 'node:net';
import { join } from 'node:path';
import { connect, createServer, type TLSSocket } from 'node:tls';
import { Metadata } from '@grpc/grpc-js';
import {
  authRequest,
  grpcAuthRequest,
  metadataRecord,
  tlsAuthRequest,
  type GrpcServerCall,
} from '../../src/server/auth-request.js';
import { istioSampleCerts } from '../support/paths.js';

const read = (f: string): string => readFileSync(join(istioSampleCerts, f), 'utf8');
const der = (pem: string): Uint8Array => new Uint8Array(new X509Certificate(pem).raw);
const LEAF = Uint8Array.of(1, 1);
const INTERMEDIATE = Uint8Array.of(2, 2);

test('authRequest: the peer chain, then our intermediates; nothing without a peer certificate', () => {
  const parts = { metadata: { a: ['b'] }, intermediates: [INTERMEDIATE], peerAddress: 'p:1' };
  assert.deepEqual(authRequest({ ...parts, peerChain: [LEAF] }), {
    metadata: { a: ['b'] },
    peerCertificates: [LEAF, INTERMEDIATE],
    peerAddress: 'p:1',
  });
  assert.deepEqual(authRequest({ ...parts, peerChain: [] }).peerCertificates, []);
});

test('metadataRecord: every text value of each name, in order; binary values dropped', () => {
  const md = new Metadata();
  md.add('Authorization', 'Bearer one');
  md.add('x-extra', 'a');
  md.add('x-extra', 'b');
  md.add('trace-bin', Buffer.from([0, 1]));
  assert.deepEqual(metadataRecord(md), { authorization: ['Bearer one'], 'x-extra': ['a', 'b'] });
});

function fakeCall(raw: Buffer | undefined): GrpcServerCall {
  const metadata = new Metadata();
  metadata.add('authorization', 'Bearer t');
  return {
    metadata,
    getPeer: () => '10.0.0.7:5555',
    getAuthContext: () =>
      raw ? { transportSecurityType: 'ssl', sslPeerCertificate: { raw } as never } : {},
  };
}

test('grpcAuthRequest: peer leaf, intermediates and address; metadata only when forwarded', () => {
  const call = fakeCall(Buffer.from(LEAF));
  assert.deepEqual(grpcAuthRequest(call, [INTERMEDIATE], { forwardMetadata: true }), {
    metadata: { authorization: ['Bearer t'] },
    peerCertificates: [LEAF, INTERMEDIATE],
    peerAddress: '10.0.0.7:5555',
  });
  assert.deepEqual(grpcAuthRequest(call, [INTERMEDIATE], { forwardMetadata: false }).metadata, {});
  const anonymous = grpcAuthRequest(fakeCall(undefined), [INTERMEDIATE], { forwardMetadata: true });
  assert.deepEqual(anonymous.peerCertificates, []);
});

/** One TLS connection to a server that requests (never requires) a client certificate. */
async function serverSideSocket(
  client: { cert: string; key: string } | undefined,
): Promise<{ socket: TLSSocket; close: () => Promise<void> }> {
  const server = createServer({
    cert: read('workload-bar-cert.pem'),
    key: read('workload-bar-key.pem'),
    ca: read('root-cert.pem'),
    requestCert: true,
    rejectUnauthorized: false,
  });
  const accepted = new Promise<TLSSocket>((resolve) => server.once('secureConnection', resolve));
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const { port } = server.address() as AddressInfo;
  const conn = connect({
    host: '127.0.0.1',
    port,
    ca: read('root-cert.pem'),
    checkServerIdentity: () => undefined,
    ...client,
  });
  const socket = await accepted;
  return {
    socket,
    close: async () => {
      conn.destroy();
      socket.destroy();
      await new Promise<void>((r) => server.close(() => r()));
    },
  };
}

test('tlsAuthRequest: the chain the client sent, leaf first, each once, then ours', async () => {
  const { socket, close } = await serverSideSocket({
    cert: read('workload-foo-cert.pem'), // leaf + Istio CA intermediate
    key: read('workload-foo-key.pem'),
  });
  try {
    const request = tlsAuthRequest(socket, [INTERMEDIATE]);
    const sent = read('workload-foo-cert.pem').match(/-----BEGIN[^]+?-----END CERTIFICATE-----/g)!;
    assert.equal(sent.length, 2);
    // node completes the chain from the server's CA store (the root), and links the self-signed
    // root to itself as its own issuer: the root comes once, and the walk ends there.
    assert.deepEqual(request.peerCertificates, [
      ...sent.map(der),
      der(read('root-cert.pem')),
      INTERMEDIATE,
    ]);
    assert.equal(request.peerAddress, `${socket.remoteAddress}:${socket.remotePort}`);
    assert.deepEqual(request.metadata, {});
  } finally {
    await close();
  }
});

test('tlsAuthRequest: no client certificate, or not a TLS socket, is no certificate', async () => {
  const { socket, close } = await serverSideSocket(undefined);
  try {
    assert.deepEqual(tlsAuthRequest(socket, [INTERMEDIATE]).peerCertificates, []);
  } finally {
    await close();
  }
  const plain = new Socket() as unknown as TLSSocket;
  assert.deepEqual(tlsAuthRequest(plain, [INTERMEDIATE]).peerCertificates, []);
});
