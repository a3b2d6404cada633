// Admission control end to end (issue 15): a real CaServer over TLS on loopback, real gRPC
// clients on their own connections, JWTs from the dev issuer and client certificates of the
// test CA. The issuer is controllable: its signatures wait until the test lets them go, so calls
// are held in flight deterministically (no sleeps). Every burst is bounded in count, every wait
// in time (waitFor). The status chosen for a shed call, RESOURCE_EXHAUSTED, is the one both of
// Istio's clients retry: pilot-agent's pkg/security/retry.go CARetryOptions lists it, ztunnel's
// src/identity/manager.rs Worker::run retries any error (src/server/admission.ts).
import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { Metadata, status } from '@grpc/grpc-js';
import { type DevTokenIssuer } from '../../src/authn/dev-token-issuer.js';
import type { Impersonation } from '../../src/authn/impersonation.js';
import type { CaSnapshot } from '../../src/ca/key-cert-bundle.js';
import { Admission, type AdmissionOptions } from '../../src/server/admission.js';
import { type CaServer } from '../../src/server/ca-server.js';
import type { IssuedLeaf, LeafIssuer } from '../../src/server/create-certificate.js';
import { ManualClock } from '../support/manual-clock.js';
import { waitFor } from '../support/wait-for.js';
import { caClient, opensslCsr, type CaClient } from '../server/support/client.js';
import { testLeafIssuer, type TestCa } from '../server/support/test-ca.js';
import { mintToken, startReliable } from './support/harness.js';

const TD = 'cluster.local';
const HOUR = 3_600_000;
const WAIT_MS = 30_000;

type Csr = Awaited<ReturnType<typeof testLeafIssuer.parseCsr>>;

/** The test issuer, whose signatures wait while `holding`; records whom it signs for, in order. */
class HeldIssuer implements LeafIssuer<Csr> {
  holding = true;
  readonly signed: string[] = [];
  private readonly waiting: (() => void)[] = [];

  get held(): number {
    return this.waiting.length;
  }

  parseCsr(pem: string): Csr | Promise<Csr> {
    return testLeafIssuer.parseCsr(pem);
  }

  async sign(snapshot: CaSnapshot, csr: Csr, sans: readonly string[], ttlMs: number) {
    this.signed.push(sans[0] ?? '');
    if (this.holding) await new Promise<void>((resolve) => this.waiting.push(resolve));
    return testLeafIssuer.sign(snapshot, csr, sans, ttlMs);
  }

  /** Lets the oldest held signature go. */
  releaseOne(): void {
    this.waiting.shift()?.();
  }

  releaseAll(): void {
    this.holding = false;
    for (const go of this.waiting.splice(0)) go();
  }
}

interface Harness {
  readonly server: CaServer<unknown>;
  readonly admission: Admission;
  readonly issuer: HeldIssuer;
  readonly clock: ManualClock;
  readonly ca: TestCa;
  readonly dev: DevTokenIssuer;
  readonly target: string;
  readonly logLines: string[];
  /** A client on a connection of its own; closed by stop(). */
  client(cert?: { keyPem: string; chainPem: string }): CaClient;
  token(namespace: string, serviceAccount: string): Promise<string>;
  metric(name: string): Promise<number>;
  auditLines(): Record<string, unknown>[];
  stop(): Promise<void>;
}

const harnesses: Harness[] = [];
after(async () => {
  for (const h of harnesses.splice(0)) await h.stop();
});

async function startServer(
  limits: AdmissionOptions,
  impersonation?: Impersonation,
): Promise<Harness> {
  const clock = new ManualClock(Date.now());
  const issuer = new HeldIssuer();
  const admission = new Admission(limits, clock);
  const r = await startReliable({
    clock,
    issuer: issuer,
    admission,
    impersonation,
    clientCertificates: true,
  });
  const clients: CaClient[] = [];
  const h: Harness = {
    server: r.server,
    admission,
    issuer,
    clock,
    ca: r.ca,
    dev: r.dev,
    target: r.target,
    logLines: r.logLines,
    client(cert) {
      const c = caClient(h.target, r.ca.rootPem, cert, { 'grpc.use_local_subchannel_pool': 1 });
      clients.push(c);
      return c;
    },
    token: (namespace, serviceAccount) => mintToken(r, namespace, serviceAccount),
    async metric(name) {
      const text = await r.server.metrics.registry.metrics();
      const line = text.split('\n').find((l: string) => l.startsWith(`${name} `));
      return line === undefined ? NaN : Number(line.slice(name.length + 1));
    },
    auditLines: () => r.auditLines(),
    async stop() {
      issuer.releaseAll();
      for (const c of clients) c.close();
      await r.stop();
    },
  };
  harnesses.push(h);
  return h;
}

