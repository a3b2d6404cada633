// AuthorizationPolicy evaluation, table-driven. Each case names the Istio page or code it follows:
//  [AP]   istio.io/latest/docs/reference/config/security/authorization-policy/
//  [CON]  istio.io/latest/docs/concepts/security/#authorization-policies (the concept page)
//  [COND] istio.io/latest/docs/reference/config/security/conditions/
//  [TCP]  istio.io/latest/docs/tasks/security/authorization/authz-tcp/ and model.checkError
//  [DRY]  istio.io/latest/docs/tasks/security/authorization/authz-dry-run/
//  [EXT]  istio.io/latest/docs/tasks/security/authorization/authz-custom/ and builder/extauthz.go
//  [GEN]  pilot/pkg/security/authz/model generator.go / model.go; [BLD] authz/builder/builder.go
//  [TD]   istio.io/latest/docs/tasks/security/authorization/authz-td-migration/
//  [SEL]  pilot/pkg/model authorization.go and policyattachment.go getPolicyMatcher
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { isCastellanError } from '../../src/errors.js';
import { decide } from '../../src/policy/decision.js';
import { parseRequest } from '../../src/policy/request.js';
import { ap, bundleOf, decideCase, HTTPBIN, ra, request, type Case } from './helpers.js';

const http = (o: Record<string, unknown>): Record<string, unknown> =>
  request({
    http: { method: 'GET', path: '/headers', host: 'httpbin.foo:8000', headers: {}, ...o },
  });
const tcp = (o: Record<string, unknown> = {}): Record<string, unknown> =>
  request({ protocol: 'TCP', port: 9000, http: undefined, ...o });
const plain = request({ tls: 'plaintext', source: { ip: '10.0.0.5' } });
const jwt = (claims: Record<string, unknown>, valid = true): Record<string, unknown> =>
  request({ jwt: { valid, claims } });

interface Row {
  readonly name: string;
  readonly c: Case;
  readonly decision: 'ALLOW' | 'DENY';
  readonly stage: string;
  readonly policy?: string | null;
  readonly rule?: number | null;
}

const allowOnly = (rule: string): string => ap('foo', 'allow', `{rules: [${rule}]}`);

