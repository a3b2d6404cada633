import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import * as grpc from '@grpc/grpc-js';
import { WorkloadAgent, type AgentConfig } from '../../src/agent/agent.js';
import { GrpcCaClient, type CertificateAuthorityClient } from '../../src/agent/ca-client.js';
import { systemClock } from '../../src/clock.js';
import { runExecHook } from '../../src/agent/exec-hook.js';
import { AgentMetrics, startMonitoringServer } from '../../src/agent/monitoring.js';
import { DEFAULT_RENEWAL_POLICY } from '../../src/agent/renewal.js';
import { createLogger } from '../../src/log.js';
import { ManualClock } from '../support/manual-clock.js';
import { opensslVerify } from '../support/openssl.js';
import { waitFor } from '../support/wait-for.js';
import { CaDouble, serialOf } from './support/ca-double.js';

let ca: CaDouble;
let dir: string;
before(async () => {
  ca = await CaDouble.create();
  await ca.start();
  dir = await mkdtemp(join(tmpdir(), 'castellan-agent-'));
  await writeFile(join(dir, 'root.pem'), ca.rootPem);
});
after(async () => {
  await ca.stop();
  await rm(dir, { recursive: true, force: true });
});

/**
 * The agent and the CA double on one ManualClock that starts at the real time (certificates are
 * real, openssl checks them) and moves only when a test steps it: waits are not slept. The
 * gRPC deadline and the exec hook's kill timer bound real I/O, so they keep the real clock.
 */
function harness(name: string, overrides: Partial<AgentConfig> = {}) {
  const clock = new ManualClock(Date.now());
  ca.clock = clock;
  const lines: Array<{ level: number; msg: string; kind?: string }> = [];
  const logger = createLogger({
    level: 'debug',
    destination: new Writable({
      write(chunk: Buffer, _enc, cb) {
        lines.push(JSON.parse(chunk.toString()) as { level: number; msg: string });
        cb();
      },
    }),
  });
  const calls = { n: 0, at: [] as number[] };
  const real = new GrpcCaClient({
    address: ca.address,
    rootCertFile: join(dir, 'root.pem'),
    tokenFile: join(dir, `${name}.token`),
    timeoutMs: 3000,
    clock: systemClock,
  });
  const counting: CertificateAuthorityClient = {
    createCertificate: (r) => {
      calls.n++;
      calls.at.push(clock.now());
      return real.createCertificate(r);
    },
  };
  const stop = new AbortController();
  const metrics = new AgentMetrics(clock);
  const outDir = join(dir, name);
  const agent = new WorkloadAgent(
    {
      outDir,
      rootCertFile: join(dir, 'root.pem'),
      keyType: 'ec-p256',
      validitySeconds: 0,
      authenticatesWithToken: true,
      policy: DEFAULT_RENEWAL_POLICY,
      ...overrides,
    },
    {
      ca: counting,
      clock,
      random: Math.random,
      logger,
      metrics,
      runExec: (command, certDir) =>
        runExecHook(command, certDir, { clock: systemClock, env: process.env }),
    },
  );
  return {
    agent,
    stop,
    lines,
    calls,
    outDir,
    metrics,
    clock,
    tokenFile: join(dir, `${name}.token`),
  };
}

type Harness = ReturnType<typeof harness>;

/** Resolves once the agent waits on its clock (its only timer), or `done()` holds. */
async function asleep(h: Harness, done: () => boolean = () => false): Promise<void> {
  await waitFor('the agent to wait on its clock', () => done() || h.clock.pending > 0);
}

/** Moves the clock to the agent's wake-up. */
function wake(h: Harness): Promise<void> {
  return h.clock.advance(h.clock.nextDue()! - h.clock.now());
}

/** openssl verify of the files in `outDir` at a given instant (the tests' clocks run ahead). */
async function verifyWritten(outDir: string, atMs = Date.now()): Promise<void> {
  const chain = await readFile(join(outDir, 'cert-chain.pem'), 'utf8');
  const r = opensslVerify({
    root: await readFile(join(outDir, 'root-cert.pem'), 'utf8'),
    untrusted: chain,
    leaf: chain,
    strict: false,
    at: new Date(atMs),
  });
  assert.ok(r.ok, r.output);
}

