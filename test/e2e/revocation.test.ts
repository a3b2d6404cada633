// End to end, local mode: a CA made with `castellan ca root` / `ca intermediate`, its CRL made
// and extended with `castellan ca crl`, the real `castellan serve --cacerts-dir` following it.
// A workload certificate the CRL revokes can no longer renew with it (the client-certificate
// authenticator checks the CRL of the CA being served), `<data-dir>/ca-crl.pem` carries the
// plugged-in bytes and goes when the CRL goes, and PILOT_ENABLE_CA_CRL=false turns all of it
// off as in istiod. Needs a build (npx tsc -p tsconfig.json).
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { status as grpcStatus } from '@grpc/grpc-js';
import { DevTokenIssuer } from '../../src/authn/dev-token-issuer.js';
import { caClient, createCertificate, opensslCsr, opensslUris } from '../server/support/client.js';
import { runCli, startServe, type ServeProcess } from '../server/support/serve-process.js';
import { spawnSync } from 'node:child_process';
import { crlOf, makeRoot } from '../support/ca-hierarchy.js';
import { waitFor } from '../support/wait-for.js';

const HOUR = 3_600_000;
const work = mkdtempSync(join(tmpdir(), 'castellan-revocation-'));
const running: ServeProcess[] = [];
after(async () => {
  for (const s of running) await s.stop();
  rmSync(work, { recursive: true, force: true });
});

async function castellan(...args: string[]): Promise<string> {
  const r = await runCli(args);
  assert.equal(r.code, 0, `castellan ${args.join(' ')}: ${r.stderr}`);
  return r.stdout;
}

/** A root folder and a cacerts folder made by the CLI, with empty CRLs for both CAs. */
async function makeCa(name: string): Promise<{ rootDir: string; caDir: string }> {
  const rootDir = join(work, `${name}-root`);
  const caDir = join(work, `${name}-cacerts`);
  await castellan('ca', 'root', '--out', rootDir, '--key-type', 'ec-p256');
  await castellan(
    'ca',
    'intermediate',
    '--root-dir',
    rootDir,
    '--out',
    caDir,
    '--name',
    name,
    '--key-type',
    'ec-p256',
  );
  await castellan('ca', 'crl', '--ca-dir', caDir, '--root-dir', rootDir);
  return { rootDir, caDir };
}

async function serve(
  caDir: string,
  env: NodeJS.ProcessEnv = {},
): Promise<{ s: ServeProcess; dataDir: string; token: string }> {
  const dataDir = mkdtempSync(join(work, 'data-'));
  const s = await startServe(
    ['--data-dir', dataDir, '--cacerts-dir', caDir, '--cacerts-poll-interval', '100ms'],
    undefined,
    { env: { ...process.env, ...env } },
  );
  running.push(s);
  const token = await (
    await DevTokenIssuer.open(dataDir)
  ).mintToken({ namespace: 'shop', serviceAccount: 'cart', ttlMs: HOUR });
  return { s, dataDir, token };
}

interface Workload {
  readonly keyPem: string;
  readonly chain: string[];
  /** The leaf in a file, for `castellan ca crl --revoke`. */
  readonly leafFile: string;
}

/** A certificate for shop/cart, asked for with the token. */
async function enrol(
  s: ServeProcess,
  rootPem: string,
  token: string,
  name: string,
): Promise<Workload> {
  const { keyPem, csrPem } = opensslCsr('ec');
  const client = caClient(`127.0.0.1:${s.grpcPort}`, rootPem);
  try {
    const chain = await createCertificate(client, { csr: csrPem }, token);
    const leafFile = join(work, `${name}.pem`);
    writeFileSync(leafFile, chain[0]!);
    return { keyPem, chain, leafFile };
  } finally {
    client.close();
  }
}

/** A renewal authenticated by the workload's certificate alone (no token). */
async function renew(s: ServeProcess, rootPem: string, w: Workload): Promise<string[]> {
  const client = caClient(`127.0.0.1:${s.grpcPort}`, rootPem, {
    keyPem: w.keyPem,
    chainPem: w.chain.slice(0, -1).join(''),
  });
  try {
    return await createCertificate(client, { csr: opensslCsr('ec').csrPem });
  } finally {
    client.close();
  }
}

async function refusedRenewal(s: ServeProcess, rootPem: string, w: Workload): Promise<boolean> {
  try {
    await renew(s, rootPem, w);
    return false;
  } catch (e) {
    assert.equal((e as { code?: number }).code, grpcStatus.UNAUTHENTICATED, String(e));
    return true;
  }
}

