// listenOn: a bind failure names the address and its purpose; a server that listens keeps no
// error listener of ours, which would swallow its later errors.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, type AddressInfo } from 'node:net';
import { isCastellanError } from '../../src/errors.js';
import { listenOn } from '../../src/server/listen.js';

test('listenOn binds, then leaves no error listener behind', async () => {
  const server = createServer();
  await listenOn(server, { host: '127.0.0.1', port: 0 }, 'test address');
  try {
    assert.ok((server.address() as AddressInfo).port > 0);
    assert.equal(server.listenerCount('error'), 0);
  } finally {
    server.close();
  }
});

test('a port already taken is refused, naming the address and what it was for', async () => {
  const taken = createServer();
  await listenOn(taken, { host: '127.0.0.1', port: 0 }, 'first');
  const port = (taken.address() as AddressInfo).port;
  try {
    await assert.rejects(
      listenOn(createServer(), { host: '127.0.0.1', port }, 'bundle address'),
      (e: unknown) =>
        isCastellanError(e, 'internal') &&
        e.message ===
          `bundle address: cannot listen on 127.0.0.1:${port}: listen EADDRINUSE: address already in use 127.0.0.1:${port}`,
    );
  } finally {
    taken.close();
  }
});