interface Outcome {
  readonly ok: boolean;
  readonly code: status;
  readonly details: string;
  readonly trailers: Metadata | undefined;
  readonly chain: readonly string[];
}

const CSR = opensslCsr('ec').csrPem;

/** One CreateCertificate call; resolves with how it ended (never rejects). */
function call(
  client: CaClient,
  options: { token?: string; impersonate?: string; signal?: { cancel?: () => void } } = {},
): Promise<Outcome> {
  const md = new Metadata();
  if (options.token !== undefined) md.set('authorization', `Bearer ${options.token}`);
  const request = {
    csr: CSR,
    validityDuration: 0,
    ...(options.impersonate !== undefined
      ? {
          metadata: {
            fields: {
              ImpersonatedIdentity: { kind: 'stringValue', stringValue: options.impersonate },
            },
          },
        }
      : {}),
  };
  return new Promise((resolve) => {
    const c = client.CreateCertificate(request, md, (err, res) =>
      resolve(
        err
          ? {
              ok: false,
              code: err.code,
              details: err.details,
              trailers: err.metadata,
              chain: [],
            }
          : {
              ok: true,
              code: status.OK,
              details: '',
              trailers: undefined,
              chain: res?.certChain ?? [],
            },
      ),
    );
    if (options.signal) options.signal.cancel = () => c.cancel();
  });
}

/** `total` calls spread over `connections` clients of their own (as many sidecars would). */
function burst(
  clients: readonly CaClient[],
  total: number,
  token: string,
  onShed?: () => void,
): Promise<Outcome>[] {
  return Array.from({ length: total }, (_, i) =>
    call(clients[i % clients.length] as CaClient, { token }).then((o) => {
      if (o.code === status.RESOURCE_EXHAUSTED) onShed?.();
      return o;
    }),
  );
}

const codes = (outcomes: readonly Outcome[]) => {
  const counts: Record<string, number> = {};
  for (const o of outcomes) counts[status[o.code]] = (counts[status[o.code]] ?? 0) + 1;
  return counts;
};

