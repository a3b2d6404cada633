// Area 4: `request.headers[...]` conditions over the headers Envoy holds, pseudo-headers included.
//  [GEN]   istio/istio pilot/pkg/security/authz/model/generator.go requestHeaderGenerator and
//          matcher/header.go HeaderMatcher (exact, prefix, suffix, presence on the named header)
//  [COND]  istio.io/latest/docs/reference/config/security/conditions/ (request.headers)
//  [ENVOY] Envoy keeps HTTP/1 Host as :authority (headers.h Host = ":authority"); :path is the
//          path after the connection manager normalized it (conn_manager_utility.cc)
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ap, decideCase, request } from './helpers.js';

const when = (key: string, values: string): string =>
  ap('foo', 'allow', `{rules: [{when: [{key: "${key}", values: ${values}}]}]}`);
const http = (o: Record<string, unknown>): Record<string, unknown> =>
  request({
    http: { method: 'GET', path: '/headers', host: 'httpbin.foo:8000', headers: {}, ...o },
  });

test('[GEN][ENVOY] pseudo-headers :method, :path, :authority, :scheme are request headers', () => {
  const rows: [string, string, Record<string, unknown>, 'ALLOW' | 'DENY'][] = [
    ['request.headers[:method]', '[GET]', {}, 'ALLOW'],
    ['request.headers[:method]', '[POST]', {}, 'DENY'],
    ['request.headers[:METHOD]', '[GET]', {}, 'ALLOW'],
    ['request.headers[:authority]', '["httpbin.foo*"]', {}, 'ALLOW'],
    // HostMatcher ignores case for `hosts`; a header matcher on :authority does not.
    ['request.headers[:authority]', '["HTTPBIN.foo:8000"]', {}, 'DENY'],
    ['request.headers[:path]', '["/headers"]', {}, 'ALLOW'],
    // :path keeps the query string (url_path matchers drop it, header matchers do not).
    ['request.headers[:path]', '["/headers"]', { path: '/headers?a=1' }, 'DENY'],
    ['request.headers[:path]', '["*?a=1"]', { path: '/headers?a=1' }, 'ALLOW'],
    // …and it is the normalized path.
    ['request.headers[:path]', '["/admin"]', { path: '/x/../admin' }, 'ALLOW'],
    ['request.headers[:scheme]', '[http]', {}, 'ALLOW'],
    ['request.headers[:scheme]', '[https]', { scheme: 'https' }, 'ALLOW'],
    // The Host header is :authority; there is no `host` header to match.
    ['request.headers[host]', '["*"]', { host: undefined, headers: { host: 'a.b' } }, 'DENY'],
    [
      'request.headers[:authority]',
      '["a.b"]',
      { host: undefined, headers: { host: 'a.b' } },
      'ALLOW',
    ],
    ['request.headers[x-user]', '[alice]', { headers: { 'X-User': 'alice' } }, 'ALLOW'],
    [
      'request.headers[x-user]',
      '["alice,bob"]',
      { headers: { 'x-user': ['alice', 'bob'] } },
      'ALLOW',
    ],
    ['request.headers[x-user]', '["*"]', { headers: { 'x-user': '' } }, 'ALLOW'],
  ];
  for (const [key, values, o, want] of rows) {
    const d = decideCase({ policies: when(key, values), request: http(o) });
    assert.equal(d.decision, want, `${key} ${values} on ${JSON.stringify(o)}: ${d.reason}`);
  }
});

test('[GEN] a DENY on a pseudo-header, notValues included', () => {
  const deny = ap(
    'foo',
    'deny',
    '{action: DENY, rules: [{when: [{key: "request.headers[:method]", notValues: [GET, HEAD]}]}]}',
  );
  assert.equal(decideCase({ policies: deny, request: http({ method: 'DELETE' }) }).stage, 'deny');
  assert.equal(decideCase({ policies: deny, request: http({ method: 'HEAD' }) }).stage, 'default');
});

test('[ENVOY] pseudo-headers given as headers are the method, path and authority', () => {
  const d = decideCase({
    policies: ap(
      'foo',
      'allow',
      '{rules: [{to: [{operation: {methods: [PUT], paths: ["/a/b"], hosts: ["x.foo"]}}]}]}',
    ),
    request: request({
      http: { headers: { ':method': 'PUT', ':path': '/a/./b', ':authority': 'x.foo' } },
    }),
  });
  assert.equal(d.decision, 'ALLOW', d.reason);
});
