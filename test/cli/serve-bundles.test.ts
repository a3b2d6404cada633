// `castellan serve --policy-dir --bundle-addr`: policy bundles served by the real process over
// real TLS. The CA is Istio's alt sample set plugged in (root → intermediate → leaves), so the
// workload certificate chains through an intermediate; it is issued by this CA via
// CreateCertificate with a dev token, then used as the only credential for its bundle.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { copyFileSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { request } from 'node:https';
import { join } from 'node:path';
import { credentials, status, type ClientReadableStream, type ServiceError } from '@grpc/grpc-js';
import { DevTokenIssuer } from '../../src/authn/dev-token-issuer.js';
import { istioSampleCerts } from '../support/paths.js';
import {
  caClient,
  createCertificate,
  opensslCsr,
  opensslVerify,
  policyBundleClient,
  tmp,
  type BundleUpdate,
} from '../server/support/client.js';
import { runCli, startServe, type ServeProcess } from '../server/support/serve-process.js';

const HOUR = 3_600_000;
const rootPem = readFileSync(join(istioSampleCerts, 'root-cert-alt.pem'), 'utf8');

const PODS = `
apiVersion: v1
kind: Pod
metadata: {namespace: shop, name: web-1, labels: {app: web}}
spec:
  serviceAccountName: web
  containers: [{name: app, ports: [{name: http, containerPort: 8080}]}]
---
apiVersion: v1
kind: Pod
metadata: {namespace: shop, name: db-1, labels: {app: db}}
spec:
  serviceAccountName: db
  containers: [{name: db, ports: [{name: tcp-pg, containerPort: 5432}]}]
`;
const policy = (methods: string) => `
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {namespace: shop, name: web-allow}
spec:
  selector: {matchLabels: {app: web}}
  rules: [{to: [{operation: {methods: [${methods}]}}]}]
`;

let serve: ServeProcess;
let dataDir: string;
let policyDir: string;
let bundlePort: number;
/** The web workload's certificate chain (leaf, intermediate) and key, issued by serve. */
let web: { keyPem: string; chainPem: string };

before(async () => {
  const cacerts = tmp();
  for (const f of ['ca-cert', 'ca-key', 'cert-chain', 'root-cert']) {
    copyFileSync(join(istioSampleCerts, `${f}-alt.pem`), join(cacerts, `${f}.pem`));
  }
  dataDir = join(tmp(), 'data');
  policyDir = join(tmp(), 'policies');
  mkdirSync(join(policyDir, 'shop'), { recursive: true });
  writeFileSync(join(policyDir, 'pods.yaml'), PODS);
  writeFileSync(join(policyDir, 'shop', 'authz.yaml'), policy('GET'));
  serve = await startServe([
    '--data-dir',
    dataDir,
    '--cacerts-dir',
    cacerts,
    '--policy-dir',
    policyDir,
    '--bundle-addr',
    '127.0.0.1:0',
  ]);
  bundlePort = Number(/bundles https:\/\/127\.0\.0\.1:(\d+)/.exec(serve.startLine)?.[1]);
  assert.ok(bundlePort > 0, serve.startLine);

  const token = await (
    await DevTokenIssuer.open(dataDir)
  ).mintToken({ namespace: 'shop', serviceAccount: 'web', ttlMs: HOUR });
  const client = caClient(`localhost:${serve.grpcPort}`, rootPem);
  const { keyPem, csrPem } = opensslCsr('ec');
  const chain = await createCertificate(client, { csr: csrPem }, token);
  client.close();
  assert.match(opensslVerify(chain, rootPem), /OK/);
  // The leaf and the intermediate, as an Istio agent presents them (not the root).
  web = { keyPem, chainPem: chain.slice(0, -1).join('') };
});

after(async () => {
  serve.child.kill('SIGTERM');
  assert.equal(await serve.exited, 0, serve.stderr());
});

function watch(
  pod: string,
  cert: { keyPem: string; chainPem: string } | undefined,
): ClientReadableStream<BundleUpdate> {
  const creds = credentials.createSsl(
    Buffer.from(rootPem),
    cert ? Buffer.from(cert.keyPem) : null,
    cert ? Buffer.from(cert.chainPem) : null,
  );
  const client = policyBundleClient(`localhost:${serve.grpcPort}`, creds);
  const stream = client.Watch({ namespace: 'shop', pod });
  stream.on('close', () => client.close());
  return stream;
}

/** The status code a stream ends with before sending anything (-1 if it sent data). */
function refusal(stream: ClientReadableStream<BundleUpdate>): Promise<number> {
  return new Promise((resolve) => {
    stream.on('data', () => {
      stream.cancel();
      resolve(-1);
    });
    stream.on('error', (e: Error & { code: number }) => resolve(e.code));
  });
}

