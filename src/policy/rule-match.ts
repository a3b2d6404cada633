import { cidrContains, parseCidr, parseIp } from './ip-match.js';
import type { Constraint, RuleShape } from './normalize.js';
import type { JwtClaims, PolicyRequest } from './request.js';
import {
  matchHeader,
  matchHost,
  matchPrincipal,
  matchRequestPrincipal,
  matchString,
  namespaceMatcher,
  pathMatcher,
} from './string-match.js';

/** What the RBAC filter can see of one request. */
export interface MatchContext {
  readonly tcp: boolean;
  /** The peer identity from a verified client certificate; null over plaintext. */
  readonly peer: string | null;
  readonly sourceIp: Uint8Array | null;
  readonly remoteIp: Uint8Array | null;
  readonly destinationIp: Uint8Array | null;
  readonly port: number;
  readonly sni: string | null;
  readonly method: string | null;
  /** The normalized path without query and fragment: what url_path matchers compare. */
  readonly urlPath: string | null;
  readonly host: string | null;
  /**
   * The request headers as Envoy holds them: lower-cased names, the pseudo-headers `:method`,
   * `:path` (normalized, with its query), `:authority` and `:scheme`, and no `host` (Envoy
   * keeps the Host header as `:authority`).
   */
  readonly headers: Readonly<Record<string, string>>;
  /** The JWT payload the jwt_authn filter verified; null when it verified none. */
  readonly claims: JwtClaims | null;
}

/** What Envoy did to the request before RBAC: the normalized path and the JWT filter's work. */
export interface RequestView {
  /** The normalized `:path` and its url_path; null on TCP or without a path. */
  readonly path: { readonly path: string; readonly urlPath: string } | null;
  readonly jwt: {
    readonly claims: JwtClaims;
    readonly addHeaders: Readonly<Record<string, string>>;
    readonly removeHeaders: readonly string[];
  } | null;
}

/** The request headers with Envoy's pseudo-headers, before any filter changed them. */
function envoyHeaders(req: PolicyRequest, path: string | null): Record<string, string> {
  const http = req.http;
  if (!http) return {};
  const headers: Record<string, string> = { ...http.headers };
  delete headers['host'];
  if (http.method !== null) headers[':method'] = http.method;
  else delete headers[':method'];
  if (path !== null) headers[':path'] = path;
  else delete headers[':path'];
  if (http.host !== null) headers[':authority'] = http.host;
  headers[':scheme'] = http.scheme;
  return headers;
}

export function matchContext(
  req: PolicyRequest,
  peerVisible: boolean,
  view: RequestView = { path: null, jwt: null },
): MatchContext {
  const tcp = req.protocol === 'TCP';
  const ip = (v: string | null): Uint8Array | null => (v === null ? null : parseIp(v));
  let headers: Record<string, string> = {};
  if (!tcp) {
    headers = envoyHeaders(req, view.path?.path ?? null);
    if (view.jwt) {
      for (const h of view.jwt.removeHeaders) delete headers[h];
      for (const [k, v] of Object.entries(view.jwt.addHeaders)) {
        headers[k] = k in headers ? `${headers[k]},${v}` : v;
      }
    }
  }
  return {
    tcp,
    peer: peerVisible && req.tls === 'mtls' ? req.sourcePrincipal : null,
    sourceIp: ip(req.sourceIp),
    remoteIp: ip(req.remoteIp),
    destinationIp: ip(req.destinationIp),
    port: req.port,
    sni: req.sni,
    method: tcp ? null : (req.http?.method ?? null),
    urlPath: tcp ? null : (view.path?.urlPath ?? null),
    host: tcp ? null : (req.http?.host ?? null),
    headers,
    claims: tcp ? null : (view.jwt?.claims ?? null),
  };
}

function claimPath(attribute: string): string[] {
  return [...attribute.slice('request.auth.claims'.length).matchAll(/\[([^\]]*)\]/g)].map(
    (m) => m[1] as string,
  );
}

/** A claim value as Envoy's JWT metadata exposes it: strings, or lists whose strings count. */
function claimStrings(claims: JwtClaims | null, path: readonly string[]): string[] | null {
  let cur: unknown = claims;
  for (const p of path) {
    if (typeof cur !== 'object' || cur === null || Array.isArray(cur)) return null;
    cur = (cur as Record<string, unknown>)[p];
  }
  if (typeof cur === 'string') return [cur];
  if (Array.isArray(cur)) return cur.filter((x): x is string => typeof x === 'string');
  return null;
}

type Test = (ctx: MatchContext) => boolean;

const never: Test = () => false;

function ipIn(value: string, ip: (ctx: MatchContext) => Uint8Array | null): Test {
  const range = parseCidr(value);
  if (range === null) return never;
  return (ctx) => {
    const addr = ip(ctx);
    return addr !== null && cidrContains(range, addr);
  };
}