const rows: Row[] = [
  {
    name: '[AP] no policy: allow (stage default)',
    c: { policies: '' },
    decision: 'ALLOW',
    stage: 'default',
    policy: null,
  },
  {
    name: '[AP] `spec: {}` allows nothing',
    c: { policies: ap('foo', 'allow-nothing', '{}') },
    decision: 'DENY',
    stage: 'allow',
    policy: null,
  },
  {
    name: '[AP] `rules: [{}]` allows everything',
    c: { policies: ap('foo', 'allow-all', '{rules: [{}]}') },
    decision: 'ALLOW',
    stage: 'allow',
    policy: 'foo/allow-all',
    rule: 0,
  },
  {
    name: '[AP] ALLOW present, none matching: deny',
    c: { policies: allowOnly('{to: [{operation: {methods: [POST]}}]}') },
    decision: 'DENY',
    stage: 'allow',
    policy: null,
  },
  {
    name: '[CON] DENY is evaluated before ALLOW',
    c: {
      policies:
        ap('foo', 'allow-all', '{rules: [{}]}') +
        ap('foo', 'deny-get', '{action: DENY, rules: [{to: [{operation: {methods: [GET]}}]}]}'),
    },
    decision: 'DENY',
    stage: 'deny',
    policy: 'foo/deny-get',
    rule: 0,
  },
  {
    name: '[AP] a DENY without rules is invalid and never matches',
    c: { policies: ap('foo', 'deny-nothing', '{action: DENY}') },
    decision: 'ALLOW',
    stage: 'default',
  },
  {
    name: '[AP] rules are ORed: the second rule matches',
    c: {
      policies: allowOnly(
        '{to: [{operation: {methods: [POST]}}]}, {to: [{operation: {paths: [/headers]}}]}',
      ),
    },
    decision: 'ALLOW',
    stage: 'allow',
    policy: 'foo/allow',
    rule: 1,
  },
  {
    name: '[AP] from and to are ANDed: right source, wrong operation',
    c: {
      policies: allowOnly(
        '{from: [{source: {principals: [cluster.local/ns/bar/sa/sleep]}}], to: [{operation: {methods: [POST]}}]}',
      ),
    },
    decision: 'DENY',
    stage: 'allow',
  },
  {
    name: '[AP] fields in one source are ANDed: principal matches, namespace does not',
    c: {
      policies: allowOnly(
        '{from: [{source: {principals: [cluster.local/ns/bar/sa/sleep], namespaces: [ops]}}]}',
      ),
    },
    decision: 'DENY',
    stage: 'allow',
  },
  {
    name: '[AP] entries of `from` are ORed: the second source matches',
    c: {
      policies: allowOnly('{from: [{source: {namespaces: [ops]}}, {source: {namespaces: [bar]}}]}'),
    },
    decision: 'ALLOW',
    stage: 'allow',
  },
  {
    name: '[AP] values are ORed within a field',
    c: { policies: allowOnly('{to: [{operation: {methods: [POST, GET]}}]}') },
    decision: 'ALLOW',
    stage: 'allow',
  },
  {
    name: '[AP] notPaths negates: /headers excluded',
    c: { policies: allowOnly('{to: [{operation: {notPaths: [/headers]}}]}') },
    decision: 'DENY',
    stage: 'allow',
  },
  {
    name: '[AP] prefix match `/head*`',
    c: { policies: allowOnly('{to: [{operation: {paths: ["/head*"]}}]}') },
    decision: 'ALLOW',
    stage: 'allow',
  },
  {
    name: '[AP] suffix match `*ers` on paths; query string ignored (Envoy url_path)',
    c: {
      policies: allowOnly('{to: [{operation: {paths: ["*ers"]}}]}'),
      request: http({ path: '/headers?a=b' }),
    },
    decision: 'ALLOW',
    stage: 'allow',
  },
  {
    name: '[AP] hosts are case-insensitive',
    c: { policies: allowOnly('{to: [{operation: {hosts: ["HTTPBIN.foo:8000"]}}]}') },
    decision: 'ALLOW',
    stage: 'allow',
  },
  {
    name: '[AP] hosts: an exact host without the port does not match `host:port`',
    c: { policies: allowOnly('{to: [{operation: {hosts: ["httpbin.foo"]}}]}') },
    decision: 'DENY',
    stage: 'allow',
  },
  {
    name: '[AP] path template `{*}` matches one segment',
    c: {
      policies: allowOnly('{to: [{operation: {paths: ["/status/{*}"]}}]}'),
      request: http({ path: '/status/200' }),
    },
    decision: 'ALLOW',
    stage: 'allow',
  },
  {
    name: '[AP] path template `{*}` does not cross a `/`',
    c: {
      policies: allowOnly('{to: [{operation: {paths: ["/status/{*}"]}}]}'),
      request: http({ path: '/status/200/x' }),
    },
    decision: 'DENY',
    stage: 'allow',
  },
  {
    name: '[AP] path template `{**}` matches several segments',
    c: {
      policies: allowOnly('{to: [{operation: {paths: ["/api/{**}"]}}]}'),
      request: http({ path: '/api/v1/users/7' }),
    },
    decision: 'ALLOW',
    stage: 'allow',
  },
  {
    name: '[AP] presence `*` on principals does not match plaintext (no identity)',
    c: { policies: allowOnly('{from: [{source: {principals: ["*"]}}]}'), request: plain },
    decision: 'DENY',
    stage: 'allow',
  },
  {
    name: '[AP] plaintext: notPrincipals always matches, so this DENY denies plaintext',
    c: {
      policies: ap(
        'foo',
        'require-mtls',
        '{action: DENY, rules: [{from: [{source: {notPrincipals: ["*"]}}]}]}',
      ),
      request: plain,
    },
    decision: 'DENY',
    stage: 'deny',
    policy: 'foo/require-mtls',
  },
  {
    name: '[AP] plaintext: `namespaces` never matches even when the input claims the namespace',
    c: {
      policies: allowOnly('{from: [{source: {namespaces: [bar]}}]}'),
      request: request({
        tls: 'plaintext',
        source: { principal: 'cluster.local/ns/bar/sa/sleep', namespace: 'bar' },
      }),
    },
    decision: 'DENY',
    stage: 'allow',
  },
  {
    name: '[GEN] namespaces come from the principal `/ns/<ns>/`, not from a claimed namespace',
    c: {
      policies: allowOnly('{from: [{source: {namespaces: [ops]}}]}'),
      request: request({
        source: { principal: 'cluster.local/ns/bar/sa/sleep', namespace: 'ops' },
      }),
    },
    decision: 'DENY',
    stage: 'allow',
  },
  {
    name: '[GEN] namespaces with a wildcard `ba*`',
    c: { policies: allowOnly('{from: [{source: {namespaces: ["ba*"]}}]}') },
    decision: 'ALLOW',
    stage: 'allow',
  },
  {
    name: '[GEN] principals suffix `*/ns/bar/sa/sleep` matches any trust domain',
    c: {
      policies: allowOnly('{from: [{source: {principals: ["*/ns/bar/sa/sleep"]}}]}'),
      request: request({ source: { principal: 'other.td/ns/bar/sa/sleep' } }),
    },
    decision: 'ALLOW',
    stage: 'allow',
  },
  {
    name: '[TD] trust-domain aliases: a policy naming old-td matches a peer of the new trust domain',
    c: {
      mesh: { trustDomain: 'new-td', trustDomainAliases: ['old-td'] },
      policies: allowOnly('{from: [{source: {principals: ["old-td/ns/bar/sa/sleep"]}}]}'),
      request: request({ source: { principal: 'new-td/ns/bar/sa/sleep' } }),
    },
    decision: 'ALLOW',
    stage: 'allow',
  },
  {
    name: '[TD] `cluster.local` in a policy stands for the local trust domain',
    c: {
      mesh: { trustDomain: 'new-td' },
      policies: allowOnly('{from: [{source: {principals: ["cluster.local/ns/bar/sa/sleep"]}}]}'),
      request: request({ source: { principal: 'new-td/ns/bar/sa/sleep' } }),
    },
    decision: 'ALLOW',
    stage: 'allow',
  },
  {
    name: '[TD] without an alias, another trust domain does not match',
    c: {
      mesh: { trustDomain: 'new-td' },
      policies: allowOnly('{from: [{source: {principals: ["old-td/ns/bar/sa/sleep"]}}]}'),
      request: request({ source: { principal: 'new-td/ns/bar/sa/sleep' } }),
    },
    decision: 'DENY',
    stage: 'allow',
  },
  {
    name: '[AP] requestPrincipals `iss/sub` from a valid token',
    c: {
      policies:
        allowOnly('{from: [{source: {requestPrincipals: ["issuer@example.com/user1"]}}]}') +
        ra('foo', 'jwt', ['issuer@example.com']),
      request: jwt({ iss: 'issuer@example.com', sub: 'user1' }),
    },
    decision: 'ALLOW',
    stage: 'allow',
  },
  {
    name: '[AP] requestPrincipals `*` needs a token',
    c: { policies: allowOnly('{from: [{source: {requestPrincipals: ["*"]}}]}') },
    decision: 'DENY',
    stage: 'allow',
  },
  {
    name: '[CON] a presented token that is not valid is rejected at stage jwt',
    c: { policies: ra('foo', 'jwt', ['x']), request: jwt({ iss: 'x', sub: 'y' }, false) },
    decision: 'DENY',
    stage: 'jwt',
    policy: null,
  },
  {
    name: '[COND] request.headers[x-token]',
    c: {
      policies: allowOnly('{when: [{key: "request.headers[X-Token]", values: [abc]}]}'),
      request: http({ headers: { 'x-token': 'abc' } }),
    },
    decision: 'ALLOW',
    stage: 'allow',
  },
  {
    name: '[COND] request.headers presence `*` needs the header',
    c: { policies: allowOnly('{when: [{key: "request.headers[x-token]", values: ["*"]}]}') },
    decision: 'DENY',
    stage: 'allow',
  },
  {
    name: '[COND] source.ip CIDR',
    c: { policies: allowOnly('{when: [{key: source.ip, values: ["10.0.0.0/24"]}]}') },
    decision: 'ALLOW',
    stage: 'allow',
  },
  {
    name: '[COND] remote.ip uses the original client address',
    c: {
      policies: allowOnly('{when: [{key: remote.ip, values: ["203.0.113.0/24"]}]}'),
      request: request({ remoteIp: '203.0.113.7' }),
    },
    decision: 'ALLOW',
    stage: 'allow',
  },
  {
    name: '[AP] ipBlocks is the direct peer address, not remoteIp',
    c: {
      policies: allowOnly('{from: [{source: {ipBlocks: ["203.0.113.7"]}}]}'),
      request: request({ remoteIp: '203.0.113.7' }),
    },
    decision: 'DENY',
    stage: 'allow',
  },
  {
    name: '[COND] source.namespace notValues',
    c: { policies: allowOnly('{when: [{key: source.namespace, notValues: [bar]}]}') },
    decision: 'DENY',
    stage: 'allow',
  },
  {
    name: '[COND] source.principal',
    c: {
      policies: allowOnly(
        '{when: [{key: source.principal, values: ["cluster.local/ns/bar/sa/sleep"]}]}',
      ),
    },
    decision: 'ALLOW',
    stage: 'allow',
  },
  {
    name: '[COND] request.auth.principal',
    c: {
      policies:
        allowOnly('{when: [{key: request.auth.principal, values: ["iss1/*"]}]}') +
        ra('foo', 'jwt', ['iss1']),
      request: jwt({ iss: 'iss1', sub: 'u' }),
    },
    decision: 'ALLOW',
    stage: 'allow',
  },
  {
    name: '[COND] request.auth.audiences against a list-valued aud',
    c: {
      policies:
        allowOnly('{when: [{key: request.auth.audiences, values: [svc-b]}]}') +
        ra('foo', 'jwt', ['i']),
      request: jwt({ iss: 'i', sub: 's', aud: ['svc-a', 'svc-b'] }),
    },
    decision: 'ALLOW',
    stage: 'allow',
  },
  {
    name: '[COND] request.auth.presenter (azp)',
    c: {
      policies:
        allowOnly('{when: [{key: request.auth.presenter, values: ["web*"]}]}') +
        ra('foo', 'jwt', ['i']),
      request: jwt({ iss: 'i', sub: 's', azp: 'webapp' }),
    },
    decision: 'ALLOW',
    stage: 'allow',
  },
  {
    name: '[COND] request.auth.claims[groups] matches one element of a list',
    c: {
      policies:
        allowOnly('{when: [{key: "request.auth.claims[groups]", values: [group1]}]}') +
        ra('foo', 'jwt', ['i']),
      request: jwt({ iss: 'i', sub: 's', groups: ['group1', 'group2'] }),
    },
    decision: 'ALLOW',
    stage: 'allow',
  },
  {
    name: '[COND] nested claims request.auth.claims[realm][role]',
    c: {
      policies:
        allowOnly('{when: [{key: "request.auth.claims[realm][role]", values: [admin]}]}') +
        ra('foo', 'jwt', ['i']),
      request: jwt({ iss: 'i', sub: 's', realm: { role: 'admin' } }),
    },
    decision: 'ALLOW',
    stage: 'allow',
  },
  {
    name: '[COND] destination.ip',
    c: {
      policies: allowOnly('{when: [{key: destination.ip, values: ["10.1.0.0/16"]}]}'),
      request: request({ destinationIp: '10.1.2.3' }),
    },
    decision: 'ALLOW',
    stage: 'allow',
  },
  {
    name: '[COND] destination.port',
    c: { policies: allowOnly('{when: [{key: destination.port, values: ["9000"]}]}') },
    decision: 'DENY',
    stage: 'allow',
  },
  {
    name: '[COND] connection.sni',
    c: {
      policies: allowOnly('{when: [{key: connection.sni, values: ["*.foo.svc.cluster.local"]}]}'),
      request: request({ sni: 'outbound_.8000_._.httpbin.foo.svc.cluster.local' }),
    },
    decision: 'ALLOW',
    stage: 'allow',
  },
  {
    name: '[AP] serviceAccounts <namespace>/<name> matches the peer identity',
    c: { policies: allowOnly('{from: [{source: {serviceAccounts: ["bar/sleep"]}}]}') },
    decision: 'ALLOW',
    stage: 'allow',
  },
  {
    name: "[AP] a bare serviceAccounts name is in the policy's namespace",
    c: { policies: allowOnly('{from: [{source: {serviceAccounts: ["sleep"]}}]}') },
    decision: 'DENY',
    stage: 'allow',
    policy: null,
  },
  {
    name: '[TCP] an ALLOW rule with an HTTP-only field is dropped on TCP',
    c: {
      policies: allowOnly('{to: [{operation: {methods: [GET], ports: ["9000"]}}]}'),
      request: tcp(),
    },
    decision: 'DENY',
    stage: 'allow',
    policy: null,
  },
  {
    name: '[TCP] a TCP-only ALLOW rule applies to TCP',
    c: { policies: allowOnly('{to: [{operation: {ports: ["9000"]}}]}'), request: tcp() },
    decision: 'ALLOW',
    stage: 'allow',
  },
  {
    name: '[TCP] in a DENY rule the HTTP-only field is ignored: the rule denies all TCP on the port',
    c: {
      policies: ap(
        'foo',
        'deny-post',
        '{action: DENY, rules: [{to: [{operation: {methods: [POST], ports: ["9000"]}}]}]}',
      ),
      request: tcp(),
    },
    decision: 'DENY',
    stage: 'deny',
    policy: 'foo/deny-post',
  },
  {
    name: '[TCP] the same DENY rule on HTTP needs the method',
    c: {
      policies: ap(
        'foo',
        'deny-post',
        '{action: DENY, rules: [{to: [{operation: {methods: [POST], ports: ["8000"]}}]}]}',
      ),
    },
    decision: 'ALLOW',
    stage: 'default',
  },
  {
    name: '[AP] AUDIT never decides',
    c: { policies: ap('foo', 'audit-all', '{action: AUDIT, rules: [{}]}') },
    decision: 'ALLOW',
    stage: 'default',
  },
  {
    name: '[DRY] a dry-run DENY is not enforced',
    c: { policies: ap('foo', 'dry', '{action: DENY, rules: [{}]}', '{istio.io/dry-run: "true"}') },
    decision: 'ALLOW',
    stage: 'default',
  },
  {
    name: '[DRY] a dry-run ALLOW does not make the workload deny-by-default',
    c: {
      policies: ap(
        'foo',
        'dry',
        '{rules: [{to: [{operation: {methods: [POST]}}]}]}',
        '{istio.io/dry-run: "true"}',
      ),
    },
    decision: 'ALLOW',
    stage: 'default',
  },
  {
    name: '[DRY] an unparseable dry-run value is false for istiod: the DENY is enforced',
    c: { policies: ap('foo', 'dry', '{action: DENY, rules: [{}]}', '{istio.io/dry-run: "yes"}') },
    decision: 'DENY',
    stage: 'deny',
    policy: 'foo/dry',
  },
  {
    name: '[SEL] a root-namespace policy applies in every namespace',
    c: {
      policies: ap(
        'istio-system',
        'global-deny',
        '{action: DENY, selector: {matchLabels: {app: httpbin}}, rules: [{}]}',
      ),
    },
    decision: 'DENY',
    stage: 'deny',
    policy: 'istio-system/global-deny',
  },
  {
    name: '[SEL] a policy of another namespace does not apply',
    c: { policies: ap('bar', 'deny', '{action: DENY, rules: [{}]}') },
    decision: 'ALLOW',
    stage: 'default',
  },
  {
    name: '[SEL] a selector that does not match does not apply',
    c: {
      policies: ap(
        'foo',
        'deny',
        '{action: DENY, selector: {matchLabels: {app: other}}, rules: [{}]}',
      ),
    },
    decision: 'ALLOW',
    stage: 'default',
  },
  {
    name: '[SEL] targetRefs never apply to a sidecar',
    c: {
      policies: ap(
        'foo',
        'gw',
        '{action: DENY, targetRefs: [{group: gateway.networking.k8s.io, kind: Gateway, name: httpbin}], rules: [{}]}',
      ),
    },
    decision: 'ALLOW',
    stage: 'default',
  },
  {
    name: '[SEL] targetRefs apply to the Gateway API gateway they name',
    c: {
      policies: ap(
        'foo',
        'gw',
        '{action: DENY, targetRefs: [{group: gateway.networking.k8s.io, kind: Gateway, name: my-gw}], rules: [{}]}',
      ),
      workload: {
        ...HTTPBIN,
        kind: 'gateway',
        labels: { 'gateway.networking.k8s.io/gateway-name': 'my-gw' },
      },
    },
    decision: 'DENY',
    stage: 'deny',
    policy: 'foo/gw',
  },
  {
    name: '[BLD] an ALLOW rule with a bad IP is skipped, the policy still denies by default',
    c: { policies: allowOnly('{from: [{source: {ipBlocks: ["10.0.0.300"]}}]}') },
    decision: 'DENY',
    stage: 'allow',
    policy: null,
  },
  {
    name: '[BLD] a bad IP value in a DENY rule is ignored: the rule gets wider',
    c: {
      policies: ap(
        'foo',
        'deny',
        '{action: DENY, rules: [{from: [{source: {ipBlocks: ["not-an-ip"]}}]}]}',
      ),
    },
    decision: 'DENY',
    stage: 'deny',
    policy: 'foo/deny',
  },
  {
    name: '[BLD] a rule with an unknown `when` key is skipped (even in DENY), so this DENY never matches',
    c: {
      policies: ap(
        'foo',
        'deny',
        '{action: DENY, rules: [{when: [{key: request.bogus, values: [x]}]}]}',
      ),
    },
    decision: 'ALLOW',
    stage: 'default',
    policy: null,
  },
  {
    name: '[BLD] the matching rule reported is the first in Envoy order (policy name map)',
    c: {
      policies:
        ap('foo', 'b', '{action: DENY, rules: [{}]}') +
        ap('foo', 'a', '{action: DENY, rules: [{to: [{operation: {methods: [PUT]}}]}, {}]}'),
    },
    decision: 'DENY',
    stage: 'deny',
    policy: 'foo/a',
    rule: 1,
  },
];