test('renews at half-life with a fresh key each time; chains verify with openssl; token re-read', async () => {
  const keys = new Set<string>();
  const serials = new Set<string>();
  const h = harness('rotate', { exec: 'echo ran >> "$CASTELLAN_CERT_DIR/../rotate-exec.log"' });
  await writeFile(h.tokenFile, 'token-1\n');
  ca.calls.length = 0;
  ca.leafTtlMs = 3_600_000;
  const run = h.agent.run(h.stop.signal);
  // Checks run while the agent waits: after each write (and exec hook), before the next request.
  for (;;) {
    await asleep(h);
    const cur = h.agent.current;
    if (cur && !serials.has(cur.serialNumber)) {
      serials.add(cur.serialNumber);
      keys.add(await readFile(join(h.outDir, 'key.pem'), 'utf8'));
      await verifyWritten(h.outDir, h.clock.now());
      assert.equal(
        serialOf(await readFile(join(h.outDir, 'cert-chain.pem'), 'utf8')),
        cur.serialNumber,
      );
      await writeFile(h.tokenFile, `token-${serials.size + 1}\n`);
    }
    if (serials.size === 3) break;
    await wake(h);
  }
  h.stop.abort();
  await run;
  assert.equal(h.clock.pending, 0, 'stopping cancelled the wait');
  assert.equal(keys.size, 3, 'a fresh key for every certificate');
  assert.deepEqual(
    ca.calls.map((c) => c.authorization),
    ['Bearer token-1', 'Bearer token-2', 'Bearer token-3'],
  );
  // Renewals came at about half of each one-hour lifetime (±1% jitter, + signing skew).
  const gaps = h.calls.at.slice(1).map((t, i) => t - h.calls.at[i]!);
  for (const gap of gaps) assert.ok(gap >= 0.48 * 3_600_000 && gap <= 0.52 * 3_600_000, `${gap}`);
  assert.equal((await readFile(join(dir, 'rotate-exec.log'), 'utf8')).trim().split('\n').length, 3);
});

test('CA down: keeps its certificate, retries with growing backoff, recovers when the CA returns', async () => {
  const h = harness('down', {
    policy: { ...DEFAULT_RENEWAL_POLICY, retryMaxMs: 120_000 },
  });
  await writeFile(h.tokenFile, 'tok\n');
  ca.leafTtlMs = 3_600_000;
  const first = await h.agent.renew();
  const keyBefore = await readFile(join(h.outDir, 'key.pem'), 'utf8');
  const port = ca.port;
  await ca.stop();
  const run = h.agent.run(h.stop.signal);
  // Until it has tried a dozen times while down.
  for (;;) {
    await asleep(h);
    if (h.calls.n >= 12) break;
    await wake(h);
  }
  assert.equal(await readFile(join(h.outDir, 'key.pem'), 'utf8'), keyBefore, 'files untouched');
  assert.equal(h.agent.current?.serialNumber, first.serialNumber);
  const failures = h.lines.filter((l) => l.kind === 'unavailable');
  assert.ok(failures.length >= 10);
  assert.match(failures[0]!.msg, /UNAVAILABLE.*keeping the current certificate/);
  // The waits between attempts grew: exponential, not a tight loop, capped at retryMax.
  const gaps = h.calls.at.slice(2).map((t, i) => t - h.calls.at[i + 1]!);
  assert.ok(gaps[0]! < 2_000, `first retry soon: ${gaps.join(',')}`);
  assert.ok(gaps.at(-1)! > 30_000, `backoff grew: ${gaps.join(',')}`);
  assert.ok(Math.max(...gaps) <= 120_000 + 1000, `capped: ${gaps.join(',')}`);
  await ca.start(port);
  for (;;) {
    await asleep(h);
    if (h.agent.current.serialNumber !== first.serialNumber) break;
    await wake(h);
  }
  h.stop.abort();
  await run;
  assert.notEqual(await readFile(join(h.outDir, 'key.pem'), 'utf8'), keyBefore);
  const metrics = await h.metrics.registry.metrics();
  assert.match(
    metrics,
    /castellan_agent_cert_renewal_failures_total\{reason="unavailable"\} (\d+)/,
  );
  const renewals = Number(/castellan_agent_cert_renewals_total (\d+)/.exec(metrics)?.[1]);
  assert.ok(renewals >= 2, `${renewals}`);
});

