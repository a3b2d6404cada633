// Area 1: the request path as Envoy's RBAC filter sees it, under meshConfig.pathNormalization.
//  [ENVOY]  envoyproxy/envoy test/common/http/path_utility_test.cc (PathUtilityTest: every case)
//  [HCM]    envoy source/common/http/conn_manager_utility.cc maybeNormalizePath (step order)
//  [ISTIO]  istio/istio pilot/pkg/networking/core/listener_builder.go buildHTTPConnectionManager
//           (mode -> normalize_path, merge_slashes, path_with_escaped_slashes_action)
//  [MESH]   istio/api mesh/v1alpha1/config.proto ProxyPathNormalization (DEFAULT is BASE)
//  [SEC]    istio.io/latest/docs/ops/best-practices/security/#understand-path-normalization-in-authorization-policy
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { isCastellanError } from '../../src/errors.js';
import { formatDecision } from '../../src/policy/decision.js';
import { parseMesh } from '../../src/policy/mesh.js';
import {
  canonicalPath,
  mergeSlashes,
  normalizeRequestPath,
  stripParametersFromDotSegments,
  unescapeSlashes,
  type PathNormalization,
} from '../../src/policy/path-normalization.js';
import { ap, decideCase, outcome, request } from './helpers.js';

test('[ENVOY] PathUtilityTest.NormalizeValidPaths / NormalizeCasePath / AlreadyNormalPaths', () => {
  const cases: [string, string][] = [
    ['/xyz', '/xyz'],
    ['/x/y/z', '/x/y/z'],
    ['/a/b/../c', '/a/c'],
    ['/a/b/./c', '/a/b/c'],
    ['a/b/../c', '/a/c'],
    ['/a/b/../../../../c', '/c'],
    ['/a/..\\c', '/c'],
    ['/%c0%af', '/%c0%af'],
    ['/%5c%25', '/%5c%25'],
    ['/a/b/%2E%2E/c', '/a/c'],
    ['/a/b/%2E./c', '/a/c'],
    ['/a/b/%2E/c', '/a/b/c'],
    ['..', '/'],
    ['/../a/b', '/a/b'],
    ['/./a/b', '/a/b'],
    ['/xyz/..;foo=bar/abc', '/abc'],
    ['/..;foo=bar/abc', '/abc'],
    ['/xyz/..;foo=bar', '/'],
    ['/xyz/.;foo=bar/abc', '/xyz/abc'],
    ['/.;foo=bar/abc', '/abc'],
    ['/xyz/.;foo=bar', '/xyz/'],
    ['/xyz/..;foo=bar/.;v1=2,v2=3/abc', '/abc'],
    ['/..;foo=bar/abc/.;mmm', '/abc/'],
    ['/.;aaa/..;foo=bar/abc/.;mmm', '/abc/'],
    ['/xyz/..;foo=bar/.;fff=zzz', '/'],
    ['/xyz/..;foo=bar/.;fff=zzz?blah=woops', '/?blah=woops'],
    ['/xyz/..;foo=bar/.;fff=zzz/remain;blah-bluh?query', '/remain;blah-bluh?query'],
    ['/A/B/C', '/A/B/C'],
    ['/a/b/%2e%2e/c', '/a/c'],
    ['/a/%2F%2f/c', '/a/%2F%2f/c'],
  ];
  for (const [input, want] of cases) assert.equal(canonicalPath(input), want, input);
});

test('[ENVOY] PathUtilityTest.InvalidPaths: an escaped NUL is refused', () => {
  for (const p of ['/xyz/.%00../abc', '/xyz/%00.%00./abc', '/xyz/AAAAA%%0000/abc']) {
    assert.equal(canonicalPath(p), null, p);
  }
});

test('[ENVOY] Chromium canonicalizer details Envoy keeps: unreserved escapes decoded, others escaped', () => {
  const cases: [string, string][] = [
    ['/%41%62%2D%7e', '/Ab-~'], // unreserved characters are decoded
    ['/a b"<>', '/a%20b%22%3C%3E'], // characters outside the path set are escaped (upper case)
    ['/caf\u00e9', '/caf%C3%A9'], // UTF-8 bytes escaped
    ['/a%2fb', '/a%2fb'], // an escaped slash is kept exactly, hex case included
    ['/a%zz', '/a%zz'], // a '%' that starts no escape is kept
    ['/%%300', '/%2500'], // a nested escape is not allowed to form (CheckForNestedEscapes)
    ['/a/.hidden/..x', '/a/.hidden/..x'], // dots that are part of a name
    ['/a?b/../c', '/a?b/../c'], // the query is never touched
  ];
  for (const [input, want] of cases) assert.equal(canonicalPath(input), want, input);
});

