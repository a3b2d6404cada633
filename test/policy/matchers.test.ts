// Value matchers, following Istio's matcher package tests (pilot/pkg/security/authz/matcher)
// and Envoy's uri_template and CIDR semantics.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { cidrContains, parseCidr, parseIp } from '../../src/policy/ip-match.js';
import {
  cachedRegexCounts,
  matchHeader,
  matchHost,
  matchRequestPrincipal,
  matchString,
  namespaceMatcher,
  pathMatcher,
  REGEX_CACHE_LIMIT,
} from '../../src/policy/string-match.js';

test('StringMatcher: exact, prefix, suffix, presence (non-empty)', () => {
  const cases: [string, string | null, boolean][] = [
    ['abc', 'abc', true],
    ['abc', 'abcd', false],
    ['abc*', 'abcd', true],
    ['abc*', 'abc', true],
    ['*abc', 'xabc', true],
    ['*abc', 'abcx', false],
    ['*', 'x', true],
    ['*', '', false],
    ['*', null, false],
  ];
  for (const [p, v, want] of cases) assert.equal(matchString(p, v), want, `${p} ~ ${v}`);
});

test('HeaderMatcher presence accepts an empty value; HostMatcher ignores case', () => {
  assert.equal(matchHeader('*', ''), true);
  assert.equal(matchHeader('*', undefined), false);
  assert.equal(matchHost('*.Example.com', 'API.example.COM'), true);
});

test('path templates: {*} one segment, {**} any depth; literals escaped (on the url path)', () => {
  const cases: [string, string, boolean][] = [
    ['/foo/{*}', '/foo/bar', true],
    ['/foo/{*}', '/foo/', false],
    ['/foo/{*}', '/foo/bar/baz', false],
    ['/foo/{**}', '/foo/bar/baz', true],
    ['/foo/{**}', '/foo/', true],
    ['/foo/{*}/x', '/foo/a/x', true],
    ['/a.b/{*}', '/aXb/c', false],
    ['/{*}/{**}', '/a/b/c', true],
  ];
  for (const [p, v, want] of cases) assert.equal(pathMatcher(p)(v), want, `${p} ~ ${v}`);
});

test('compiled regexes are cached up to a limit; evicted or kept, the answers are the same', () => {
  const peer = 'cluster.local/ns/shop/sa/web';
  // Used all along, between the patterns that push the caches past their limit.
  const hotPath = '/hot/{*}';
  const hotNs = 'sh*p';
  for (let i = 0; i < REGEX_CACHE_LIMIT + 500; i++) {
    assert.equal(pathMatcher(`/api/${i}/{*}`)(`/api/${i}/x`), true);
    assert.equal(pathMatcher(`/api/${i}/{*}`)(`/api/${i}/x/y`), false);
    assert.equal(namespaceMatcher(`ns-${i}-*`)(peer), false);
    assert.equal(namespaceMatcher(`ns-${i}-*`)(`cluster.local/ns/ns-${i}-a/sa/x`), true);
    assert.equal(pathMatcher(hotPath)('/hot/1'), true);
    assert.equal(namespaceMatcher(hotNs)(peer), true);
  }
  assert.deepEqual(cachedRegexCounts(), {
    templates: REGEX_CACHE_LIMIT,
    namespaces: REGEX_CACHE_LIMIT,
  });
  // An evicted pattern is compiled again, to the same answers.
  assert.equal(pathMatcher('/api/0/{*}')('/api/0/x'), true);
  assert.equal(pathMatcher('/api/0/{*}')('/api/0/'), false);
  assert.equal(namespaceMatcher('ns-0-*')('cluster.local/ns/ns-0-a/sa/x'), true);
  assert.equal(namespaceMatcher('ns-0-*')(peer), false);
  assert.equal(pathMatcher(hotPath)('/hot/a/b'), false);
  assert.deepEqual(cachedRegexCounts(), {
    templates: REGEX_CACHE_LIMIT,
    namespaces: REGEX_CACHE_LIMIT,
  });
});

test('requestPrincipals split iss/sub at the last slash', () => {
  assert.equal(
    matchRequestPrincipal(
      'https://issuer.example.com/path/user1',
      'https://issuer.example.com/path',
      'user1',
    ),
    true,
  );
  assert.equal(matchRequestPrincipal('iss/*', 'iss', ''), false);
  assert.equal(matchRequestPrincipal('*/user1', 'anything', 'user1'), true);
});

test('IPs and CIDRs as Go netip parses them, matched per family', () => {
  assert.equal(parseIp('010.0.0.1'), null);
  assert.equal(parseIp('1.2.3.256'), null);
  assert.ok(parseIp('2001:db8::1'));
  assert.ok(parseIp('::ffff:10.0.0.1'));
  assert.equal(parseCidr('10.0.0.0/33'), null);
  assert.equal(cidrContains(parseCidr('10.0.0.0/8')!, parseIp('10.255.1.2')!), true);
  assert.equal(cidrContains(parseCidr('10.0.0.0/8')!, parseIp('11.0.0.1')!), false);
  assert.equal(cidrContains(parseCidr('2001:db8::/32')!, parseIp('2001:db8:ffff::1')!), true);
  assert.equal(cidrContains(parseCidr('0.0.0.0/0')!, parseIp('::1')!), false);
});
