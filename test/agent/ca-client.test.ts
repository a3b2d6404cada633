import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer, type AddressInfo, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { errorKindOfStatus, GrpcCaClient } from '../../src/agent/ca-client.js';
import { systemClock } from '../../src/clock.js';
import { createKeyAndCsr } from '../../src/pki/csr-builder.js';
import { ManualClock } from '../support/manual-clock.js';
import { CaDouble } from './support/ca-double.js';

let ca: CaDouble;
let dir: string;
let csrPem: string;
before(async () => {
  ca = await CaDouble.create();
  await ca.start();
  dir = await mkdtemp(join(tmpdir(), 'castellan-ca-client-'));
  await writeFile(join(dir, 'root.pem'), ca.rootPem);
  await writeFile(join(dir, 'token'), '  tok-123 \n');
  await writeFile(join(dir, 'empty'), '\n');
  csrPem = (await createKeyAndCsr('ec-p256')).csrPem;
});
after(async () => {
  await ca.stop();
  await rm(dir, { recursive: true, force: true });
});

function client(overrides: Partial<ConstructorParameters<typeof GrpcCaClient>[0]> = {}) {
  return new GrpcCaClient({
    address: ca.address,
    rootCertFile: join(dir, 'root.pem'),
    tokenFile: join(dir, 'token'),
    timeoutMs: 3000,
    clock: systemClock,
    ...overrides,
  });
}

function rejectsWith(kind: string, message: RegExp) {
  return (e: unknown) => {
    assert.equal((e as { kind?: string }).kind, kind);
    assert.match((e as Error).message, message);
    return true;
  };
}

test('sends the CSR with the trimmed token as a bearer header over TLS', async () => {
  ca.calls.length = 0;
  const chain = await client().createCertificate({ csrPem, validitySeconds: 600 });
  assert.equal(chain.length, 2);
  assert.equal(chain[1], ca.rootPem);
  assert.equal(ca.calls[0]?.authorization, 'Bearer tok-123');
});

test('gRPC status codes become error kinds the retry policy understands', async () => {
  const cases: Array<[grpc.status, string]> = [
    [grpc.status.UNAVAILABLE, 'unavailable'],
    [grpc.status.INTERNAL, 'internal'],
    [grpc.status.UNAUTHENTICATED, 'unauthenticated'],
    [grpc.status.INVALID_ARGUMENT, 'invalid-argument'],
    [grpc.status.PERMISSION_DENIED, 'permission-denied'],
  ];
  try {
    for (const [code, kind] of cases) {
      ca.behaviour = { kind: 'fail', code, message: `said ${grpc.status[code]}` };
      await assert.rejects(
        client().createCertificate({ csrPem, validitySeconds: 0 }),
        rejectsWith(kind, new RegExp(`${grpc.status[code]}: said ${grpc.status[code]}`)),
      );
    }
  } finally {
    ca.behaviour = { kind: 'issue' };
  }
  assert.equal(errorKindOfStatus(grpc.status.DEADLINE_EXCEEDED), 'unavailable');
  assert.equal(errorKindOfStatus(grpc.status.UNKNOWN), 'internal');
});

test('a CA that is not listening is UNAVAILABLE, and so is one whose certificate we do not trust', async () => {
  await assert.rejects(
    client({ address: '127.0.0.1:1' }).createCertificate({ csrPem, validitySeconds: 0 }),
    rejectsWith('unavailable', /UNAVAILABLE/),
  );
  const other = await CaDouble.create();
  await writeFile(join(dir, 'other-root.pem'), other.rootPem);
  // Said in words (a new user read only OpenSSL's "unable to get local issuer certificate"), and
  // without grpc-js's empty "Resolution note: " at the end.
  const otherRoot = join(dir, 'other-root.pem');
  await assert.rejects(
    client({ rootCertFile: otherRoot }).createCertificate({ csrPem, validitySeconds: 0 }),
    rejectsWith(
      'unavailable',
      new RegExp(
        `UNAVAILABLE: .*certificate.* \\(the CA's serving certificate does not lead to a root in ${otherRoot}: is it the root of the CA at ${ca.address}\\?\\)$`,
      ),
    ),
  );
  // No such words for a CA that is not there.
  await assert.rejects(
    client({ address: '127.0.0.1:1' }).createCertificate({ csrPem, validitySeconds: 0 }),
    (e: unknown) => !/serving certificate does not lead/.test((e as Error).message),
  );
});

