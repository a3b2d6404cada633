#!/usr/bin/env node
// The `castellan` command: runs the compiled CLI (built by `npm ci` through the prepare script).
//
// CommonJS on purpose (bin/package.json): libuv reads UV_THREADPOOL_SIZE once, when its thread
// pool first starts, and Node's ES module loader starts it while loading the first module. Only
// a CommonJS entry runs before that.
//
// The pool runs the asynchronous signatures (RSA leaves, sent there by the crypto thread; every
// leaf when that thread is not up or with --csr-threads 0). Its default of 4 threads is
// more than a 2-core machine runs at once: the extra ones only take turns with the event loop and
// the CSR check thread. Measured with h2load, 64 connections, 2 cores, P-256 CA, median of 5
// (docs/performance.md): 4 threads 2,505 certs/s, 2 threads 2,877; an RSA-4096 CA needs one per
// core to sign on both (1 thread: 51% of openssl's rate, 2: 78%). So one per core, unless set.
'use strict';
const { availableParallelism } = require('node:os');

if (process.env.UV_THREADPOOL_SIZE === undefined) {
  process.env.UV_THREADPOOL_SIZE = String(availableParallelism());
}
import('../dist/src/cli/main.js');
