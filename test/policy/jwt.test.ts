// Area 3: JWT claims as Envoy's jwt_authn filter exposes them, under RequestAuthentication.
//  [AUTHN]  istio/istio pilot/pkg/security/authn/policy_applier.go (convertToEnvoyJwtConfig:
//           provider OR allow_missing, issuers sorted, buildSpaceDelimitedClaims,
//           ClaimToHeaders, BypassCorsPreflight)
//  [ENVOY]  envoy source/extensions/filters/http/jwt_authn/authenticator.cc (JwtUnknownIssuer,
//           JwtAudienceNotAllowed, setPayloadMetadata space-delimited split, addJWTClaimToHeader,
//           removeJwt unless forward)
//  [RA]     istio.io/latest/docs/reference/config/security/request_authentication/ and
//           docs/tasks/security/authentication/authn-policy (invalid token 401, none: no identity)
//  [ATTACH] pilot/pkg/model/authentication.go getConfigsForWorkload + policyattachment.go
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { splitSpaceDelimited } from '../../src/policy/request-authentication.js';
import { ap, decideCase, outcome, ra, request } from './helpers.js';

const ISS = 'https://issuer.example.com';
const token = (claims: Record<string, unknown>, extra: Record<string, unknown> = {}) =>
  request({
    jwt: { valid: true, claims: { iss: ISS, sub: 'user1', ...claims } },
    http: {
      method: 'GET',
      path: '/headers',
      host: 'httpbin.foo:8000',
      headers: { authorization: 'Bearer abc' },
      ...extra,
    },
  });
const allowWhen = (key: string, values: string): string =>
  ap('foo', 'allow', `{rules: [{when: [{key: "${key}", values: ${values}}]}]}`);

test('[AUTHN][ENVOY] scope and permission are split at spaces, always; other string claims are not', () => {
  const rows: [string, string, Record<string, unknown>, 'ALLOW' | 'DENY'][] = [
    ['request.auth.claims[scope]', '[read]', { scope: 'read write' }, 'ALLOW'],
    ['request.auth.claims[scope]', '[write]', { scope: 'read  write' }, 'ALLOW'],
    ['request.auth.claims[scope]', '["read write"]', { scope: 'read write' }, 'DENY'],
    ['request.auth.claims[permission]', '[admin]', { permission: 'user admin' }, 'ALLOW'],
    ['request.auth.claims[roles]', '[admin]', { roles: 'user admin' }, 'DENY'],
    ['request.auth.claims[roles]', '["user admin"]', { roles: 'user admin' }, 'ALLOW'],
    ['request.auth.claims[scope]', '[read]', { scope: ['read', 'write'] }, 'ALLOW'],
    // Only top-level claims are normalized.
    ['request.auth.claims[realm][scope]', '[read]', { realm: { scope: 'read write' } }, 'DENY'],
  ];
  for (const [key, values, claims, want] of rows) {
    const d = decideCase({
      policies: allowWhen(key, values) + ra('foo', 'jwt', [ISS]),
      request: token(claims),
    });
    assert.equal(d.decision, want, `${key} ${values} with ${JSON.stringify(claims)}: ${d.reason}`);
  }
});

test('[AUTHN] spaceDelimitedClaims add claims to split (scope and permission stay)', () => {
  const policies =
    allowWhen('request.auth.claims[roles]', '[admin]') +
    ra('foo', 'jwt', [ISS], 'spaceDelimitedClaims: [roles]');
  assert.equal(decideCase({ policies, request: token({ roles: 'user admin' }) }).decision, 'ALLOW');
  const scope =
    allowWhen('request.auth.claims[scope]', '[read]') +
    ra('foo', 'jwt', [ISS], 'spaceDelimitedClaims: [roles]');
  assert.equal(
    decideCase({ policies: scope, request: token({ scope: 'read write' }) }).decision,
    'ALLOW',
  );
  assert.deepEqual(splitSpaceDelimited({ scope: '   ', a: 'x y' }, ['scope', 'a']), {
    scope: '   ',
    a: ['x', 'y'],
  });
});