const escapeRegex = (s: string): string => s.replace(/[.*+?^${}()|[\]\\/-]/g, '\\$&');

function serviceAccountTest(value: string): Test {
  const [ns, sa] = value.split('/') as [string, string];
  // serviceAccountRegex: spiffe://.+/ns/<ns>/(.+/|)sa/<sa>(/.+)?
  const re = new RegExp(`^spiffe://.+/ns/${escapeRegex(ns)}/(.+/|)sa/${escapeRegex(sa)}(/.+)?$`);
  return (ctx) => ctx.peer !== null && re.test(`spiffe://${ctx.peer}`);
}

/**
 * Source.trustDomains / `source.trustDomain` (srcTrustDomainGenerator): `*` is any peer, a
 * value without `*` the URI prefix `spiffe://<td>/`, otherwise the regex `spiffe://a[^/]*b/.*`
 * around the first `*` — unlike principals, a wildcard never crosses into the path.
 */
function trustDomainTest(value: string): Test {
  if (value === '*') return (ctx) => ctx.peer !== null;
  const star = value.indexOf('*');
  if (star < 0) {
    const prefix = `${value}/`;
    return (ctx) => ctx.peer !== null && ctx.peer.startsWith(prefix);
  }
  const re = new RegExp(
    `^${escapeRegex(value.slice(0, star))}[^/]*${escapeRegex(value.slice(star + 1))}/.*$`,
  );
  return (ctx) => ctx.peer !== null && re.test(ctx.peer);
}

function claimTest(path: readonly string[], value: string): Test {
  return (ctx) => (claimStrings(ctx.claims, path) ?? []).some((c) => matchString(value, c));
}

/**
 * The test of one value of a constraint, with everything that depends only on the policy
 * (CIDR ranges, regexes, header names, claim paths) worked out once, not per request.
 */
function valueTest(attribute: string, value: string): Test {
  switch (attribute) {
    case 'source.principal':
      return (ctx) => matchPrincipal(value, ctx.peer);
    case 'source.serviceAccount':
      return serviceAccountTest(value);
    case 'source.trustDomain':
      return trustDomainTest(value);
    case 'source.namespace': {
      const matches = namespaceMatcher(value);
      return (ctx) => matches(ctx.peer);
    }
    case 'source.ip':
      return ipIn(value, (ctx) => ctx.sourceIp);
    case 'remote.ip':
      return ipIn(value, (ctx) => ctx.remoteIp);
    case 'destination.ip':
      return ipIn(value, (ctx) => ctx.destinationIp);
    case 'destination.port': {
      const port = Number(value);
      return (ctx) => port === ctx.port;
    }
    case 'connection.sni':
      return (ctx) => matchString(value, ctx.sni);
    case 'request.host':
      return (ctx) => matchHost(value, ctx.host);
    case 'request.method':
      return (ctx) => matchHeader(value, ctx.method);
    case 'request.path': {
      const matches = pathMatcher(value);
      return (ctx) => matches(ctx.urlPath);
    }
    case 'request.auth.principal':
      return (ctx) => {
        const iss = claimStrings(ctx.claims, ['iss']);
        const sub = claimStrings(ctx.claims, ['sub']);
        return matchRequestPrincipal(value, iss?.[0] ?? null, sub?.[0] ?? null);
      };
    case 'request.auth.audiences':
      return claimTest(['aud'], value);
    case 'request.auth.presenter':
      return claimTest(['azp'], value);
  }
  if (attribute.startsWith('request.headers[')) {
    const name = attribute.slice('request.headers['.length, -1).toLowerCase();
    return (ctx) => matchHeader(value, ctx.headers[name]);
  }
  if (attribute.startsWith('request.auth.claims')) return claimTest(claimPath(attribute), value);
  // experimental.envoy.filters.*: Envoy dynamic metadata, which a described request cannot carry.
  return never;
}

/** Each constraint's value tests, built on its first evaluation and kept with it. */
const compiled = new WeakMap<Constraint, { values: Test[]; notValues: Test[] }>();

/** values ORed (when present), notValues negated: value-in-values AND NOT value-in-notValues. */
function constraintMatches(c: Constraint, ctx: MatchContext): boolean {
  let tests = compiled.get(c);
  if (!tests) {
    tests = {
      values: c.values.map((v) => valueTest(c.attribute, v)),
      notValues: c.notValues.map((v) => valueTest(c.attribute, v)),
    };
    compiled.set(c, tests);
  }
  if (tests.values.length > 0 && !tests.values.some((t) => t(ctx))) return false;
  return !tests.notValues.some((t) => t(ctx));
}

export function ruleMatches(rule: RuleShape, ctx: MatchContext): boolean {
  const all = (list: readonly Constraint[]): boolean =>
    list.every((c) => constraintMatches(c, ctx));
  return all(rule.when) && rule.from.some(all) && rule.to.some(all);
}
