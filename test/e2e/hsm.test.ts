// End to end, with the CA key in SoftHSM2 (a real PKCS#11 module): `castellan ca intermediate
// --key-uri` makes the key inside a token, `castellan ca check` reads the folder with it,
// `castellan serve --ca-key-uri` signs with it, and Debian's python3-grpcio (a client we did not
// write) gets chains that `openssl verify -x509_strict` accepts. Then the faults: the token
// taken away while serving (UNAVAILABLE, then served again once it is back), a wrong PIN and a
// key of another certificate at start (refused, naming the URI but never the PIN), and hot
// reloads of the watched folder (a new certificate for the same key swapped in; one for another
// key refused).
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdirSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { DevTokenIssuer } from '../../src/authn/dev-token-issuer.js';
import { certificatePem, parseCertificates } from '../../src/ca/build-key-cert-bundle.js';
import { issueCertificate } from '../../src/pki/issue.js';
import { parsePrivateKeyPem } from '../../src/pki/keys.js';
import { projectRoot } from '../support/paths.js';
import { makeSoftHsm, privateKeyAccess, USER_PIN, type SoftHsm } from '../support/softhsm.js';
import { waitFor } from '../support/wait-for.js';
import { opensslVerify, opensslUris, tmp } from '../server/support/client.js';
import { runCli, startServe, type ServeProcess } from '../server/support/serve-process.js';
import { compileIstioCaStubs, PYTHON } from '../support/python.js';

const SCRIPT = join(projectRoot, 'test', 'interop', 'create_certificate.py');
const TOKEN = 'mesh-ca';
const HOUR = 3_600_000;

let hsm: SoftHsm;
let work: string;
let gen: string;
const cacerts = new Map<string, string>();
const uris = new Map<string, string>();

/** Every file under `dir` whose name is ca-key.pem (or any private key PEM). */
function privateKeyFiles(dir: string): string[] {
  const found: string[] = [];
  for (const name of readdirSync(dir)) {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) found.push(...privateKeyFiles(p));
    else if (name === 'ca-key.pem' || /PRIVATE KEY-----/.test(readFileSync(p, 'latin1')))
      found.push(p);
  }
  return found;
}

/** CreateCertificate from python3-grpcio: the chain, or the RPC's failure as it printed it. */
async function pythonRequest(
  serve: ServeProcess,
  dataDir: string,
): Promise<{ ok: true; chain: string[] } | { ok: false; error: string }> {
  const dir = join(tmp(), 'py');
  mkdirSync(dir);
  const token = await (
    await DevTokenIssuer.open(dataDir)
  ).mintToken({ namespace: 'payments', serviceAccount: 'ledger', ttlMs: HOUR });
  writeFileSync(join(dir, 'token'), token);
  const r = spawnSync(
    PYTHON,
    [
      SCRIPT,
      gen,
      `localhost:${serve.grpcPort}`,
      join(dataDir, 'root-cert.pem'),
      join(dir, 'token'),
      dir,
    ],
    { encoding: 'utf8' },
  );
  if (r.status !== 0) return { ok: false, error: `${r.stdout}${r.stderr}` };
  const pem = readFileSync(join(dir, 'cert-chain.pem'), 'utf8');
  return {
    ok: true,
    chain: pem.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----\n/g) ?? [],
  };
}

async function serveWithKey(keyType: string, dataDir: string): Promise<ServeProcess> {
  return startServe([
    '--data-dir',
    dataDir,
    '--cacerts-dir',
    cacerts.get(keyType) as string,
    '--ca-key-uri',
    uris.get(keyType) as string,
  ]);
}

before(async () => {
  // Children (the CLI, serve) inherit SOFTHSM2_CONF from this process.
  hsm = makeSoftHsm({ thisProcess: true });
  hsm.addToken(TOKEN);
  work = tmp();
  gen = join(work, 'gen');
  compileIstioCaStubs(gen);
  const r = await runCli(['ca', 'root', '--out', join(work, 'root'), '--key-type', 'ec-p256']);
  assert.equal(r.code, 0, r.stderr);
});
after(() => hsm.remove());