for (const row of rows) {
  test(row.name, () => {
    const d = decideCase(row.c);
    assert.equal(d.decision, row.decision, d.reason);
    assert.equal(d.stage, row.stage, d.reason);
    if (row.policy !== undefined) assert.equal(d.policy, row.policy, d.reason);
    if (row.rule !== undefined) assert.equal(d.rule, row.rule, d.reason);
  });
}

test('[BLD] one bundle decides many requests, each on its own attributes', () => {
  // The matchers are built once per bundle rule; they must not carry anything of a request.
  const b = bundleOf({
    policies:
      allowOnly(
        '{from: [{source: {ipBlocks: ["10.0.0.0/24"]}}], to: [{operation: {ports: ["8000"]}}]}',
      ) +
      ap(
        'foo',
        'deny-post',
        '{action: DENY, rules: [{to: [{operation: {methods: [POST], ports: ["9000"]}}]}]}',
      ),
  });
  const ask = (o: Record<string, unknown>): string => {
    const d = decide(b, parseRequest(request(o)));
    return `${d.decision}/${d.stage}`;
  };
  const inside = { source: { principal: 'cluster.local/ns/bar/sa/sleep', ip: '10.0.0.5' } };
  const outside = { source: { principal: 'cluster.local/ns/bar/sa/sleep', ip: '10.0.1.5' } };
  const tcpIn = { ...inside, protocol: 'TCP', port: 9000, http: undefined };
  assert.deepEqual(
    [ask(inside), ask(outside), ask(tcpIn), ask(inside), ask(tcpIn), ask(outside)],
    ['ALLOW/allow', 'DENY/allow', 'DENY/deny', 'ALLOW/allow', 'DENY/deny', 'DENY/allow'],
  );
});

