// Loaded once per test process with `node --import` (scripts/run-tests.mjs), before any test
// file: the process-wide state every test relies on is set here, not per file.
// @peculiar/x509 2.x relies on decorator metadata at load time, so reflect-metadata is loaded
// first and x509 only after it (a static import of both would not keep that order: Node may
// run a CommonJS dependency before the ES modules that precede it).
//
// Worker threads inherit `--import` from the test process, and loading these two costs a
// thread ~0.25 s of CPU (~1 s on a busy machine) before it runs: the CSR check pool's tests
// start a dozen. A thread loads what it needs itself (src/server/csr-check-thread.ts imports
// reflect-metadata, as the production entry points do), so threads skip this.
import { isMainThread } from 'node:worker_threads';
import { webcrypto } from 'node:crypto';

if (isMainThread) {
  await import('reflect-metadata');
  const x509 = await import('@peculiar/x509');
  // The in-test CAs (test/support/x509-certs.ts) sign with Node's WebCrypto.
  x509.cryptoProvider.set(webcrypto as unknown as Parameters<typeof x509.cryptoProvider.set>[0]);
}