describe('castellan ca intermediate --key-uri, ca check', () => {
  for (const [keyType, object] of [
    ['ec-p256', 'intermediate-p256'],
    ['rsa-2048', 'intermediate-rsa'],
  ] as const) {
    test(`${keyType}: the key is made in the token; the folder gets no key file`, async () => {
      const out = join(work, `cacerts-${object}`);
      const uri = hsm.uri(TOKEN, object);
      const r = await runCli([
        'ca',
        'intermediate',
        '--root-dir',
        join(work, 'root'),
        '--out',
        out,
        '--key-type',
        keyType,
        '--key-uri',
        uri,
      ]);
      assert.equal(r.code, 0, r.stderr);
      assert.match(r.stdout, /key: made inside the token, sensitive and not extractable/);
      assert.deepEqual(readdirSync(out).sort(), ['ca-cert.pem', 'cert-chain.pem', 'root-cert.pem']);
      const access = privateKeyAccess(hsm, TOKEN).get(object) ?? '';
      assert.match(access, /(^|, )sensitive(,|$)/);
      assert.match(access, /never extractable/);
      cacerts.set(keyType, out);
      uris.set(keyType, uri);

      const check = await runCli(['ca', 'check', '--cacerts-dir', out, '--key-uri', uri]);
      assert.equal(check.code, 0, check.stderr);
      assert.ok(
        check.stdout.includes(
          `key: ${uri} (${keyType}; sensitive, not extractable, never extractable): a probe it signed verifies with the certificate's key`,
        ),
        check.stdout,
      );
      // A CRL signed by the token key (and the root's, which every reader needs beside it).
      const crl = await runCli([
        'ca',
        'crl',
        '--ca-dir',
        out,
        '--key-uri',
        uri,
        '--root-dir',
        join(work, 'root'),
      ]);
      assert.equal(crl.code, 0, crl.stderr);
      const verified = spawnSync(
        'openssl',
        [
          'crl',
          '-in',
          join(out, 'ca-crl.pem'),
          '-CAfile',
          join(out, 'ca-cert.pem'),
          '-noout',
          '-verify',
        ],
        { encoding: 'utf8' },
      );
      assert.match(verified.stderr + verified.stdout, /verify OK/);
      rmSync(join(out, 'ca-crl.pem'));
      // Without the URI, the folder is a set with no key: named as such.
      const keyless = await runCli(['ca', 'check', '--cacerts-dir', out]);
      assert.notEqual(keyless.code, 0);
      assert.match(keyless.stderr, /missing ca-key\.pem/);
    });
  }
});

