// The one hop of the crypto thread (CsrCheckPool.issue through workloadLeafIssuer.issue): the CSR
// check, the TBS, the signature and the PEM on the thread, against the two steps on the event
// loop (the inline check, then issueWorkloadCertificate with the fast leaf signer). Real CAs made
// by openssl (P-256 and RSA-2048: ECDSA signs on the thread, RSA on libuv's pool), real CSRs,
// leaves checked by openssl and node:crypto. Also: no hop before a thread is up or for a key
// outside this process, many orders in one turn, a CA swap, and a thread that dies mid-batch.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { buildKeyCertBundle } from '../../src/ca/build-key-cert-bundle.js';
import type { CaSnapshot } from '../../src/ca/key-cert-bundle.js';
import { SwappableCaState } from '../../src/ca/swappable-ca-state.js';
import { isCastellanError } from '../../src/errors.js';
import { createKeyAndCsr } from '../../src/pki/csr-builder.js';
import type { CaSigner } from '../../src/pki/signer.js';
import { CsrRejected, type IssuedLeaf } from '../../src/server/create-certificate.js';
import { CsrCheckPool, LeafOrderFailure } from '../../src/server/csr-check-threads.js';
import { workloadLeafIssuer } from '../../src/server/issuers.js';
import { makeTempDir } from '../support/openssl.js';
import { opensslSelfSigned, type OpensslKeyType } from '../support/openssl-certs.js';
import { ManualClock } from '../support/manual-clock.js';
import { waitFor } from '../support/wait-for.js';
import { opensslCsr, opensslVerify } from './support/client.js';

const SPIFFE = 'spiffe://cluster.local/ns/default/sa/sleep';
const TTL_MS = 3_600_000;
const temp = makeTempDir();
const pools: CsrCheckPool[] = [];
after(async () => {
  await Promise.all(pools.map((p) => p.close()));
  temp.remove();
});

async function readyPool(
  options: Partial<ConstructorParameters<typeof CsrCheckPool>[1]> = {},
): Promise<CsrCheckPool> {
  const p = new CsrCheckPool(1, { clock: new ManualClock(), ...options });
  pools.push(p);
  await waitFor('a ready thread', () => p.readyThreads === 1, 20_000);
  return p;
}

/** An openssl-made self-signed CA as serve loads one: bundle, then a swapped-in snapshot. */
function caSnapshot(keyType: OpensslKeyType, name: string): CaSnapshot {
  opensslSelfSigned(temp.dir, name, {
    subject: `/O=Castellan Tests/CN=${name}`,
    keyType,
    extensions: ['basicConstraints=critical,CA:TRUE', 'keyUsage=critical,keyCertSign,cRLSign'],
  });
  const certPem = readFileSync(join(temp.dir, `${name}.pem`), 'utf8');
  const bundle = buildKeyCertBundle(
    {
      certPem,
      keyPem: readFileSync(join(temp.dir, `${name}.key`), 'utf8'),
      rootPem: certPem,
      source: `test:${name}`,
    },
    new ManualClock(Date.now() + 1000), // a second after openssl's notBefore
  );
  return new SwappableCaState().swap(bundle);
}

type Outcome = { ok: true; leaf: IssuedLeaf } | { ok: false; error: unknown };
async function settle(p: Promise<IssuedLeaf>): Promise<Outcome> {
  try {
    return { ok: true, leaf: await p };
  } catch (e) {
    return { ok: false, error: e };
  }
}

/** What a leaf says, serial and signature aside (random in both paths). */
function leafFields(certChainPem: readonly string[], caPem: string) {
  const leaf = new X509Certificate(certChainPem[0]!);
  const ca = new X509Certificate(caPem);
  assert.ok(leaf.verify(ca.publicKey), 'the leaf verifies with the CA key');
  return {
    subject: leaf.subject,
    issuer: leaf.issuer,
    san: leaf.subjectAltName,
    validFrom: leaf.validFrom,
    validTo: leaf.validTo,
    publicKey: leaf.publicKey.export({ type: 'spki', format: 'der' }).toString('hex'),
    keyUsage: leaf.keyUsage,
    ca: leaf.ca,
    rest: certChainPem.slice(1),
  };
}

/** The CSR with the last byte of its P-256 point changed: off the curve (and the signature no longer verifies). */
function offCurve(csrPem: string): string {
  const der = Buffer.from(csrPem.replace(/-----[^-]+-----|\s/g, ''), 'base64');
  const prefix = Buffer.from('3059301306072a8648ce3d020106082a8648ce3d03010703420004', 'hex');
  const at = der.indexOf(prefix);
  assert.ok(at > 0, 'a canonical P-256 key');
  const last = at + prefix.length + 63;
  der[last] = der[last]! ^ 0x01;
  const lines = der
    .toString('base64')
    .match(/.{1,64}/g)!
    .join('\n');
  return `-----BEGIN CERTIFICATE REQUEST-----\n${lines}\n-----END CERTIFICATE REQUEST-----\n`;
}

