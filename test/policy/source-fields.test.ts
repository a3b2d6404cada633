// Area 2: Source as istio/api ships it at HEAD (security/v1beta1/authorization_policy.proto),
// trust domains and service accounts, and the rules istiod applies to them.
//  [GEN]   istio/istio pilot/pkg/security/authz/model/generator.go (srcTrustDomainGenerator,
//          srcServiceAccountGenerator/serviceAccountRegex) and generator_test.go
//  [MODEL] pilot/pkg/security/authz/model/model.go (when keys, MigrateTrustDomain)
//  [TD]    pilot/pkg/security/trustdomain/bundle.go and bundle_test.go
//  [BLD]   pilot/pkg/security/authz/builder/testdata/http/trust-domains-in.yaml
//  [VAL]   pkg/config/validation/validation.go ValidateAuthorizationPolicy, pkg/config/security
//          security.go (CheckTrustDomainValues, CheckWildcardValues, CheckServiceAccount)
//  [CRD]   manifests/charts/base/files/crd-all.gen.yaml (CEL rules on Source)
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { lintResources } from '../../src/policy/evaluate.js';
import { parseMesh } from '../../src/policy/mesh.js';
import { parseManifestText } from '../../src/policy/documents.js';
import { parseResources } from '../../src/policy/parse-resources.js';
import { expandPrincipalAliases, expandTrustDomainValues } from '../../src/policy/trust-domain.js';
import { ap, decideCase, outcome, request, resources } from './helpers.js';

const from = (peer: string | null): Record<string, unknown> =>
  peer === null
    ? request({ tls: 'plaintext', source: { ip: '10.0.0.5' } })
    : request({ source: { principal: peer, ip: '10.0.0.5' } });
const allow = (source: string): string =>
  ap('foo', 'allow', `{rules: [{from: [{source: ${source}}]}]}`);
const allowWhen = (when: string): string => ap('foo', 'allow', `{rules: [{when: [${when}]}]}`);

test('[GEN] trustDomains: exact is a URI prefix spiffe://<td>/, `*` any peer, one wildcard never crosses a /', () => {
  const rows: [string, string | null, 'ALLOW' | 'DENY'][] = [
    ['{trustDomains: [cluster.local]}', 'cluster.local/ns/bar/sa/sleep', 'ALLOW'],
    ['{trustDomains: [cluster.local]}', 'cluster.localhost/ns/bar/sa/sleep', 'DENY'],
    ['{trustDomains: [cluster.local]}', 'other.td/ns/cluster.local/sa/x', 'DENY'],
    ['{trustDomains: ["cluster.*"]}', 'cluster.east/ns/bar/sa/sleep', 'ALLOW'],
    ['{trustDomains: ["cluster.*"]}', 'clusters/ns/bar/sa/sleep', 'DENY'],
    ['{trustDomains: ["*local"]}', 'east.local/ns/bar/sa/sleep', 'ALLOW'],
    ['{trustDomains: ["*local"]}', 'east.td/ns/local/sa/sleep', 'DENY'],
    ['{trustDomains: ["*"]}', 'any.td/ns/bar/sa/sleep', 'ALLOW'],
    ['{trustDomains: ["*"]}', null, 'DENY'],
    ['{trustDomains: [cluster.local]}', null, 'DENY'],
    ['{notTrustDomains: [cluster.local]}', 'cluster.local/ns/bar/sa/sleep', 'DENY'],
    ['{notTrustDomains: [cluster.local]}', 'partner.td/ns/bar/sa/sleep', 'ALLOW'],
    ['{notTrustDomains: [cluster.local]}', null, 'ALLOW'],
  ];
  for (const [source, peer, want] of rows) {
    const d = decideCase({ policies: allow(source), request: from(peer) });
    assert.equal(d.decision, want, `${source} from ${peer ?? 'plaintext'}: ${d.reason}`);
  }
});

