// Interop: a CreateCertificate client we did not write — Debian's python3-grpcio, with messages
// compiled at test time from protos/istioca.proto by grpc_tools.protoc — against `castellan serve`.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { DevTokenIssuer } from '../../src/authn/dev-token-issuer.js';
import { projectRoot, protosDir } from '../support/paths.js';
import { opensslUris, opensslVerify, tmp } from '../server/support/client.js';
import { startServe, type ServeProcess } from '../server/support/serve-process.js';

// Debian's interpreter, never whatever `python3` is first on PATH (scripts/setup-test-deps.sh).
const PYTHON = '/usr/bin/python3';
const SCRIPT = join(projectRoot, 'test', 'interop', 'create_certificate.py');

let serve: ServeProcess;
let dataDir: string;

before(async () => {
  dataDir = join(tmp(), 'data');
  serve = await startServe(['--data-dir', dataDir]);
});
after(async () => {
  serve.child.kill('SIGTERM');
  await serve.exited;
});

test('python3-grpcio gets a certificate for the caller, whatever SAN its CSR asked for', async () => {
  const work = tmp();
  const gen = join(work, 'gen');
  mkdirSync(gen, { recursive: true });
  execFileSync(PYTHON, [
    '-m',
    'grpc_tools.protoc',
    `-I${protosDir}`,
    `--python_out=${gen}`,
    `--grpc_python_out=${gen}`,
    join(protosDir, 'istioca.proto'),
  ]);
  const token = await (
    await DevTokenIssuer.open(dataDir)
  ).mintToken({ namespace: 'payments', serviceAccount: 'ledger', ttlMs: 3_600_000 });
  writeFileSync(join(work, 'token'), token);
  const root = join(dataDir, 'root-cert.pem');
  const out = execFileSync(
    PYTHON,
    [SCRIPT, gen, `localhost:${serve.grpcPort}`, root, join(work, 'token'), work],
    { encoding: 'utf8' },
  );
  assert.match(out, /^\d+ certificates/m);
  const pem = readFileSync(join(work, 'cert-chain.pem'), 'utf8');
  const certs = pem.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----\n/g) ?? [];
  assert.ok(certs.length >= 2, 'leaf and root');
  const rootPem = readFileSync(root, 'utf8');
  assert.match(opensslVerify(certs, rootPem), /OK/);
  assert.deepEqual(opensslUris(certs[0]!), ['spiffe://cluster.local/ns/payments/sa/ledger']);
  assert.doesNotMatch(
    execFileSync('openssl', ['x509', '-text', '-noout'], { input: certs[0], encoding: 'utf8' }),
    /bogus/,
  );
});