const custom = (provider: string, rule = '{to: [{operation: {paths: ["/admin*"]}}]}'): string =>
  ap('foo', 'ext', `{action: CUSTOM, provider: {name: ${provider}}, rules: [${rule}]}`);
const providers = {
  extensionProviders: [
    { name: 'grpc-authz', envoyExtAuthzGrpc: { service: 'ext.foo.svc.cluster.local', port: 9000 } },
    { name: 'http-authz', envoyExtAuthzHttp: { service: 'ext.foo.svc.cluster.local', port: 8000 } },
  ],
};

test('[EXT] CUSTOM matches and the provider denies: DENY at stage custom', () => {
  const d = decideCase({
    mesh: providers,
    policies: custom('grpc-authz'),
    request: request({
      http: { method: 'GET', path: '/admin/x' },
      externalAuthorizer: { decision: 'deny' },
    }),
  });
  assert.deepEqual([d.decision, d.stage, d.policy, d.rule], ['DENY', 'custom', 'foo/ext', 0]);
});

test('[EXT] CUSTOM is evaluated first; the provider allows, then DENY still applies', () => {
  const d = decideCase({
    mesh: providers,
    policies: custom('grpc-authz') + ap('foo', 'deny-all', '{action: DENY, rules: [{}]}'),
    request: request({
      http: { method: 'GET', path: '/admin/x' },
      externalAuthorizer: { decision: 'allow' },
    }),
  });
  assert.deepEqual([d.decision, d.stage, d.policy], ['DENY', 'deny', 'foo/deny-all']);
});