describe('admission control over TLS', () => {
  test('a burst far above the limit: exactly the excess is shed with RESOURCE_EXHAUSTED, at once, before the admitted calls finish (pilot-agent CARetryOptions and ztunnel Worker::run retry it)', async () => {
    const h = await startServer({
      maxInflight: 4,
      maxQueued: 8,
      identityRate: undefined,
      nodeRateFactor: 1,
    });
    const token = await h.token('burst', 'app');
    const clients = Array.from({ length: 8 }, () => h.client());
    let shedSoFar = 0;
    const outcomes = burst(clients, 200, token, () => shedSoFar++);
    // Every shed answer arrives while the 12 admitted calls are still held: shedding waits for
    // nothing the admitted calls do.
    await waitFor('188 shed answers', () => shedSoFar === 188, WAIT_MS);
    assert.equal(h.issuer.held, 4, 'four calls in flight, held in the issuer');
    assert.equal(h.admission.inflight, 4);
    assert.equal(h.admission.queued, 8);
    assert.equal(await h.metric('castellan_csr_inflight'), 4);
    assert.equal(await h.metric('castellan_csr_queued'), 8);
    assert.equal(await h.metric('castellan_csr_inflight_limit'), 4);
    assert.equal(await h.metric('castellan_csr_queue_limit'), 8);
    h.issuer.releaseAll();
    const all = await Promise.all(outcomes);
    assert.deepEqual(codes(all), { OK: 12, RESOURCE_EXHAUSTED: 188 });
    for (const o of all.filter((x) => !x.ok)) {
      assert.match(o.details, /4 requests in progress and 8 waiting: retry in \d+ ms/);
      // gRFC A6's hint, for clients with a retry policy (pilot-agent and ztunnel back off
      // on their own).
      const pushback = o.trailers?.get('grpc-retry-pushback-ms')[0];
      assert.match(String(pushback), /^\d+$/);
    }
    assert.equal(await h.metric('castellan_csr_inflight'), 0);
    assert.equal(await h.metric('castellan_csr_queued'), 0);
    const text = await h.server.metrics.registry.metrics();
    assert.match(text, /castellan_csr_shed_total\{reason="queue_full"\} 188/);
    assert.match(text, /castellan_csr_shed_total\{reason="identity_rate"\} 0/);
    assert.match(text, /citadel_server_success_cert_issuance_count 12/);
    // Shed lines: one per shed call up to the audit log's own burst (100), the rest counted.
    const shedLines = h.auditLines().filter((l) => l['outcome'] === 'shed');
    assert.equal(shedLines.length, 100);
    assert.equal(await h.metric('castellan_audit_lines_suppressed_total'), 88);
    const line = shedLines[0] as Record<string, unknown>;
    assert.equal(line['code'], 'RESOURCE_EXHAUSTED');
    assert.match(String(line['reason']), /^resource-exhausted: 4 requests in progress/);
    assert.equal(line['msg'], 'certificate request shed');
    assert.equal(h.auditLines().filter((l) => l['outcome'] === 'issued').length, 12);
  });

  test('memory stays flat: 6,000 more calls while the limit is held retain no heap', async () => {
    setFlagsFromString('--expose-gc');
    const gc = runInNewContext('gc') as () => void;
    const h = await startServer({
      maxInflight: 4,
      maxQueued: 8,
      identityRate: undefined,
      nodeRateFactor: 1,
    });
    const token = await h.token('memory', 'app');
    const clients = Array.from({ length: 40 }, () => h.client());
    const held = burst(clients.slice(0, 1), 12, token);
    await waitFor('12 calls held', () => h.admission.queued === 8, WAIT_MS);
    // A call's last steps run after its callback: grpc-js and HTTP/2 finish both ends of a stream
    // in setImmediate callbacks (≈ 2.5 per call here), and those hold the call's objects. Measured
    // right after a burst's last answer, ≈ 5,000 of them were still queued, holding ≈ 1,900
    // calls — ≈ 21 MB that came or went with timing (a clean-clone CI run failed on it). The
    // heap is read once that queue has run dry.
    const settled = async (): Promise<number> => {
      for (let turn = 0; process.getActiveResourcesInfo().includes('Immediate'); turn++) {
        assert.ok(turn < 1000, 'setImmediate callbacks still queued after 1,000 turns');
        await new Promise((resolve) => setImmediate(resolve));
      }
      gc();
      gc();
      return process.memoryUsage().heapUsed;
    };
    const shedBurst = async () =>
      assert.deepEqual(codes(await Promise.all(burst(clients, 2000, token))), {
        RESOURCE_EXHAUSTED: 2000,
      });
    // One burst allocates what a process allocates once (connection buffers, compiled code,
    // grpc-js and HTTP/2 state); then the measure.
    await shedBurst();
    const before = await settled();
    for (let i = 0; i < 3; i++) await shedBurst();
    assert.equal(h.admission.queued, 8, 'the queue never grew past its bound');
    const grown = (await settled()) - before;
    // A held call costs kilobytes (its HTTP/2 stream, grpc-js call, request and handler state):
    // 6,000 of them held would retain tens of megabytes. Shed calls retain nothing per call; the
    // bound, 4 MiB (≈ 700 bytes a call), leaves room for GC noise.
    assert.ok(grown < 4 * 1024 * 1024, `heap grew by ${Math.round(grown / 1024)} KiB`);
    h.issuer.releaseAll();
    assert.deepEqual(codes(await Promise.all(held)), { OK: 12 });
  });

  test('one identity flooding does not starve another: the flood is shed by its own bucket, the other is served', async () => {
    const h = await startServer({
      maxInflight: 4,
      maxQueued: 400,
      identityRate: { perSecond: 1, burst: 5 },
      nodeRateFactor: 8,
    });
    h.issuer.releaseAll();
    const flood = await h.token('crashloop', 'flood');
    const quiet = await h.token('steady', 'app');
    const clients = Array.from({ length: 4 }, () => h.client());
    const floodCalls = burst(clients, 150, flood);
    const quietCalls = burst(clients, 5, quiet);
    const [floodOutcomes, quietOutcomes] = await Promise.all([
      Promise.all(floodCalls),
      Promise.all(quietCalls),
    ]);
    assert.deepEqual(codes(quietOutcomes), { OK: 5 }, 'every call of the quiet identity served');
    assert.deepEqual(codes(floodOutcomes), { OK: 5, RESOURCE_EXHAUSTED: 145 });
    const shed = floodOutcomes.find((o) => !o.ok) as Outcome;
    assert.match(
      shed.details,
      /identity spiffe:\/\/cluster.local\/ns\/crashloop\/sa\/flood is over its rate limit \(1\/s, burst 5\): retry in 1000 ms/,
    );
    assert.equal(shed.trailers?.get('grpc-retry-pushback-ms')[0], '1000');
    const text = await h.server.metrics.registry.metrics();
    assert.match(text, /castellan_csr_shed_total\{reason="identity_rate"\} 145/);
    // The bucket refills on the server's clock: a second later, one more call.
    await h.clock.advance(1000);
    assert.equal((await call(clients[0] as CaClient, { token: flood })).code, status.OK);
    assert.equal(
      (await call(clients[0] as CaClient, { token: flood })).code,
      status.RESOURCE_EXHAUSTED,
    );
  });

  test("ambient mode: ztunnel's node account has a budget sized for its node, per node", async () => {
    // A node authorizer that grants every request; the node is named by the caller's pod.
    const impersonation: Impersonation = {
      authorize: (caller, requested) =>
        Promise.resolve({ spiffeId: requested, node: `node-of-${caller.serviceAccount}` }),
    };
    const h = await startServer(
      {
        maxInflight: 4,
        maxQueued: 400,
        identityRate: { perSecond: 1, burst: 3 },
        nodeRateFactor: 10,
      },
      impersonation,
    );
    h.issuer.releaseAll();
    const ztunnel = await h.token('istio-system', 'ztunnel');
    const client = h.client();
    // 30 pods of the node, 40 requests: the node's burst is 3 × 10 = 30, far above one identity's.
    const outcomes = await Promise.all(
      Array.from({ length: 40 }, (_, i) =>
        call(client, { token: ztunnel, impersonate: `spiffe://${TD}/ns/apps/sa/pod-${i % 30}` }),
      ),
    );
    assert.deepEqual(codes(outcomes), { OK: 30, RESOURCE_EXHAUSTED: 10 });
    const shed = outcomes.find((o) => !o.ok) as Outcome;
    assert.match(
      shed.details,
      /node proxy spiffe:\/\/cluster.local\/ns\/istio-system\/sa\/ztunnel on node node-of-ztunnel is over its rate limit \(10\/s, burst 30\)/,
    );
    const text = await h.server.metrics.registry.metrics();
    assert.match(text, /castellan_csr_shed_total\{reason="node_rate"\} 10/);
    // The node proxy's own certificate (no impersonation) is charged to its identity bucket.
    assert.equal((await call(client, { token: ztunnel })).code, status.OK);
  });

  test('a renewal whose client certificate expires soon goes ahead of first-time requests', async () => {
    const h = await startServer({
      maxInflight: 1,
      maxQueued: 10,
      identityRate: undefined,
      nodeRateFactor: 1,
    });
    // Client certificates of the test CA: the test issuer backdates NotBefore by 2 minutes, so
    // a 30 s TTL leaves 30 s of 150 (20%, urgent) and a 1 h TTL 98% (not urgent).
    const renewalCert = async (ns: string, ttlMs: number) => {
      const { keyPem, csrPem } = opensslCsr('ec');
      const leaf: IssuedLeaf = await testLeafIssuer.sign(
        h.ca.snapshot,
        await testLeafIssuer.parseCsr(csrPem),
        [`spiffe://${TD}/ns/${ns}/sa/app`],
        ttlMs,
      );
      return h.client({ keyPem, chainPem: leaf.certChainPem.join('') });
    };
    const urgentClient = await renewalCert('urgent', 30_000);
    const calmClient = await renewalCert('calm', HOUR);
    const first = h.client();
    const blocker = call(first, { token: await h.token('blocker', 'app') });
    await waitFor('one call in flight', () => h.issuer.held === 1, WAIT_MS);
    const [new1, new2] = [await h.token('new-1', 'app'), await h.token('new-2', 'app')];
    const pending = [call(first, { token: new1 }), call(first, { token: new2 })];
    await waitFor('two first-time requests queued', () => h.admission.queued === 2, WAIT_MS);
    pending.push(call(calmClient));
    await waitFor('a calm renewal queued', () => h.admission.queued === 3, WAIT_MS);
    pending.push(call(urgentClient));
    await waitFor('the urgent renewal queued', () => h.admission.queued === 4, WAIT_MS);
    for (let signed = 1; signed <= 5; signed++) {
      await waitFor(`signature ${signed} held`, () => h.issuer.held === 1, WAIT_MS);
      h.issuer.releaseOne();
    }
    assert.deepEqual(codes(await Promise.all([blocker, ...pending])), { OK: 5 });
    assert.deepEqual(
      h.issuer.signed.map((id) => id.split('/')[4]),
      ['blocker', 'urgent', 'new-1', 'new-2', 'calm'],
    );
  });

  test('a queued call whose client cancels leaves the queue', async () => {
    const h = await startServer({
      maxInflight: 1,
      maxQueued: 1,
      identityRate: undefined,
      nodeRateFactor: 1,
    });
    const token = await h.token('cancel', 'app');
    const client = h.client();
    const held = call(client, { token });
    await waitFor('one call in flight', () => h.issuer.held === 1, WAIT_MS);
    const handle: { cancel?: () => void } = {};
    const queued = call(client, { token, signal: handle });
    await waitFor('one call queued', () => h.admission.queued === 1, WAIT_MS);
    assert.equal((await call(client, { token })).code, status.RESOURCE_EXHAUSTED, 'queue full');
    handle.cancel?.();
    assert.equal((await queued).code, status.CANCELLED);
    await waitFor('the cancelled call left the queue', () => h.admission.queued === 0, WAIT_MS);
    assert.equal(await h.metric('castellan_csr_queue_abandoned_total'), 1);
    // Its place is free again: the next call waits instead of being shed.
    const next = call(client, { token });
    await waitFor('the next call queued', () => h.admission.queued === 1, WAIT_MS);
    h.issuer.releaseAll();
    assert.deepEqual(codes(await Promise.all([held, next])), { OK: 2 });
  });

  test('calls queued then cancelled in a loop: their audit lines share the same limit (a client can repeat them at no cost)', async () => {
    const h = await startServer({
      maxInflight: 1,
      maxQueued: 1,
      identityRate: undefined,
      nodeRateFactor: 1,
    });
    const token = await h.token('loop', 'app');
    const client = h.client();
    const held = call(client, { token });
    await waitFor('one call in flight', () => h.issuer.held === 1, WAIT_MS);
    const CYCLES = 130;
    for (let i = 1; i <= CYCLES; i++) {
      const handle: { cancel?: () => void } = {};
      const queued = call(client, { token, signal: handle });
      await waitFor(`call ${i} queued`, () => h.admission.queued === 1, WAIT_MS);
      handle.cancel?.();
      assert.equal((await queued).code, status.CANCELLED);
      await waitFor(`call ${i} left the queue`, () => h.admission.queued === 0, WAIT_MS);
    }
    assert.equal(await h.metric('castellan_csr_queue_abandoned_total'), CYCLES);
    const abandoned = h
      .auditLines()
      .filter((l) => l['outcome'] !== 'shed' && String(l['reason']).includes('queue'));
    assert.equal(abandoned.length, 100, 'the burst of the audit limit, no more');
    assert.equal(await h.metric('castellan_audit_lines_suppressed_total'), CYCLES - 100);
    h.issuer.releaseAll();
    assert.equal((await held).code, status.OK);
  });

  test('the audit log of shed calls is rate-limited: 100 at once, 20 a second, each line counting those suppressed before it', async () => {
    const h = await startServer({
      maxInflight: 1,
      maxQueued: 0,
      identityRate: undefined,
      nodeRateFactor: 1,
    });
    const token = await h.token('audit', 'app');
    const clients = Array.from({ length: 4 }, () => h.client());
    const held = call(clients[0] as CaClient, { token });
    await waitFor('one call in flight', () => h.issuer.held === 1, WAIT_MS);
    const shedLines = () => h.auditLines().filter((l) => l['outcome'] === 'shed');
    assert.deepEqual(codes(await Promise.all(burst(clients, 300, token))), {
      RESOURCE_EXHAUSTED: 300,
    });
    assert.equal(shedLines().length, 100);
    assert.equal(await h.metric('castellan_audit_lines_suppressed_total'), 200);
    assert.equal(shedLines()[99]?.['suppressed'], undefined);
    // One second on the server's clock: 20 more lines; the first says 200 were dropped.
    await h.clock.advance(1000);
    await Promise.all(burst(clients, 30, token));
    const lines = shedLines();
    assert.equal(lines.length, 120);
    assert.equal(lines[100]?.['suppressed'], 200);
    assert.equal(lines[101]?.['suppressed'], undefined);
    assert.equal(await h.metric('castellan_audit_lines_suppressed_total'), 210);
    assert.equal(await h.metric('castellan_csr_shed_total{reason="queue_full"}'), 330);
    h.issuer.releaseAll();
    assert.equal((await held).code, status.OK);
  });
});