/** A refusal as the handler sees it: which step, and the CastellanError's fields. */
function refusal(e: unknown): unknown {
  const stage = e instanceof CsrRejected ? 'csr' : 'sign';
  const err = e instanceof CsrRejected ? e.error : e;
  return isCastellanError(err)
    ? { stage, kind: err.kind, subject: err.subject, message: err.message }
    : { stage, notCastellan: String(err) };
}

describe('one hop to the crypto thread = two steps on the event loop', () => {
  const clock = new ManualClock(Date.now());
  let pool: CsrCheckPool;
  before(async () => {
    pool = await readyPool();
  });

  for (const caKey of ['ec-p256', 'rsa-2048'] as const) {
    test(`${caKey} CA: same leaf, or the same refusal at the same step`, async () => {
      const snapshot = caSnapshot(caKey, `ca-${caKey}`);
      const caPem = snapshot.bundle.responseChainPem.at(-1)!;
      const threaded = workloadLeafIssuer(clock, pool);
      const inline = workloadLeafIssuer(clock);
      assert.ok(threaded.issue !== undefined, 'a pool issues in one hop');
      const ec = opensslCsr('ec').csrPem;
      const flipped = ec.replace(/[A-Za-z](?=[^\n]*\n-----END)/, (c) => (c === 'A' ? 'B' : 'A'));
      const noCn = (await createKeyAndCsr('ec-p256', { sans: [SPIFFE] })).csrPem;
      const rows: [string, string, string?][] = [
        ['P-256 CSR with a CN', ec],
        ['P-256 CSR without a CN', noCn],
        ['RSA-2048 CSR', opensslCsr('rsa:2048').csrPem],
        ['a CN that does not fit: none in the leaf', ec, `${SPIFFE}/${'x'.repeat(64)}`],
        ['weak RSA key', opensslCsr('rsa:1024').csrPem],
        ['a flipped signature byte', flipped],
        ['not a CSR', 'not a CSR'],
        ['too large', 'x'.repeat(20_000)],
        ['a certificate label', ec.replace('CERTIFICATE REQUEST', 'CERTIFICATE')],
        ['a P-256 point off the curve', offCurve(ec)],
      ];
      let issued = 0;
      for (const [name, pem, san = SPIFFE] of rows) {
        const hop = threaded.issue(snapshot, pem, [san], TTL_MS);
        assert.ok(hop, `${name}: one hop`);
        const [one, two] = [
          await settle(hop),
          await settle(
            (async (): Promise<IssuedLeaf> => {
              let csr;
              try {
                csr = await inline.parseCsr(pem);
              } catch (e) {
                throw new CsrRejected(e as never);
              }
              return inline.sign(snapshot, csr, [san], TTL_MS);
            })(),
          ),
        ] as [Outcome, Outcome];
        if (two.ok) {
          assert.ok(one.ok, `${name}: ${JSON.stringify(one.ok || refusal(one.error))}`);
          assert.deepEqual(
            leafFields(one.leaf.certChainPem, caPem),
            leafFields(two.leaf.certChainPem, caPem),
            name,
          );
          assert.equal(one.leaf.notAfter.getTime(), two.leaf.notAfter.getTime());
          assert.match(one.leaf.serialHex, /^[0-9a-f]{32,40}$/);
          assert.notEqual(one.leaf.serialHex, two.leaf.serialHex);
          opensslVerify(one.leaf.certChainPem, caPem); // throws with openssl's output
          issued++;
        } else {
          assert.ok(!one.ok, `${name}: refused inline, issued on the thread`);
          assert.deepEqual(refusal(one.error), refusal(two.error), name);
        }
      }
      assert.equal(issued, 4);
    });
  }

  test('many orders in one turn, for two CAs (a swap), each come back to their caller', async () => {
    const a = caSnapshot('ec-p256', 'swap-a');
    const b = caSnapshot('ec-p256', 'swap-b');
    const issuer = workloadLeafIssuer(clock, pool);
    const csr = opensslCsr('ec').csrPem;
    const leaves = await Promise.all(
      Array.from({ length: 40 }, (_, i) =>
        issuer.issue!(i % 2 ? a : b, csr, [`${SPIFFE}${i}`], TTL_MS)!,
      ),
    );
    leaves.forEach((leaf, i) => {
      const cert = new X509Certificate(leaf.certChainPem[0]!);
      assert.equal(cert.subjectAltName, `URI:${SPIFFE}${i}`);
      const ca = new X509Certificate((i % 2 ? a : b).bundle.responseChainPem[0]!);
      assert.ok(cert.verify(ca.publicKey), `leaf ${i} signed by its own CA`);
    });
  });
  test('a batch of P-256 orders is answered in chunks as they are signed, in order, not at its end', async () => {
    // csr-check-thread.ts: drain and REPLY_CHUNK. With every reply of a batch held to its end,
    // the event loop waited for the whole batch while the thread then waited for the event
    // loop (each thread idle 30–50% at c=64). Counted here in turns of this event loop, which a
    // chain of setImmediate keeps turning: replies that arrive in different messages resolve in
    // different turns.
    const snapshot = caSnapshot('ec-p256', 'chunks');
    const issuer = workloadLeafIssuer(clock, pool);
    const csr = opensslCsr('ec').csrPem;
    // A batch whose messages all wait while this event loop is held up elsewhere (the suite's
    // other tests share the two cores) resolves in one turn anyway: up to three batches are
    // sent, and one answered in chunks is enough. Replies held to the batch's end never are.
    const seen: number[][] = [];
    for (let attempt = 0; attempt < 3; attempt++) {
      let turn = 0;
      let spinning = true;
      const spin = (): void => {
        turn++;
        if (spinning) setImmediate(spin);
      };
      spin();
      const resolvedAt: { index: number; turn: number }[] = [];
      const orders = Array.from({ length: 32 }, (_, i) =>
        issuer.issue!(snapshot, csr, [`${SPIFFE}${i}`], TTL_MS)!.then((leaf) => {
          resolvedAt.push({ index: i, turn });
          return leaf;
        }),
      );
      await Promise.all(orders).finally(() => (spinning = false));
      assert.deepEqual(
        resolvedAt.map((r) => r.index),
        orders.map((_, i) => i),
        'answered in the order sent',
      );
      const turns = [...new Set(resolvedAt.map((r) => r.turn))];
      seen.push(turns);
      if (turns.length >= 2) return;
    }
    assert.fail(`every batch of 32 replies came back in one turn (${JSON.stringify(seen)})`);
  });
});