test('[BLD] trust-domains-in.yaml: trustDomains [cluster.local, another.local] or notTrustDomains [bad*, untrusted]', () => {
  const policy = ap(
    'foo',
    'httpbin',
    `{selector: {matchLabels: {app: httpbin}}, rules: [{from: [
        {source: {trustDomains: [cluster.local, another.local]}},
        {source: {notTrustDomains: ["bad*", untrusted]}}]}]}`,
  );
  const rows: [string, 'ALLOW' | 'DENY'][] = [
    ['cluster.local/ns/bar/sa/sleep', 'ALLOW'],
    ['another.local/ns/bar/sa/sleep', 'ALLOW'],
    ['partner.td/ns/bar/sa/sleep', 'ALLOW'],
    ['bad.td/ns/bar/sa/sleep', 'DENY'],
    ['untrusted/ns/bar/sa/sleep', 'DENY'],
  ];
  for (const [peer, want] of rows) {
    assert.equal(decideCase({ policies: policy, request: from(peer) }).decision, want, peer);
  }
});

test('[MODEL][TD] trust-domain aliases: trustDomains expand only on exact equality; principals also from cluster.local', () => {
  const mesh = { trustDomain: 'new-td', trustDomainAliases: ['old-td'] };
  const rows: [string, string, 'ALLOW' | 'DENY'][] = [
    ['{trustDomains: [old-td]}', 'new-td/ns/bar/sa/sleep', 'ALLOW'],
    ['{trustDomains: [new-td]}', 'old-td/ns/bar/sa/sleep', 'ALLOW'],
    // cluster.local is no alias for trust domains (ExpandTrustDomainAliases)…
    ['{trustDomains: [cluster.local]}', 'new-td/ns/bar/sa/sleep', 'DENY'],
    // …but it is for principals (ReplaceTrustDomainAliases).
    ['{principals: [cluster.local/ns/bar/sa/sleep]}', 'new-td/ns/bar/sa/sleep', 'ALLOW'],
    ['{notTrustDomains: [old-td]}', 'new-td/ns/bar/sa/sleep', 'DENY'],
    ['{trustDomains: ["old*"]}', 'new-td/ns/bar/sa/sleep', 'DENY'],
  ];
  for (const [source, peer, want] of rows) {
    const d = decideCase({ mesh, policies: allow(source), request: from(peer) });
    assert.equal(d.decision, want, `${source} from ${peer}: ${d.reason}`);
  }
  assert.deepEqual(expandTrustDomainValues(['old-td', 'x', 'new-td'], ['new-td', 'old-td']), [
    'new-td',
    'old-td',
    'x',
  ]);
});

test('[TD] TestReplaceTrustDomainAliases, every case', () => {
  const rows: [string[], string[], string[]][] = [
    [['cluster.local'], ['cluster.local/ns/foo/sa/bar'], ['cluster.local/ns/foo/sa/bar']],
    [['cluster.local'], ['*'], ['*']],
    [['cluster.local'], ['*/ns/foo/sa/bar'], ['*/ns/foo/sa/bar']],
    [['td2', 'td1'], ['td1/ns/foo/sa/bar'], ['td2/ns/foo/sa/bar', 'td1/ns/foo/sa/bar']],
    [
      ['td1', 'cluster.local'],
      ['cluster.local/ns/foo/sa/bar', 'cluster.local/ns/yyy/sa/zzz'],
      [
        'td1/ns/foo/sa/bar',
        'cluster.local/ns/foo/sa/bar',
        'td1/ns/yyy/sa/zzz',
        'cluster.local/ns/yyy/sa/zzz',
      ],
    ],
    [
      ['td1', 'cluster.local'],
      ['*/ns/foo/sa/bar', '*sa/zzz', '*'],
      ['*/ns/foo/sa/bar', '*sa/zzz', '*'],
    ],
    [
      ['td2', 'td1', 'cluster.local'],
      ['cluster.local/ns/foo/sa/bar', 'td1/ns/yyy/sa/zzz'],
      [
        'td2/ns/foo/sa/bar',
        'td1/ns/foo/sa/bar',
        'cluster.local/ns/foo/sa/bar',
        'td2/ns/yyy/sa/zzz',
        'td1/ns/yyy/sa/zzz',
        'cluster.local/ns/yyy/sa/zzz',
      ],
    ],
    [
      ['td2', 'foo-td1', 'cluster.local'],
      ['*-td1/ns/foo/sa/bar'],
      ['td2/ns/foo/sa/bar', '*-td1/ns/foo/sa/bar', 'cluster.local/ns/foo/sa/bar'],
    ],
    [['td1', 'td2'], ['some-td/ns/foo/sa/bar'], ['some-td/ns/foo/sa/bar']],
    [
      ['td1', 'td2', 'some-td'],
      ['some-td/ns/foo/sa/bar'],
      ['td1/ns/foo/sa/bar', 'td2/ns/foo/sa/bar', 'some-td/ns/foo/sa/bar'],
    ],
    [
      ['new-td', 'td2', 'td3'],
      ['td1/ns/some-ns/sa/some-sa', 'td2/ns/foo/sa/bar'],
      [
        'td1/ns/some-ns/sa/some-sa',
        'new-td/ns/foo/sa/bar',
        'td2/ns/foo/sa/bar',
        'td3/ns/foo/sa/bar',
      ],
    ],
    [['new-td', 'td2', 'td3'], ['/ns/some-ns/sa/some-sa'], ['/ns/some-ns/sa/some-sa']],
    [['new-td', 'old-td'], ['*-td/ns/some-ns/sa/some-sa'], ['*-td/ns/some-ns/sa/some-sa']],
    // A prefix pattern matches a trust domain of the bundle, so it is replaced (util.go stringMatch).
    [
      ['new-td', 'old-td'],
      ['old*/ns/foo/sa/bar'],
      ['new-td/ns/foo/sa/bar', 'old-td/ns/foo/sa/bar'],
    ],
  ];
  for (const [tds, principals, want] of rows) {
    assert.deepEqual(
      expandPrincipalAliases(principals, tds),
      want,
      `${tds.join(',')} ${principals.join(',')}`,
    );
  }
});