test('[EXT] a CUSTOM match without the provider answer is unusable input', () => {
  assert.throws(
    () =>
      decideCase({
        mesh: providers,
        policies: custom('grpc-authz'),
        request: request({ http: { method: 'GET', path: '/admin' } }),
      }),
    (e) =>
      isCastellanError(e, 'invalid-argument') && e.message.includes('request.externalAuthorizer'),
  );
});

test('[EXT] CUSTOM not matching: the provider is not asked', () => {
  const d = decideCase({ mesh: providers, policies: custom('grpc-authz') });
  assert.deepEqual([d.decision, d.stage], ['ALLOW', 'default']);
});

test('[EXT] an unknown provider: istiod denies matching requests', () => {
  const d = decideCase({
    mesh: providers,
    policies: custom('nope'),
    request: request({ http: { method: 'GET', path: '/admin' } }),
  });
  assert.deepEqual([d.decision, d.stage, d.policy], ['DENY', 'custom', 'foo/ext']);
  assert.ok(
    bundleOf({ mesh: providers, policies: custom('nope') }).diagnostics.some((x) =>
      x.message.includes('"nope"'),
    ),
  );
});

test('[EXT] two providers on one workload: istiod denies requests matching either', () => {
  const d = decideCase({
    mesh: providers,
    policies:
      custom('grpc-authz') +
      ap(
        'foo',
        'ext2',
        '{action: CUSTOM, provider: {name: http-authz}, rules: [{to: [{operation: {paths: ["/other"]}}]}]}',
      ),
    request: request({
      http: { method: 'GET', path: '/other' },
      externalAuthorizer: { decision: 'allow' },
    }),
  });
  assert.deepEqual([d.decision, d.stage, d.policy], ['DENY', 'custom', 'foo/ext2']);
});

