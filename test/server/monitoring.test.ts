import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { Counter, Registry } from 'prom-client';
import { MonitoringServer } from '../../src/server/monitoring.js';

let ready = false;
const registry = new Registry();
const extra = new Registry();
new Counter({ name: 'castellan_test_total', help: 'a test counter', registers: [extra] }).inc(3);
const server = new MonitoringServer({
  readiness: () => (ready ? { ready: true } : { ready: false, reason: 'no CA loaded yet' }),
  registries: [registry],
});
let base: string;

before(async () => {
  server.route('GET', /^\/v1\/bundles\/([^/]+)\/([^/]+)$/, (_req, res, m) => {
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ namespace: m[1], pod: m[2] }));
  });
  server.route('GET', '/boom', () => {
    throw new Error('secret internals');
  });
  server.addRegistry(extra);
  const a = await server.listen({ host: '127.0.0.1', port: 0 });
  base = `http://127.0.0.1:${a.port}`;
});
after(() => server.close());

test('/ready follows readiness, /healthz is always 200', async () => {
  const r = await fetch(`${base}/ready`);
  assert.equal(r.status, 503);
  assert.match(await r.text(), /no CA loaded yet/);
  ready = true;
  assert.equal((await fetch(`${base}/ready`)).status, 200);
  assert.equal((await fetch(`${base}/healthz`)).status, 200);
});

test('registered routes get path parameters; errors answer 500 without details', async () => {
  const r = await fetch(`${base}/v1/bundles/default/web-1`);
  assert.deepEqual(await r.json(), { namespace: 'default', pod: 'web-1' });
  const boom = await fetch(`${base}/boom`);
  assert.equal(boom.status, 500);
  assert.doesNotMatch(await boom.text(), /secret/);
  assert.equal((await fetch(`${base}/ready`, { method: 'POST' })).status, 405);
  assert.equal((await fetch(`${base}/nothing`)).status, 404);
});

test('/metrics concatenates the registries in Prometheus text', async () => {
  const r = await fetch(`${base}/metrics`);
  assert.match(r.headers.get('content-type') ?? '', /text\/plain/);
  assert.match(await r.text(), /^castellan_test_total 3$/m);
});