test('local serve with a broken --cacerts-dir exits non-zero at once, naming the file and the reason', async () => {
  const { caDir } = await makeCa('broken');
  // A CRL of a CA that is not in the chain: the set does not verify.
  writeFileSync(join(caDir, 'ca-crl.pem'), await crlOf(await makeRoot('Stranger')));
  const dataDir = mkdtempSync(join(work, 'data-'));
  await assert.rejects(
    startServe(['--data-dir', dataDir, '--cacerts-dir', caDir]),
    (e: Error) =>
      /serve exited \(1\) before starting/.test(e.message) &&
      e.message.includes(`castellan: ${caDir}/ca-crl.pem: CRL [0] is issued by`),
  );
  assert.ok(!existsSync(join(dataDir, 'root-cert.pem')), 'nothing published');
});

test('a revoked workload certificate cannot renew; others can; ca-crl.pem in the data dir follows the folder', async () => {
  const { rootDir, caDir } = await makeCa('cluster1');
  const { s, dataDir, token } = await serve(caDir);
  const rootPem = readFileSync(join(caDir, 'root-cert.pem'), 'utf8');
  const published = join(dataDir, 'ca-crl.pem');
  assert.equal(readFileSync(published, 'utf8'), readFileSync(join(caDir, 'ca-crl.pem'), 'utf8'));

  const revoked = await enrol(s, rootPem, token, 'revoked');
  const kept = await enrol(s, rootPem, token, 'kept');
  // Both renew while nothing is revoked: the authenticator accepts a certificate it issued.
  assert.deepEqual(opensslUris((await renew(s, rootPem, revoked))[0]!), [
    'spiffe://cluster.local/ns/shop/sa/cart',
  ]);

  // The operator revokes one, with the command the docs give; serve follows the folder.
  await castellan('ca', 'crl', '--ca-dir', caDir, '--revoke', revoked.leafFile);
  const crlPem = readFileSync(join(caDir, 'ca-crl.pem'), 'utf8');
  await waitFor(
    'the new CRL published in the data dir',
    () => existsSync(published) && readFileSync(published, 'utf8') === crlPem,
  );
  assert.ok(await refusedRenewal(s, rootPem, revoked), 'the revoked certificate cannot renew');
  assert.equal((await renew(s, rootPem, kept)).length, 3, 'the other one still renews');
  // The token still works for the same workload: revocation is of the certificate, not of it.
  assert.ok((await enrol(s, rootPem, token, 'again')).chain.length === 3);
  // openssl agrees with the published CRL.
  const chainFile = join(work, 'chain.pem');
  writeFileSync(chainFile, revoked.chain.slice(1, -1).join(''));
  const check = (leaf: string): string => {
    const r = spawnSync(
      'openssl',
      [
        'verify',
        '-crl_check_all',
        '-CAfile',
        join(rootDir, 'root-cert.pem'),
        '-untrusted',
        chainFile,
        '-CRLfile',
        published,
        leaf,
      ],
      { encoding: 'utf8' },
    );
    return `exit ${r.status}: ${r.stdout}${r.stderr}`;
  };
  assert.match(check(revoked.leafFile), /^exit [1-9][\s\S]*certificate revoked/);
  assert.match(check(kept.leafFile), /^exit 0: .*: OK/);

  // The CRL goes away: so does the published file, and with it the revocation.
  rmSync(join(caDir, 'ca-crl.pem'));
  await waitFor('ca-crl.pem removed from the data dir', () => !existsSync(published));
  assert.equal((await renew(s, rootPem, revoked)).length, 3);
});

test('PILOT_ENABLE_CA_CRL=false: ca-crl.pem is neither read nor published, as in istiod', async () => {
  const { caDir } = await makeCa('nocrl');
  const { s: first, token: firstToken } = await serve(caDir);
  const rootPem = readFileSync(join(caDir, 'root-cert.pem'), 'utf8');
  const w = await enrol(first, rootPem, firstToken, 'nocrl-leaf');
  await first.stop();
  await castellan('ca', 'crl', '--ca-dir', caDir, '--revoke', w.leafFile);

  const { s, dataDir } = await serve(caDir, { PILOT_ENABLE_CA_CRL: 'false' });
  assert.equal((await renew(s, rootPem, w)).length, 3, 'not checked: the CRL is not read');
  assert.ok(!existsSync(join(dataDir, 'ca-crl.pem')), 'not published');
  // No CRL loaded: its gauges have no sample.
  const metrics = await (await fetch(`http://127.0.0.1:${s.monitoringPort}/metrics`)).text();
  assert.doesNotMatch(metrics, /^castellan_ca_crl_revoked_certificates \d/m);
});
