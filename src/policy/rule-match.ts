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
  readonly path: string | null;
  readonly host: string | null;
  readonly headers: Readonly<Record<string, string>>;
  /** Claims of a valid token; null when no (valid) token was presented. */
  readonly claims: JwtClaims | null;
}

export function matchContext(req: PolicyRequest, peerVisible: boolean): MatchContext {
  const tcp = req.protocol === 'TCP';
  const ip = (v: string | null): Uint8Array | null => (v === null ? null : parseIp(v));
  return {
    tcp,
    peer: peerVisible && req.tls === 'mtls' ? req.sourcePrincipal : null,
    sourceIp: ip(req.sourceIp),
    remoteIp: ip(req.remoteIp),
    destinationIp: ip(req.destinationIp),
    port: req.port,
    sni: req.sni,
    method: tcp ? null : (req.http?.method ?? null),
    path: tcp ? null : (req.http?.path ?? null),
    host: tcp ? null : (req.http?.host ?? null),
    headers: tcp ? {} : (req.http?.headers ?? {}),
    claims: !tcp && req.jwt?.valid ? req.jwt.claims : null,
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

function serviceAccountTest(value: string): Test {
  const [ns, sa] = value.split('/') as [string, string];
  const esc = (s: string): string => s.replace(/[.*+?^${}()|[\]\\/-]/g, '\\$&');
  // serviceAccountRegex: spiffe://.+/ns/<ns>/(.+/|)sa/<sa>(/.+)?
  const re = new RegExp(`^spiffe://.+/ns/${esc(ns)}/(.+/|)sa/${esc(sa)}(/.+)?$`);
  return (ctx) => ctx.peer !== null && re.test(`spiffe://${ctx.peer}`);
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
      return (ctx) => matches(ctx.path);
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
