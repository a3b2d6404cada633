import { cidrContains, parseCidr, parseIp } from './ip-match.js';
import {
  normalizeRequestPath,
  type NormalizedPath,
  type PathNormalization,
} from './path-normalization.js';
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
  /** The normalized path without query and fragment: what url_path matchers compare. */
  readonly urlPath: string | null;
  /** The HTTP part of the request (method, host); null on TCP. Headers: requestHeader(). */
  readonly http: PolicyRequest['http'];
  /** The normalized `:path`, query included; null on TCP or without a path. */
  readonly path: string | null;
  /** What the JWT filter added to and removed from the headers; null before it or without it. */
  readonly jwtHeaders: {
    readonly add: Readonly<Record<string, string>>;
    readonly remove: readonly string[];
  } | null;
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

/**
 * A request header as Envoy holds it (name lower-cased): the pseudo-headers `:method`, `:path`
 * (normalized, with its query), `:authority` and `:scheme`, no `host` (Envoy keeps the HTTP/1
 * Host header as `:authority`), and what the JWT filter added or removed. A lookup rather than
 * a copied map: most rules read no header, and a decision must stay cheap.
 */
export function requestHeader(ctx: MatchContext, name: string): string | undefined {
  const http = ctx.http;
  if (http === null) return undefined;
  let value: string | undefined;
  if (name.charCodeAt(0) !== 0x3a /* ':' */) {
    value = name === 'host' ? undefined : http.headers[name];
  } else if (name === ':method') {
    value = http.method ?? undefined;
  } else if (name === ':path') {
    value = ctx.path ?? undefined;
  } else if (name === ':authority') {
    value = http.host ?? undefined;
  } else if (name === ':scheme') {
    value = http.scheme;
  } else {
    value = http.headers[name];
  }
  const jwt = ctx.jwtHeaders;
  if (jwt === null) return value;
  if (jwt.remove.includes(name)) value = undefined;
  const added = jwt.add[name];
  if (added === undefined) return value;
  return value === undefined ? added : `${value},${added}`;
}

/**
 * What a request is, whatever bundle decides it: its addresses parsed and its path as each
 * pathNormalization mode makes it. Worked out once per request (a PolicyRequest never
 * changes), so that deciding one request against many workloads repeats none of it.
 */
interface RequestFacts {
  readonly sourceIp: Uint8Array | null;
  readonly remoteIp: Uint8Array | null;
  readonly destinationIp: Uint8Array | null;
  readonly paths: Map<PathNormalization, NormalizedPath>;
}

const requestFacts = new WeakMap<PolicyRequest, RequestFacts>();

function factsOf(req: PolicyRequest): RequestFacts {
  let facts = requestFacts.get(req);
  if (!facts) {
    const ip = (v: string | null): Uint8Array | null => (v === null ? null : parseIp(v));
    facts = {
      sourceIp: ip(req.sourceIp),
      remoteIp: ip(req.remoteIp),
      destinationIp: ip(req.destinationIp),
      paths: new Map(),
    };
    requestFacts.set(req, facts);
  }
  return facts;
}

/** The request's path after Envoy's normalization (once per request and mode); null on TCP. */
export function normalizedPathOf(
  req: PolicyRequest,
  mode: PathNormalization,
): NormalizedPath | null {
  const raw = req.protocol === 'HTTP' ? (req.http?.path ?? null) : null;
  if (raw === null) return null;
  const paths = factsOf(req).paths;
  let normalized = paths.get(mode);
  if (!normalized) {
    normalized = normalizeRequestPath(raw, mode);
    paths.set(mode, normalized);
  }
  return normalized;
}

export function matchContext(
  req: PolicyRequest,
  peerVisible: boolean,
  path: RequestView['path'] = null,
  jwtView: RequestView['jwt'] = null,
): MatchContext {
  const tcp = req.protocol === 'TCP';
  const facts = factsOf(req);
  const jwt = tcp ? null : jwtView;
  return {
    tcp,
    peer: peerVisible && req.tls === 'mtls' ? req.sourcePrincipal : null,
    sourceIp: facts.sourceIp,
    remoteIp: facts.remoteIp,
    destinationIp: facts.destinationIp,
    port: req.port,
    sni: req.sni,
    urlPath: tcp ? null : (path?.urlPath ?? null),
    http: tcp ? null : req.http,
    path: tcp ? null : (path?.path ?? null),
    jwtHeaders: jwt ? { add: jwt.addHeaders, remove: jwt.removeHeaders } : null,
    claims: jwt?.claims ?? null,
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
      return (ctx) => matchHost(value, ctx.http?.host);
    case 'request.method':
      return (ctx) => matchHeader(value, ctx.http?.method);
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
    return (ctx) => matchHeader(value, requestHeader(ctx, name));
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
