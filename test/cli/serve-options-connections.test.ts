// The gRPC port's connection flags (--handshake-timeout, --idle-timeout, --keepalive-interval,
// --keepalive-timeout) completed into ServerOptions.connections, and their refusals.
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import type { ServeFlags } from '../../src/cli/serve/flags.js';
import { completeServeOptions } from '../../src/cli/serve/options.js';
import { DEFAULT_CONNECTION_LIMITS } from '../../src/server/connection-guard.js';
import { isCastellanError } from '../../src/errors.js';

function refusal(flags: ServeFlags): string {
  try {
    completeServeOptions(flags, {});
  } catch (e) {
    assert.ok(isCastellanError(e, 'invalid-argument'), String(e));
    return e.message;
  }
  return assert.fail(`accepted ${JSON.stringify(flags)}`);
}

describe('serve: connection flags', () => {
  test("defaults: istiod's keepalive (30s ping, 10s to answer), 10s handshakes, 5m idle", () => {
    const { connections } = completeServeOptions({}, {}).server;
    assert.deepEqual(connections, {
      handshakeTimeoutMs: 10_000,
      idleTimeoutMs: 300_000,
      keepaliveIntervalMs: 30_000,
      keepaliveTimeoutMs: 10_000,
    });
    assert.deepEqual(connections, DEFAULT_CONNECTION_LIMITS, 'the server defaults agree');
  });

  test('each flag is read as a duration', () => {
    const { connections } = completeServeOptions(
      {
        handshakeTimeout: '2s',
        idleTimeout: '1h',
        keepaliveInterval: '90s',
        keepaliveTimeout: '500ms',
      },
      {},
    ).server;
    assert.deepEqual(connections, {
      handshakeTimeoutMs: 2000,
      idleTimeoutMs: 3_600_000,
      keepaliveIntervalMs: 90_000,
      keepaliveTimeoutMs: 500,
    });
  });

  test('--grpc-transport: castellan by default, grpc-js on request, anything else refused', () => {
    assert.equal(completeServeOptions({}, {}).server.grpcTransport, 'castellan');
    assert.equal(
      completeServeOptions({ grpcTransport: 'grpc-js' }, {}).server.grpcTransport,
      'grpc-js',
    );
    assert.match(
      refusal({ grpcTransport: 'nghttp2' }),
      /^--grpc-transport: "nghttp2" is not one of castellan, grpc-js/,
    );
  });

  test('a value that is not a positive duration is refused, naming its flag', () => {
    assert.match(refusal({ handshakeTimeout: '0' }), /^--handshake-timeout: /);
    assert.match(refusal({ idleTimeout: 'soon' }), /^--idle-timeout: /);
    assert.match(refusal({ keepaliveInterval: '-5s' }), /^--keepalive-interval: /);
    assert.match(refusal({ keepaliveTimeout: '' }), /^--keepalive-timeout: /);
  });
});
