// Loaded once per test process with `node --import` (scripts/run-tests.mjs), before any test
// file: the process-wide state every test relies on is set here, not per file.
// @peculiar/x509 2.x relies on decorator metadata at load time, so reflect-metadata is loaded
// first and x509 only after it (a static import of both would not keep that order: Node may
// run a CommonJS dependency before the ES modules that precede it).
import 'reflect-metadata';
import { webcrypto } from 'node:crypto';

const x509 = await import('@peculiar/x509');
// The in-test CAs (test/support/x509-certs.ts) sign with Node's WebCrypto.
x509.cryptoProvider.set(webcrypto as unknown as Parameters<typeof x509.cryptoProvider.set>[0]);