test('[MODEL] source.trustDomain and source.serviceAccount are when keys (not skipped as unknown)', () => {
  const rows: [string, string, 'ALLOW' | 'DENY'][] = [
    [
      '{key: source.trustDomain, values: [cluster.local]}',
      'cluster.local/ns/bar/sa/sleep',
      'ALLOW',
    ],
    ['{key: source.trustDomain, values: ["*.td"]}', 'east.td/ns/bar/sa/sleep', 'ALLOW'],
    [
      '{key: source.trustDomain, notValues: [cluster.local]}',
      'cluster.local/ns/bar/sa/sleep',
      'DENY',
    ],
    ['{key: source.serviceAccount, values: [bar/sleep]}', 'cluster.local/ns/bar/sa/sleep', 'ALLOW'],
    // A bare name is a service account of the policy's namespace (foo).
    ['{key: source.serviceAccount, values: [sleep]}', 'cluster.local/ns/bar/sa/sleep', 'DENY'],
    ['{key: source.serviceAccount, values: [sleep]}', 'cluster.local/ns/foo/sa/sleep', 'ALLOW'],
  ];
  for (const [when, peer, want] of rows) {
    const d = decideCase({ policies: allowWhen(when), request: from(peer) });
    assert.equal(d.decision, want, `${when} from ${peer}: ${d.reason}`);
  }
});

test('[GEN] serviceAccounts: serviceAccountRegex spiffe://.+/ns/<ns>/(.+/|)sa/<sa>(/.+)?', () => {
  const rows: [string, string | null, 'ALLOW' | 'DENY'][] = [
    ['{serviceAccounts: [bar/sleep]}', 'cluster.local/ns/bar/sa/sleep', 'ALLOW'],
    ['{serviceAccounts: [bar/sleep]}', 'any.td/ns/bar/sa/sleep', 'ALLOW'],
    ['{serviceAccounts: [bar/sleep]}', 'cluster.local/ns/bar/sa/sleep-2', 'DENY'],
    ['{serviceAccounts: [bar/sleep]}', 'cluster.local/ns/bar/x/y/sa/sleep', 'ALLOW'],
    ['{serviceAccounts: [bar/sleep]}', 'cluster.local/ns/bar/sa/sleep/v/1', 'ALLOW'],
    ['{serviceAccounts: [bar/sleep]}', 'cluster.local/ns/barn/sa/sleep', 'DENY'],
    ['{serviceAccounts: ["b.r/sleep"]}', 'cluster.local/ns/bar/sa/sleep', 'DENY'],
    ['{serviceAccounts: [bar/sleep]}', null, 'DENY'],
    ['{serviceAccounts: [httpbin]}', 'cluster.local/ns/foo/sa/httpbin', 'ALLOW'],
    ['{notServiceAccounts: [bar/sleep]}', 'cluster.local/ns/bar/sa/sleep', 'DENY'],
    ['{notServiceAccounts: [bar/sleep]}', null, 'ALLOW'],
  ];
  for (const [source, peer, want] of rows) {
    const d = decideCase({ policies: allow(source), request: from(peer) });
    assert.equal(d.decision, want, `${source} from ${peer ?? 'plaintext'}: ${d.reason}`);
  }
});

