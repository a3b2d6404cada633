import { before, test } from 'node:test';
import assert from 'node:assert/strict';
import { ManualClock } from '../support/manual-clock.js';
import { isCastellanError, type ErrorKind } from '../../src/errors.js';
import { verifyChain } from '../../src/pki/chain.js';
import { HOUR, testCert, testIntermediate, testRoot, window, type TestCa } from './fixtures.js';

const now = Date.now();
const clock = new ManualClock(now);
let root: TestCa;
let inter: TestCa;
let leaf: TestCa;

function kindOf(fn: () => unknown): ErrorKind | 'none' {
  try {
    fn();
    return 'none';
  } catch (e) {
    assert.ok(isCastellanError(e), String(e));
    return e.kind;
  }
}

before(async () => {
  root = await testRoot('ec-p256', window(now - HOUR, 100));
  inter = await testIntermediate(root, { window: window(now - HOUR, 50) });
  leaf = await testCert(
    inter,
    { kind: 'workload', sans: ['spiffe://td/ns/a/sa/b'] },
    window(now - HOUR, 10),
  );
});

test('a good chain verifies and returns its root', () => {
  const r = verifyChain([leaf.cert, inter.cert], [root.cert], clock);
  assert.equal(r, root.cert);
  assert.equal(
    verifyChain([inter.cert, root.cert], [root.cert], clock, { firstIsCa: true }),
    root.cert,
  );
});

test('validity is checked at the clock', () => {
  assert.equal(
    kindOf(() =>
      verifyChain([leaf.cert, inter.cert], [root.cert], new ManualClock(now + 11 * HOUR)),
    ),
    'expired',
  );
  assert.equal(
    kindOf(() =>
      verifyChain([leaf.cert, inter.cert], [root.cert], new ManualClock(now - 2 * HOUR)),
    ),
    'not-yet-valid',
  );
});

test('an issuer that is not a CA', async () => {
  const child = await testCert(leaf, { kind: 'workload', sans: ['x.example'] });
  assert.equal(
    kindOf(() => verifyChain([child.cert, leaf.cert, inter.cert], [root.cert], clock)),
    'not-a-ca',
  );
});

test('a forged issuer with the same name: bad-signature', async () => {
  const impostor = await testRoot('ec-p256', window(now - HOUR, 100));
  // Same subject "O=test, CN=Test Root", different key.
  assert.equal(
    kindOf(() => verifyChain([inter.cert], [impostor.cert], clock)),
    'bad-signature',
  );
});

test('a chain that does not reach the roots: chain-invalid', async () => {
  const other = await testRoot('ec-p256', window(now - HOUR, 100), 'Other Root');
  assert.equal(
    kindOf(() => verifyChain([leaf.cert, inter.cert], [other.cert], clock)),
    'chain-invalid',
  );
  assert.equal(
    kindOf(() => verifyChain([leaf.cert, root.cert], [root.cert], clock)),
    'chain-invalid',
  );
});

test('path length: an intermediate with pathlen 0 cannot sign a CA', async () => {
  const sub = await testIntermediate(inter, { name: 'Sub' });
  assert.equal(
    kindOf(() => verifyChain([sub.cert, inter.cert], [root.cert], clock, { firstIsCa: true })),
    'chain-invalid',
  );
  const sub2 = await testIntermediate(root, { name: 'Sub2', pathLength: 1 });
  const sub3 = await testIntermediate(sub2, { name: 'Sub3' });
  assert.equal(
    verifyChain([sub3.cert, sub2.cert], [root.cert], clock, { firstIsCa: true }),
    root.cert,
  );
});