test('[RA][ENVOY] which tokens pass the filter: issuer, audiences, validity, absence', () => {
  const allowAny = ap('foo', 'allow', '{rules: [{from: [{source: {requestPrincipals: ["*"]}}]}]}');
  const rows: [string, Record<string, unknown>, string][] = [
    [ra('foo', 'jwt', [ISS]), token({}), 'ALLOW/allow foo/allow'],
    [ra('foo', 'jwt', ['https://other.example']), token({}), 'DENY/jwt'],
    [
      ra('foo', 'jwt', [ISS], 'audiences: [svc-a]'),
      token({ aud: 'svc-a' }),
      'ALLOW/allow foo/allow',
    ],
    [
      ra('foo', 'jwt', [ISS], 'audiences: [svc-a]'),
      token({ aud: ['x', 'svc-a'] }),
      'ALLOW/allow foo/allow',
    ],
    [ra('foo', 'jwt', [ISS], 'audiences: [svc-a]'), token({ aud: 'svc-b' }), 'DENY/jwt'],
    [ra('foo', 'jwt', [ISS], 'audiences: [svc-a]'), token({}), 'DENY/jwt'],
    // Two rules for the same issuer: the token passes if one accepts it.
    [
      ra('foo', 'a', [ISS], 'audiences: [svc-a]') + ra('foo', 'b', [ISS], 'audiences: [svc-b]'),
      token({ aud: 'svc-b' }),
      'ALLOW/allow foo/allow',
    ],
    [ra('foo', 'jwt', [ISS]), request({ jwt: { valid: false, claims: { iss: ISS } } }), 'DENY/jwt'],
    // No token: the request passes without an identity (allow_missing), and the ALLOW denies.
    [ra('foo', 'jwt', [ISS]), request(), 'DENY/allow'],
    // No RequestAuthentication: nothing verifies the token, so there is no identity either.
    ['', token({}), 'DENY/allow'],
    ['', request({ jwt: { valid: false, claims: {} } }), 'DENY/allow'],
  ];
  for (const [raYaml, req, want] of rows) {
    const d = decideCase({ policies: allowAny + raYaml, request: req });
    assert.equal(outcome(d), want, `${raYaml} ${JSON.stringify(req['jwt'])}: ${d.reason}`);
  }
  const unverified = decideCase({ policies: allowAny, request: token({}) });
  assert.ok(unverified.notes.some((n) => n.includes('no RequestAuthentication applies')));
  const unknown = decideCase({
    policies: ra('foo', 'jwt', ['https://other.example']),
    request: token({}),
  });
  assert.match(unknown.reason, /issuer "https:\/\/issuer.example.com" is in no jwtRules/);
});

test('[AUTHN] a CORS preflight bypasses JWT verification, even with a bad token', () => {
  const preflight = request({
    jwt: { valid: false, claims: {} },
    http: {
      method: 'OPTIONS',
      path: '/headers',
      host: 'httpbin.foo:8000',
      headers: { origin: 'https://app.example', 'access-control-request-method': 'POST' },
    },
  });
  assert.equal(
    outcome(decideCase({ policies: ra('foo', 'jwt', [ISS]), request: preflight })),
    'ALLOW/default',
  );
});