describe('castellan serve --ca-key-uri', () => {
  for (const keyType of ['ec-p256', 'rsa-2048']) {
    test(`${keyType}: python3-grpcio gets a chain that openssl verify -x509_strict accepts`, async () => {
      const dataDir = join(tmp(), 'data');
      const serve = await serveWithKey(keyType, dataDir);
      try {
        const got = await pythonRequest(serve, dataDir);
        assert.ok(got.ok, got.ok ? '' : got.error);
        const chain = got.chain;
        assert.equal(chain.length, 3, 'leaf, intermediate, root');
        assert.match(
          opensslVerify(chain, readFileSync(join(dataDir, 'root-cert.pem'), 'utf8')),
          /OK/,
        );
        assert.deepEqual(opensslUris(chain[0]!), ['spiffe://cluster.local/ns/payments/sa/ledger']);
        assert.equal(chain[1], readFileSync(join(cacerts.get(keyType)!, 'ca-cert.pem'), 'utf8'));
        // The leaf's signature is the token key's kind.
        const text = execFileSync('openssl', ['x509', '-noout', '-text'], {
          input: chain[0],
          encoding: 'utf8',
        });
        assert.match(
          text,
          keyType === 'rsa-2048' ? /sha256WithRSAEncryption/ : /ecdsa-with-SHA256/,
        );
      } finally {
        await serve.stop();
      }
      // The offline root's key is the only key file made (ca root), and stays in its folder.
      assert.deepEqual(privateKeyFiles(work), [join(work, 'root', 'root-key.pem')]);
      assert.deepEqual(privateKeyFiles(hsm.dir), []);
      assert.deepEqual(
        privateKeyFiles(dataDir).filter((f) => f.endsWith('ca-key.pem')),
        [],
      );
    });
  }

  test('the token taken away while serving: UNAVAILABLE, then served again once it is back', async () => {
    const dataDir = join(tmp(), 'data');
    const serve = await serveWithKey('ec-p256', dataDir);
    try {
      assert.ok((await pythonRequest(serve, dataDir)).ok);
      hsm.takeTokensAway();
      try {
        const failed = await pythonRequest(serve, dataDir);
        assert.equal(failed.ok, false);
        assert.match((failed as { error: string }).error, /rpc failed: StatusCode\.UNAVAILABLE/);
        const again = await pythonRequest(serve, dataDir);
        assert.match((again as { error: string }).error, /StatusCode\.UNAVAILABLE/);
      } finally {
        hsm.putTokensBack();
      }
      const back = await waitFor(
        'a certificate once the token is back',
        async () => {
          const r = await pythonRequest(serve, dataDir);
          return r.ok ? r : undefined;
        },
        20_000,
      );
      assert.match(
        opensslVerify(back.chain, readFileSync(join(dataDir, 'root-cert.pem'), 'utf8')),
        /OK/,
      );
      assert.equal(serve.child.exitCode, null, 'serve is still running');
      assert.match(serve.stderr(), /PKCS#11: the token failed; requests fail with UNAVAILABLE/);
      await waitFor('the reconnection logged', () =>
        /PKCS#11: key reachable again/.test(serve.stderr()),
      );
    } finally {
      await serve.stop();
    }
  });

  test('--ca-key-uri without --cacerts-dir (nor --kube): refused before anything starts', async () => {
    const r = await runCli([
      'serve',
      '--data-dir',
      join(tmp(), 'data'),
      '--ca-key-uri',
      uris.get('ec-p256')!,
    ]);
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /--ca-key-uri: goes with --cacerts-dir, or --kube/);
  });

  test('a wrong PIN: serve stops at start, naming the URI and never the PIN', async () => {
    const wrongPin = join(work, 'wrong-pin');
    const pin = '112358';
    writeFileSync(wrongPin, `${pin}\n`);
    const uri = (uris.get('ec-p256') as string).replace(hsm.pinFile, wrongPin);
    const e = await startServe([
      '--data-dir',
      join(tmp(), 'data'),
      '--cacerts-dir',
      cacerts.get('ec-p256') as string,
      '--ca-key-uri',
      uri,
    ]).then(
      () => assert.fail('serve started with a wrong PIN'),
      (err: unknown) => (err as Error).message,
    );
    assert.ok(e.includes(`${uri}: token "${TOKEN}" refused the PIN (CKR_PIN_INCORRECT)`), e);
    assert.ok(!e.includes(pin) && !e.includes(USER_PIN), e);
  });

  test('a key that does not belong to ca-cert.pem: serve stops at start with the reason', async () => {
    const e = await startServe([
      '--data-dir',
      join(tmp(), 'data'),
      '--cacerts-dir',
      cacerts.get('ec-p256') as string,
      '--ca-key-uri',
      uris.get('rsa-2048') as string,
    ]).then(
      () => assert.fail('serve started with the wrong key'),
      (err: unknown) => (err as Error).message,
    );
    assert.match(
      e,
      /object=intermediate-rsa;.*: the key is rsa-2048 but the certificate in .*ca-cert\.pem holds a ec-p256 key/,
    );
  });

  test('hot reload: a new certificate for the same key is swapped in (after the token is back, if it was away); one for another key is refused', async () => {
    // A copy of the P-256 folder that serve watches.
    const dir = join(tmp(), 'cacerts');
    mkdirSync(dir);
    for (const f of ['ca-cert.pem', 'cert-chain.pem', 'root-cert.pem']) {
      writeFileSync(join(dir, f), readFileSync(join(cacerts.get('ec-p256')!, f)));
    }
    const dataDir = join(tmp(), 'data');
    const serve = await startServe([
      '--data-dir',
      dataDir,
      '--cacerts-dir',
      dir,
      '--ca-key-uri',
      uris.get('ec-p256') as string,
    ]);
    try {
      // The same token key, certified anew by the root under another name.
      const old = parseCertificates(
        readFileSync(join(dir, 'ca-cert.pem'), 'utf8'),
        'ca-cert.pem',
      )[0]!;
      const rootPem = readFileSync(join(work, 'root', 'root-cert.pem'), 'utf8');
      const root = parseCertificates(rootPem, 'root')[0]!;
      const rootKey = parsePrivateKeyPem(
        readFileSync(join(work, 'root', 'root-key.pem'), 'utf8'),
      ).key;
      // The intermediate re-issued by the root for the same key (in the token): a renewal.
      const renewedIntermediate = async (cn: string): Promise<string> =>
        certificatePem(
          await issueCertificate({
            profile: { kind: 'intermediate', subject: [['CN', cn]] },
            publicKey: new Uint8Array(old.publicKey.rawData),
            issuer: { cert: root, key: rootKey },
            notBefore: new Date(Date.now() - HOUR),
            notAfter: new Date(Date.now() + 100 * HOUR),
          }),
        );
      const renewed = await renewedIntermediate('Renewed Intermediate');
      writeFileSync(join(dir, 'cert-chain.pem'), renewed + rootPem);
      writeFileSync(join(dir, 'ca-cert.pem'), renewed);
      const swapped = await waitFor('the renewed intermediate served', async () => {
        const r = await pythonRequest(serve, dataDir);
        return r.ok && r.chain[1] === renewed ? r : undefined;
      });
      assert.match(opensslVerify(swapped.chain, rootPem), /OK/);

      // Renewed again while the token is away: refused for now (unavailable), and swapped in
      // once the token is back, without the files changing again.
      const again = await renewedIntermediate('Renewed Again');
      hsm.takeTokensAway();
      try {
        writeFileSync(join(dir, 'cert-chain.pem'), again + rootPem);
        writeFileSync(join(dir, 'ca-cert.pem'), again);
        await waitFor('the update refused while the token is away', () =>
          /plugged-in CA update refused/.test(serve.stderr()),
        );
      } finally {
        hsm.putTokensBack();
      }
      await waitFor('the update swapped in once the token is back', async () => {
        const r = await pythonRequest(serve, dataDir);
        return r.ok && r.chain[1] === again;
      });

      // The RSA intermediate's certificate with the P-256 key's URI: refused, still serving.
      const rsaDir = cacerts.get('rsa-2048')!;
      writeFileSync(join(dir, 'cert-chain.pem'), readFileSync(join(rsaDir, 'cert-chain.pem')));
      writeFileSync(join(dir, 'ca-cert.pem'), readFileSync(join(rsaDir, 'ca-cert.pem')));
      const metrics = `http://127.0.0.1:${serve.monitoringPort}/metrics`;
      const refusals = (serve.stderr().match(/plugged-in CA update refused/g) ?? []).length;
      await waitFor(
        'the refused update logged',
        () =>
          (serve.stderr().match(/plugged-in CA update refused/g) ?? []).length > refusals &&
          /the key is ec-p256 but the certificate in .*ca-cert.pem holds a rsa-2048 key/.test(
            serve.stderr(),
          ),
      );
      assert.match(
        await (await fetch(metrics)).text(),
        /castellan_ca_load_errors_total\{[^}]*\} [1-9]/,
      );
      const still = await pythonRequest(serve, dataDir);
      assert.ok(still.ok && still.chain[1] === again);
    } finally {
      await serve.stop();
    }
  });
});