test('[EXT] an HTTP ext_authz provider is not configured on TCP: CUSTOM does not apply', () => {
  const d = decideCase({
    mesh: providers,
    policies: custom('http-authz', '{to: [{operation: {ports: ["9000"]}}]}'),
    request: tcp(),
  });
  assert.deepEqual([d.decision, d.stage], ['ALLOW', 'default']);
});

test('[EXT] a gRPC ext_authz provider works on TCP', () => {
  const d = decideCase({
    mesh: providers,
    policies: custom('grpc-authz', '{to: [{operation: {ports: ["9000"]}}]}'),
    request: tcp({ externalAuthorizer: { decision: 'deny' } }),
  });
  assert.deepEqual([d.decision, d.stage], ['DENY', 'custom']);
});

test('[AP] AUDIT matches are reported, not decisive', () => {
  const d = decideCase({
    policies: ap(
      'foo',
      'audit-get',
      '{action: AUDIT, rules: [{to: [{operation: {methods: [GET]}}]}]}',
    ),
  });
  assert.deepEqual(d.audit, [{ policy: 'foo/audit-get', rule: 0 }]);
});

test('[DRY] dry-run results are reported with what they would have done', () => {
  const d = decideCase({
    policies:
      ap(
        'foo',
        'dry-deny',
        '{action: DENY, rules: [{to: [{operation: {methods: [GET]}}]}]}',
        '{istio.io/dry-run: "true"}',
      ) +
      ap(
        'foo',
        'dry-allow',
        '{rules: [{to: [{operation: {methods: [POST]}}]}]}',
        '{istio.io/dry-run: "true"}',
      ),
  });
  assert.deepEqual(
    d.dryRun.map((r) => [r.action, r.wouldBe, r.policy, r.rule]),
    [
      ['DENY', 'DENY', 'foo/dry-deny', 0],
      ['ALLOW', 'DENY', null, null],
    ],
  );
  assert.deepEqual([d.decision, d.stage], ['ALLOW', 'default']);
});