test('[ATTACH] RequestAuthentications attach like AuthorizationPolicies: namespace, root, selector', () => {
  const allowSub = ap(
    'foo',
    'allow',
    `{rules: [{from: [{source: {requestPrincipals: ["${ISS}/user1"]}}]}]}`,
  );
  const rows: [string, string][] = [
    [ra('foo', 'jwt', [ISS]), 'ALLOW/allow foo/allow'],
    [ra('istio-system', 'mesh-jwt', [ISS]), 'ALLOW/allow foo/allow'],
    [ra('bar', 'jwt', [ISS]), 'DENY/allow'],
    [
      ra('foo', 'jwt', [ISS]).replace('spec: {', 'spec: {selector: {matchLabels: {app: other}}, '),
      'DENY/allow',
    ],
    [
      ra('foo', 'jwt', [ISS]).replace(
        'spec: {',
        'spec: {targetRefs: [{group: gateway.networking.k8s.io, kind: Gateway, name: gw}], ',
      ),
      'DENY/allow',
    ],
  ];
  for (const [raYaml, want] of rows) {
    assert.equal(
      outcome(decideCase({ policies: allowSub + raYaml, request: token({}) })),
      want,
      raYaml,
    );
  }
});

test('[ENVOY] outputClaimToHeaders and outputPayloadToHeader are headers RBAC sees; the token header goes unless forwarded', () => {
  const claimRa = ra(
    'foo',
    'jwt',
    [ISS],
    'outputClaimToHeaders: [{header: x-jwt-group, claim: group}, {header: x-jwt-n, claim: n}]',
  );
  const rows: [string, string, Record<string, unknown>, 'ALLOW' | 'DENY'][] = [
    [claimRa, '{key: "request.headers[x-jwt-group]", values: [dev]}', { group: 'dev' }, 'ALLOW'],
    [claimRa, '{key: "request.headers[x-jwt-n]", values: ["42"]}', { n: 42 }, 'ALLOW'],
    [claimRa, '{key: "request.headers[x-jwt-group]", values: ["*"]}', {}, 'DENY'],
    [
      ra('foo', 'jwt', [ISS], 'outputPayloadToHeader: x-payload'),
      '{key: "request.headers[x-payload]", values: ["*"]}',
      {},
      'ALLOW',
    ],
    [ra('foo', 'jwt', [ISS]), '{key: "request.headers[authorization]", values: ["*"]}', {}, 'DENY'],
    [
      ra('foo', 'jwt', [ISS], 'forwardOriginalToken: true'),
      '{key: "request.headers[authorization]", values: ["Bearer *"]}',
      {},
      'ALLOW',
    ],
    [
      ra('foo', 'jwt', [ISS], 'fromHeaders: [{name: x-token}]'),
      '{key: "request.headers[authorization]", values: ["*"]}',
      {},
      'ALLOW',
    ],
  ];
  for (const [raYaml, when, claims, want] of rows) {
    const d = decideCase({
      policies: ap('foo', 'allow', `{rules: [{when: [${when}]}]}`) + raYaml,
      request: token(claims),
    });
    assert.equal(d.decision, want, `${when} with ${raYaml}: ${d.reason}`);
  }
});

test('[AUTHN] CUSTOM runs before request authentication: an ext_authz deny wins over a bad token', () => {
  const d = decideCase({
    mesh: {
      extensionProviders: [{ name: 'authz', envoyExtAuthzGrpc: { service: 'a.b', port: 9000 } }],
    },
    policies:
      ap('foo', 'ext', '{action: CUSTOM, provider: {name: authz}, rules: [{}]}') +
      ra('foo', 'jwt', [ISS]),
    request: request({
      jwt: { valid: false, claims: {} },
      externalAuthorizer: { decision: 'deny' },
    }),
  });
  assert.equal(outcome(d), 'DENY/custom foo/ext');
});

test('[RA] a described token without iss is taken as the first rule issuer, with a note', () => {
  const d = decideCase({
    policies:
      ap('foo', 'allow', `{rules: [{from: [{source: {requestPrincipals: ["${ISS}/user1"]}}]}]}`) +
      ra('foo', 'jwt', [ISS]),
    request: request({ jwt: { valid: true, claims: { sub: 'user1' } } }),
  });
  assert.equal(outcome(d), 'ALLOW/allow foo/allow');
  assert.ok(
    d.notes.some((n) => n.includes('has no iss claim')),
    d.notes.join('\n'),
  );
});