test('--server-name: the certificate is checked against it, not the address dialled, and :authority names it', async () => {
  ca.calls.length = 0;
  // The CA's serving certificate names localhost and 127.0.0.1; the address is 127.0.0.1.
  await client().createCertificate({ csrPem, validitySeconds: 0 });
  assert.equal(ca.calls[0]?.authority, ca.address);
  const chain = await client({ serverName: 'localhost' }).createCertificate({
    csrPem,
    validitySeconds: 0,
  });
  assert.equal(chain.length, 2);
  assert.equal(ca.calls[1]?.authority, 'localhost');
  await assert.rejects(
    client({ serverName: 'ca.example' }).createCertificate({ csrPem, validitySeconds: 0 }),
    rejectsWith('unavailable', /UNAVAILABLE/),
  );
  assert.equal(ca.calls.length, 2, 'nothing sent to a CA whose certificate does not name it');
});

test('an empty root file is refused, never read as "trust Node\'s built-in roots"', async () => {
  // Node reads an empty `ca` as none given and trusts its own store: a public certificate for
  // the CA's name would then receive the token.
  ca.calls.length = 0;
  await writeFile(join(dir, 'empty-root.pem'), '');
  await writeFile(
    join(dir, 'key-only.pem'),
    '-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n',
  );
  for (const f of ['empty-root.pem', 'key-only.pem']) {
    await assert.rejects(
      client({ rootCertFile: join(dir, f) }).createCertificate({ csrPem, validitySeconds: 0 }),
      rejectsWith('malformed', /cannot use the TLS material: no root certificate in it/),
      f,
    );
  }
  assert.equal(ca.calls.length, 0, 'nothing sent');
});

test('a missing or empty token file, or a missing root file, is a typed error naming the file', async () => {
  await assert.rejects(
    client({ tokenFile: join(dir, 'nope') }).createCertificate({ csrPem, validitySeconds: 0 }),
    rejectsWith('invalid-argument', /nope: cannot read token file: ENOENT/),
  );
  await assert.rejects(
    client({ tokenFile: join(dir, 'empty') }).createCertificate({ csrPem, validitySeconds: 0 }),
    rejectsWith('unauthenticated', /empty: token file is empty/),
  );
  await assert.rejects(
    client({ rootCertFile: join(dir, 'gone.pem') }).createCertificate({
      csrPem,
      validitySeconds: 0,
    }),
    rejectsWith('invalid-argument', /gone\.pem: cannot read root certificate: ENOENT/),
  );
});

test('a deadline bounds every call', async () => {
  // A TCP listener that never speaks TLS: the call must end by its deadline.
  const sockets: Socket[] = [];
  const silent = createServer((s) => sockets.push(s));
  await new Promise<void>((r) => silent.listen(0, '127.0.0.1', () => r()));
  const port = (silent.address() as AddressInfo).port;
  const t0 = Date.now();
  try {
    await assert.rejects(
      client({ address: `127.0.0.1:${port}`, timeoutMs: 500 }).createCertificate({
        csrPem,
        validitySeconds: 0,
      }),
      rejectsWith('unavailable', /DEADLINE_EXCEEDED|UNAVAILABLE/),
    );
    assert.ok(Date.now() - t0 < 3000);
  } finally {
    for (const s of sockets) s.destroy();
    silent.close();
  }
});

test("the deadline is counted from the client's clock", async () => {
  // A clock a minute behind: the 3 s deadline has passed before the call starts, so even a
  // healthy CA is never asked.
  ca.calls.length = 0;
  await assert.rejects(
    client({ clock: new ManualClock(Date.now() - 60_000) }).createCertificate({
      csrPem,
      validitySeconds: 0,
    }),
    rejectsWith('unavailable', /DEADLINE_EXCEEDED/),
  );
  assert.equal(ca.calls.length, 0);
});