test('[BLD] skipped rules and webhook failures become diagnostics naming the policy and field', () => {
  const b = bundleOf({
    policies:
      allowOnly('{from: [{source: {ipBlocks: ["10.0.0.300"]}}]}') +
      ap('foo', 'deny', '{action: DENY, rules: [{when: [{key: request.bogus, values: [x]}]}]}') +
      ap('foo', 'deny-none', '{action: DENY}'),
  });
  const find = (resource: string, field: string): boolean =>
    b.diagnostics.some(
      (d) => d.severity === 'error' && d.resource === resource && d.field === field,
    );
  assert.ok(
    find('AuthorizationPolicy foo/allow', 'spec.rules[0].from[0].source.ipBlocks'),
    JSON.stringify(b.diagnostics, null, 1),
  );
  assert.ok(find('AuthorizationPolicy foo/allow', 'spec.rules[0].from[0].source.ipBlocks.values'));
  assert.ok(find('AuthorizationPolicy foo/deny', 'spec.rules[0].when[0].key'));
  assert.ok(find('AuthorizationPolicy foo/deny-none', 'spec.rules'));
});

test('[BLD] a decision notes every applied policy with an error Istio refuses, even when another decides', () => {
  const d = decideCase({
    policies:
      ap('foo', 'deny', '{action: DENY, rules: [{from: [{source: {ipBlocks: ["not-an-ip"]}}]}]}') +
      ap('bar', 'elsewhere', '{action: DENY}'),
  });
  assert.deepEqual([d.decision, d.stage, d.policy], ['DENY', 'deny', 'foo/deny']);
  const invalid = d.notes.filter((n) => n.includes('has an error'));
  assert.ok(
    invalid.some((n) =>
      n.startsWith(
        'AuthorizationPolicy foo/deny has an error: spec.rules[0].from[0].source.ipBlocks: bad IP address or CIDR range (not-an-ip)',
      ),
    ),
    invalid.join('\n'),
  );
  assert.ok(!invalid.some((n) => n.includes('bar/elsewhere')), 'a policy not applied is not named');
  assert.deepEqual(
    decideCase({ policies: ap('foo', 'ok', '{rules: [{}]}') }).notes,
    [],
    'a valid policy adds no note',
  );
});