test('invalid token: one clear error line, long backoff, no tight loop', async () => {
  const h = harness('badtoken');
  await writeFile(h.tokenFile, 'wrong\n');
  ca.acceptedToken = 'right';
  ca.calls.length = 0;
  try {
    const started = h.clock.now();
    const run = h.agent.run(h.stop.signal);
    // An hour on the agent's clock.
    for (;;) {
      await asleep(h);
      if (h.clock.now() - started >= 3_600_000) break;
      await wake(h);
    }
    h.stop.abort();
    await run;
  } finally {
    ca.acceptedToken = undefined;
  }
  // Every ~5 minutes: about 12 calls in an hour, where a tight loop would make thousands.
  assert.ok(ca.calls.length >= 10 && ca.calls.length <= 15, `${ca.calls.length} calls`);
  const errors = h.lines.filter((l) => l.level >= 50);
  assert.equal(errors.length, 1, 'one error line for one cause');
  assert.match(errors[0]!.msg, /UNAUTHENTICATED.*no certificate yet.*will not fix itself/);
  assert.equal(h.agent.isReady(), false);
});

test('INVALID_ARGUMENT is not retried soon either; INTERNAL is', async () => {
  const h = harness('invalid');
  await writeFile(h.tokenFile, 'tok\n');
  ca.behaviour = { kind: 'fail', code: grpc.status.INVALID_ARGUMENT, message: 'ttl above max' };
  try {
    await assert.rejects(h.agent.runOnce(5, h.stop.signal), /INVALID_ARGUMENT: ttl above max/);
    assert.equal(h.calls.n, 1);
    ca.behaviour = { kind: 'fail', code: grpc.status.INTERNAL, message: 'boom' };
    const started = h.clock.now();
    let failed: unknown;
    const once = h.agent.runOnce(3, h.stop.signal).catch((e: unknown) => void (failed = e));
    // Retried after a backoff on the clock, until the third attempt fails.
    while (failed === undefined) {
      await asleep(h, () => failed !== undefined);
      // eslint-disable-next-line @typescript-eslint/no-unnecessary-condition -- set by the runOnce callback while we waited: TypeScript keeps a let narrowed across awaits (microsoft/TypeScript#9998)
      if (failed === undefined) await wake(h);
    }
    await once;
    assert.equal((failed as { kind: string }).kind, 'internal');
    assert.equal(h.calls.n, 4);
    const waited = h.clock.now() - started;
    assert.ok(waited > 0 && waited < 60_000, `retried soon: after ${waited} ms in all`);
  } finally {
    ca.behaviour = { kind: 'issue' };
  }
});

test('root-cert.pem follows the CA when its roots change', async () => {
  const h = harness('roots');
  await writeFile(h.tokenFile, 'tok\n');
  await h.agent.renew();
  const before = await readFile(join(h.outDir, 'root-cert.pem'), 'utf8');
  assert.equal(before, ca.rootPem);
  const oldRoot = ca.root;
  await ca.rotateRoot();
  try {
    await h.agent.renew();
    const afterPem = await readFile(join(h.outDir, 'root-cert.pem'), 'utf8');
    assert.equal(afterPem, ca.rootPem);
    assert.notEqual(afterPem, before);
    await verifyWritten(h.outDir);
    assert.ok(h.lines.some((l) => /trust bundle changed/.test(l.msg)));
  } finally {
    ca.root = oldRoot;
  }
});

test('a restarted agent reuses a valid certificate on disk instead of asking again', async () => {
  const h = harness('reuse');
  await writeFile(h.tokenFile, 'tok\n');
  const first = await h.agent.renew();
  const again = harness('reuse');
  const loaded = await again.agent.loadExisting();
  assert.equal(loaded?.serialNumber, first.serialNumber);
  assert.equal(again.agent.isReady(), true);
  assert.equal(again.calls.n, 0);
});

test('monitoring: /ready is 503 until a certificate is on disk, /metrics has the gauges', async () => {
  const h = harness('monitor');
  await writeFile(h.tokenFile, 'tok\n');
  const server = await startMonitoringServer('127.0.0.1:0', h.metrics, () => h.agent.isReady());
  try {
    const base = `http://127.0.0.1:${server.address.port}`;
    assert.equal((await fetch(`${base}/ready`)).status, 503);
    const issued = await h.agent.renew();
    assert.equal((await fetch(`${base}/ready`)).status, 200);
    const text = await (await fetch(`${base}/metrics`)).text();
    const m = /castellan_agent_cert_expiry_timestamp_seconds (\d+)/.exec(text);
    assert.equal(Number(m?.[1]) * 1000, issued.notAfter);
    const left = Number(/castellan_agent_cert_expiry_seconds ([\d.]+)/.exec(text)?.[1]);
    assert.ok(left > 3500 && left <= 3600, `${left}`);
    assert.match(text, /castellan_agent_ca_requests_total 1/);
    assert.equal((await fetch(`${base}/nope`)).status, 404);
  } finally {
    await server.close();
  }
});