describe('when the hop is not taken', () => {
  test('before the thread is ready, and for a key outside this process: the two steps', async () => {
    const clock = new ManualClock(Date.now());
    const snapshot = caSnapshot('ec-p256', 'not-yet');
    const starting = new CsrCheckPool(1, { clock });
    pools.push(starting);
    assert.equal(
      workloadLeafIssuer(clock, starting).issue!(snapshot, 'x', [SPIFFE], TTL_MS),
      undefined,
    );

    const ready = await readyPool();
    const hsmLike: CaSigner = {
      keyType: 'ec-p256',
      description: 'pkcs11:object=ca',
      sign: () => Promise.reject(new Error('not used')),
    };
    const inToken = { ...snapshot, bundle: { ...snapshot.bundle, signer: hsmLike } };
    assert.equal(
      workloadLeafIssuer(clock, ready).issue!(inToken, 'x', [SPIFFE], TTL_MS),
      undefined,
    );
    // The signing certificate has expired: the two steps refuse it, each in its order.
    const late = new ManualClock(Date.now() + 400 * 86_400_000);
    assert.equal(
      workloadLeafIssuer(late, ready).issue!(snapshot, 'x', [SPIFFE], TTL_MS),
      undefined,
    );
  });
});

test('a thread that dies mid-batch fails the orders it held as signing failures (internal)', async () => {
  const clock = new ManualClock(Date.now());
  const snapshot = caSnapshot('ec-p256', 'dies');
  const workerUrl = new URL('./support/exiting-csr-worker.js', import.meta.url);
  const p = await readyPool({ workerUrl, clock });
  // The test thread refuses what it is sent (as a CSR defect), and exits on the PEM "exit".
  const refused = await settle(p.issue(snapshot, orderFor('anything'))!.then(asLeaf));
  assert.ok(!refused.ok && refused.error instanceof LeafOrderFailure);
  assert.equal(refused.error.stage, 'csr');
  assert.equal(refused.error.error.kind, 'malformed');

  const batch = [p.issue(snapshot, orderFor('a'))!, p.issue(snapshot, orderFor('exit'))!];
  for (const outcome of await Promise.all(batch.map((o) => settle(o.then(asLeaf))))) {
    assert.ok(!outcome.ok && outcome.error instanceof LeafOrderFailure, JSON.stringify(outcome));
    assert.equal(outcome.error.stage, 'sign');
    assert.equal(outcome.error.error.kind, 'internal');
    assert.match(outcome.error.error.message, /stopped \(exit code 3\)/);
  }
  // Replaced: the next order reaches a new thread.
  await waitFor('a new thread', () => p.readyThreads === 1, 20_000);
  const again = await settle(p.issue(snapshot, orderFor('anything'))!.then(asLeaf));
  assert.ok(!again.ok && (again.error as LeafOrderFailure).stage === 'csr');
});

function orderFor(pem: string) {
  return { pem, sans: [SPIFFE], dualUseCommonName: SPIFFE, notBeforeMs: 0, notAfterMs: 1000 };
}

function asLeaf(issued: { leafPem: string; serialHex: string }): IssuedLeaf {
  return { certChainPem: [issued.leafPem], serialHex: issued.serialHex, notAfter: new Date(0) };
}