function get(
  path: string,
  cert: { keyPem: string; chainPem: string } | undefined,
): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    request(
      {
        host: 'localhost',
        port: bundlePort,
        path,
        ca: rootPem,
        ...(cert ? { cert: cert.chainPem, key: cert.keyPem } : {}),
      },
      (res) => {
        let body = '';
        res
          .setEncoding('utf8')
          .on('data', (c: string) => (body += c))
          .on('end', () => resolve({ status: res.statusCode ?? 0, body }));
      },
    )
      .on('error', reject)
      .end();
  });
}

describe('policy bundles from castellan serve', () => {
  test('Watch: own bundle first, then a new version after the policy file changes', async () => {
    const stream = watch('web-1', web);
    const updates: BundleUpdate[] = [];
    await new Promise<void>((resolve, reject) => {
      stream.on('error', (e: ServiceError) =>
        e.code === status.CANCELLED ? resolve() : reject(e),
      );
      stream.on('data', (u: BundleUpdate) => {
        updates.push(u);
        if (updates.length === 1) {
          writeFileSync(join(policyDir, 'shop', 'authz.yaml'), policy('GET, POST'));
        } else {
          stream.cancel();
        }
      });
    });
    assert.equal(updates.length, 2);
    const [first, second] = updates as [BundleUpdate, BundleUpdate];
    assert.deepEqual([first.namespace, first.pod], ['shop', 'web-1']);
    const b1 = JSON.parse(first.bundleJson) as { hash: string; workload: Record<string, unknown> };
    assert.equal(b1.hash, first.hash);
    assert.equal(b1.workload['spiffeId'], 'spiffe://cluster.local/ns/shop/sa/web');
    assert.ok(first.bundleJson.includes('shop/web-allow'));
    assert.ok(!first.bundleJson.includes('"POST"'));
    assert.notEqual(second.hash, first.hash);
    assert.ok(second.bundleJson.includes('"POST"'), 'the new rule is in the new version');

    // The served bundle is byte-identical to what `castellan policy bundle` computes alone.
    const workloadFile = join(tmp(), 'web.yaml');
    writeFileSync(
      workloadFile,
      `workload: {namespace: shop, name: web-1, labels: {app: web}, serviceAccount: web,
        ports: [{number: 8080, protocol: HTTP}]}\n`,
    );
    const cli = await runCli([
      'policy',
      'bundle',
      '--policies',
      policyDir,
      '--workload',
      workloadFile,
    ]);
    assert.equal(cli.code, 0, cli.stderr);
    assert.equal(cli.stdout.trim(), second.bundleJson.trim());
  });

  test("Watch: another workload's bundle is PERMISSION_DENIED, no certificate UNAUTHENTICATED", async () => {
    assert.equal(await refusal(watch('db-1', web)), status.PERMISSION_DENIED);
    assert.equal(await refusal(watch('missing-1', web)), status.PERMISSION_DENIED);
    assert.equal(await refusal(watch('web-1', undefined)), status.UNAUTHENTICATED);
    // Istio's sample workload certificate (another CA, trust domain "trust-domain-foo"): refused.
    const foreign = {
      keyPem: readFileSync(join(istioSampleCerts, 'workload-foo-key.pem'), 'utf8'),
      chainPem: readFileSync(join(istioSampleCerts, 'workload-foo-cert.pem'), 'utf8'),
    };
    assert.equal(await refusal(watch('web-1', foreign)), status.UNAUTHENTICATED);
  });

  test('GET /v1/bundles over HTTPS: 200 with the certificate, 403 for others, 401 without', async () => {
    const own = await get('/v1/bundles/shop/web-1', web);
    assert.equal(own.status, 200, own.body);
    const bundle = JSON.parse(own.body) as { workload: { name: string }; hash: string };
    assert.equal(bundle.workload.name, 'web-1');
    assert.equal((await get('/v1/bundles/shop/db-1', web)).status, 403);
    assert.equal((await get('/v1/bundles/shop/web-1', undefined)).status, 401);
    assert.equal((await get('/v1/other', web)).status, 404);
  });
});

describe('serve --policy-dir', () => {
  test('a missing --policy-dir stops serve before it listens', async () => {
    const dir = tmp();
    const res = await runCli(
      [
        'serve',
        '--data-dir',
        join(dir, 'd'),
        '--policy-dir',
        join(dir, 'nope'),
        '--grpc-addr',
        '127.0.0.1:0',
        '--monitoring-addr',
        '127.0.0.1:0',
      ],
      dir,
    );
    assert.notEqual(res.code, 0);
    assert.match(res.stderr, /nope.*no such folder|no such folder.*nope/);
  });
});