function lint(yaml: string): string[] {
  const parsed = parseResources(parseManifestText(yaml, 'test.yaml'));
  return [...parsed.diagnostics, ...lintResources(parsed.resources, parseMesh(undefined))].map(
    (d) => `${d.severity} ${d.field}: ${d.message}`,
  );
}

test('[VAL][CRD] lint: trustDomains are known fields with their own value rules; serviceAccounts limits', () => {
  const rows: [string, RegExp | null][] = [
    ['{trustDomains: [cluster.local, "a*", "*b", "*"]}', null],
    [
      '{trustDomains: ["a*b"]}',
      /error .*trustDomains: wildcard is only allowed at the start or end/,
    ],
    ['{trustDomains: ["*a*"]}', /error .*trustDomains: at most one wildcard is allowed/],
    ['{notTrustDomains: ["td/ns"]}', /error .*notTrustDomains: trust domain must not contain '\/'/],
    [
      '{serviceAccounts: ["a/b/c"]}',
      /error .*serviceAccounts: expected format 'serviceAccount' or 'namespace\/serviceAccount'/,
    ],
    ['{serviceAccounts: ["ns/*"]}', /error .*serviceAccounts: wildcard not allowed/],
    ['{serviceAccounts: ["/sa"]}', /found empty namespace/],
    [
      '{serviceAccounts: [sa], principals: [x]}',
      /error .*source: Cannot set serviceAccounts with namespaces or principals; Kubernetes rejects it/,
    ],
    [
      `{serviceAccounts: [${Array.from({ length: 17 }, (_, i) => `s${i}`).join(', ')}]}`,
      /error .*serviceAccounts: at most 16 items/,
    ],
  ];
  for (const [source, want] of rows) {
    const found = lint(allow(source));
    if (want === null) {
      assert.deepEqual(
        found.filter((l) => !l.startsWith('warning')),
        [],
        source,
      );
      assert.ok(!found.some((l) => l.includes('unknown field')), source);
    } else {
      assert.ok(
        found.some((l) => want.test(l)),
        `${source}: ${found.join('\n')}`,
      );
    }
  }
  const when = lint(allowWhen('{key: source.trustDomain, values: ["a*b"]}'));
  assert.ok(
    when.some((l) =>
      /invalid `value` for `key` source.trustDomain: wildcard is only allowed/.test(l),
    ),
    when.join('\n'),
  );
  const custom = lint(
    ap(
      'foo',
      'ext',
      '{action: CUSTOM, provider: {name: x}, rules: [{from: [{source: {trustDomains: [a]}}], when: [{key: source.trustDomain, values: [a]}]}]}',
    ),
  );
  assert.ok(
    custom.some((l) => /trustDomains is currently not supported with CUSTOM action/.test(l)),
  );
  assert.ok(
    custom.some((l) => /source.trustDomain is currently not supported with CUSTOM action/.test(l)),
  );
});

test('[CRD] an ALLOW with trustDomains is never widened: a refused object is left out, the rest stays', () => {
  // Before trustDomains were known, Castellan dropped the field and this ALLOW let anyone in.
  const policies = allow('{trustDomains: [partner.td]}');
  assert.equal(resources(policies).length, 1);
  const rows: [string, string][] = [
    ['partner.td/ns/bar/sa/sleep', 'ALLOW/allow foo/allow'],
    ['cluster.local/ns/bar/sa/sleep', 'DENY/allow'],
  ];
  for (const [peer, want] of rows) {
    assert.equal(outcome(decideCase({ policies, request: from(peer) })), want, peer);
  }
});