test('[ENVOY] PathUtilityTest.MergeSlashes', () => {
  const cases: [string, string][] = [
    ['', ''],
    ['a//b/c', 'a/b/c'],
    ['/a//b/c/', '/a/b/c/'],
    ['a//b/c/', 'a/b/c/'],
    ['/a', '/a'],
    ['//a/b/c', '/a/b/c'],
    ['/a//b/c', '/a/b/c'],
    ['/a/b/c//', '/a/b/c/'],
    ['/a///b/c', '/a/b/c'],
    ['/a////b/c', '/a/b/c'],
    ['/a//b?a=///c', '/a/b?a=///c'],
    ['/a//b?', '/a/b?'],
    ['//a/?b', '/a/?b'],
  ];
  for (const [input, want] of cases) assert.equal(mergeSlashes(input), want, input);
});

test('[ENVOY] PathUtilityTest.UnescapeSlashes and StripDotSegmentWithParameters', () => {
  const unescape: [string, string][] = [
    ['', ''],
    ['%2f%2F', '//'],
    ['/a%2Fb%2fc/', '/a/b/c/'],
    ['%2b', '%2b'],
    ['%2', '%2'],
    ['foo%', 'foo%'],
    ['%%2fa/', '%/a/'],
    ['%2%2fa/', '%2/a/'],
    ['%5c%5C', '\\\\'],
    ['/x/%2E%2e/z%2f%2Fabc%5C../def', '/x/%2E%2e/z//abc\\../def'],
    ['%2fa%5Cb%2fc%5c?%2fabcd%5C%%2f%', '/a\\b/c\\?%2fabcd%5C%%2f%'],
  ];
  for (const [input, want] of unescape) assert.equal(unescapeSlashes(input), want, input);
  const strip: [string, string][] = [
    ['/xyz/..;foo=bar/abc', '/xyz/../abc'],
    ['/xyz/..;', '/xyz/..'],
    ['/a/..;param1;param2/b', '/a/../b'],
    ['/xyz/...;foo', '/xyz/...;foo'],
    ['/xyz/remove/..;foo?param=/.;foo', '/xyz/remove/..?param=/.;foo'],
    ['/xyz/remove/..;foo#frag=/.;foo', '/xyz/remove/..#frag=/.;foo'],
    ['/xyz#frag=/..;foo', '/xyz#frag=/..;foo'],
  ];
  for (const [input, want] of strip) {
    assert.equal(stripParametersFromDotSegments(input), want, input);
  }
});

test('[ISTIO][HCM] each pathNormalization mode, step by step, on the same raw paths', () => {
  const modes: PathNormalization[] = ['NONE', 'BASE', 'MERGE_SLASHES', 'DECODE_AND_MERGE_SLASHES'];
  const rows: [string, string[]][] = [
    ['/admin/./secret', ['/admin/./secret', '/admin/secret', '/admin/secret', '/admin/secret']],
    ['/public/../admin', ['/public/../admin', '/admin', '/admin', '/admin']],
    ['/public/%2e%2e/admin', ['/public/%2e%2e/admin', '/admin', '/admin', '/admin']],
    ['/a\\..\\admin', ['/a\\..\\admin', '/admin', '/admin', '/admin']],
    ['//admin//x', ['//admin//x', '//admin//x', '/admin/x', '/admin/x']],
    ['/admin%2Fx', ['/admin%2Fx', '/admin%2Fx', '/admin%2Fx', '/admin/x']],
    ['/a/%2E%2E%2fadmin', ['/a/%2E%2E%2fadmin', '/a/..%2fadmin', '/a/..%2fadmin', '/admin']],
    ['/p%5c..%5cadmin', ['/p%5c..%5cadmin', '/p%5c..%5cadmin', '/p%5c..%5cadmin', '/admin']],
    [
      '/x//../admin?q=//a',
      ['/x//../admin?q=//a', '/x/admin?q=//a', '/x/admin?q=//a', '/x/admin?q=//a'],
    ],
    ['/admin#frag', ['/admin', '/admin', '/admin', '/admin']],
  ];
  for (const [raw, wants] of rows) {
    modes.forEach((mode, i) => {
      const got = normalizeRequestPath(raw, mode);
      assert.ok(got.ok, `${raw} ${mode}`);
      assert.equal(got.path, wants[i], `${raw} under ${mode}`);
    });
  }
  const refused = normalizeRequestPath('/a/%00', 'BASE');
  assert.deepEqual([refused.ok, !refused.ok && refused.status], [false, 400]);
  assert.equal(normalizeRequestPath('/a/%00', 'NONE').ok, true, 'NONE never refuses a path');
  const relative = normalizeRequestPath('admin', 'NONE');
  assert.deepEqual([relative.ok, !relative.ok && relative.status], [false, 404]);
});

test('[MESH] pathNormalization in the mesh settings: MeshConfig form, bare name, DEFAULT is BASE', () => {
  assert.equal(parseMesh(undefined).pathNormalization, 'BASE');
  assert.equal(parseMesh({ pathNormalization: {} }).pathNormalization, 'BASE');
  assert.equal(
    parseMesh({ pathNormalization: { normalization: 'DEFAULT' } }).pathNormalization,
    'BASE',
  );
  assert.equal(
    parseMesh({ pathNormalization: { normalization: 'MERGE_SLASHES' } }).pathNormalization,
    'MERGE_SLASHES',
  );
  assert.equal(parseMesh({ pathNormalization: 'NONE' }).pathNormalization, 'NONE');
  assert.throws(
    () => parseMesh({ pathNormalization: { normalization: 'base' } }),
    (e) =>
      isCastellanError(e, 'invalid-argument') &&
      e.message.startsWith('mesh.pathNormalization.normalization: "base" is not one of'),
  );
});

const denyAdmin = ap(
  'foo',
  'deny-admin',
  '{action: DENY, rules: [{to: [{operation: {paths: ["/admin/secret"]}}]}]}',
);
const get = (path: string): Record<string, unknown> =>
  request({ http: { method: 'GET', path, host: 'httpbin.foo:8000', headers: {} } });

test('[SEC] a DENY on /admin/... catches what each mode turns into /admin/... and nothing else', () => {
  const rows: [string, PathNormalization, string][] = [
    ['/admin/secret', 'NONE', 'DENY/deny foo/deny-admin'],
    ['/admin/./secret', 'NONE', 'ALLOW/default'],
    ['/admin/./secret', 'BASE', 'DENY/deny foo/deny-admin'],
    ['/public/%2E%2E/admin/secret', 'BASE', 'DENY/deny foo/deny-admin'],
    ['/public\\..\\admin\\secret', 'BASE', 'DENY/deny foo/deny-admin'],
    ['//admin//secret', 'BASE', 'ALLOW/default'],
    ['//admin//secret', 'MERGE_SLASHES', 'DENY/deny foo/deny-admin'],
    ['/admin%2Fsecret', 'MERGE_SLASHES', 'ALLOW/default'],
    ['/public%2F..%2Fadmin%2Fsecret', 'DECODE_AND_MERGE_SLASHES', 'DENY/deny foo/deny-admin'],
    ['/admin/secret?debug=1', 'BASE', 'DENY/deny foo/deny-admin'],
    ['/admin/secret%00', 'BASE', 'DENY/path'],
    ['/admin/secret%00', 'NONE', 'ALLOW/default'],
  ];
  for (const [path, mode, want] of rows) {
    const d = decideCase({
      policies: denyAdmin,
      mesh: { pathNormalization: { normalization: mode } },
      request: get(path),
    });
    assert.equal(outcome(d), want, `${path} under ${mode}: ${d.reason}`);
  }
});

test('[HCM] an ALLOW on a path template sees the normalized path, and TCP is never normalized', () => {
  const allowApi = ap('foo', 'allow-api', '{rules: [{to: [{operation: {paths: ["/api/{*}"]}}]}]}');
  assert.equal(
    outcome(decideCase({ policies: allowApi, request: get('/api/x/../y') })),
    'ALLOW/allow foo/allow-api',
  );
  assert.equal(
    outcome(decideCase({ policies: allowApi, request: get('/api/./y') })),
    'ALLOW/allow foo/allow-api',
  );
  const d = decideCase({
    policies: allowApi,
    request: request({ protocol: 'TCP', port: 9000, http: undefined }),
  });
  assert.equal(d.path, null);
});

test('[HCM] check explains the normalized path (and a refusal) in its output', () => {
  const d = decideCase({
    policies: denyAdmin,
    mesh: { pathNormalization: { normalization: 'MERGE_SLASHES' } },
    request: get('//admin/./secret'),
  });
  assert.deepEqual(d.path, {
    original: '//admin/./secret',
    normalized: '/admin/secret',
    mode: 'MERGE_SLASHES',
  });
  assert.match(
    formatDecision(d),
    /\n {2}path: \/admin\/secret \(normalized from \/\/admin\/\.\/secret; pathNormalization MERGE_SLASHES\)\n/,
  );
  const same = decideCase({ policies: denyAdmin, request: get('/ok') });
  assert.match(formatDecision(same), /path: \/ok \(unchanged; pathNormalization BASE\)/);
  const refused = decideCase({ policies: denyAdmin, request: get('/a%00') });
  assert.equal(refused.stage, 'path');
  assert.match(refused.reason, /400/);
  assert.match(formatDecision(refused), /path: \/a%00 \(refused; pathNormalization BASE\)/);
});
