import { cidrContains, parseCidr, parseIp } from './ip-match.js';
import type { Constraint, RuleShape } from './normalize.js';
import type { JwtClaims, PolicyRequest } from './request.js';
import {
  matchHeader,
  matchHost,
  matchNamespace,
  matchPath,
  matchPrincipal,
  matchRequestPrincipal,
  matchString,
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

function ipIn(value: string, ip: Uint8Array | null): boolean {
  const range = parseCidr(value);
  return ip !== null && range !== null && cidrContains(range, ip);
}

function serviceAccountMatches(value: string, peer: string | null): boolean {
  if (peer === null) return false;
  const [ns, sa] = value.split('/') as [string, string];
  const esc = (s: string): string => s.replace(/[.*+?^${}()|[\]\\/-]/g, '\\$&');
  // serviceAccountRegex: spiffe://.+/ns/<ns>/(.+/|)sa/<sa>(/.+)?
  return new RegExp(`^spiffe://.+/ns/${esc(ns)}/(.+/|)sa/${esc(sa)}(/.+)?$`).test(
    `spiffe://${peer}`,
  );
}

/** Whether one value of a constraint matches the request. */
export function valueMatches(attribute: string, value: string, ctx: MatchContext): boolean {
  switch (attribute) {
    case 'source.principal':
      return matchPrincipal(value, ctx.peer);
    case 'source.serviceAccount':
      return serviceAccountMatches(value, ctx.peer);
    case 'source.namespace':
      return matchNamespace(value, ctx.peer);
    case 'source.ip':
      return ipIn(value, ctx.sourceIp);
    case 'remote.ip':
      return ipIn(value, ctx.remoteIp);
    case 'destination.ip':
      return ipIn(value, ctx.destinationIp);
    case 'destination.port':
      return Number(value) === ctx.port;
    case 'connection.sni':
      return matchString(value, ctx.sni);
    case 'request.host':
      return matchHost(value, ctx.host);
    case 'request.method':
      return matchHeader(value, ctx.method);
    case 'request.path':
      return matchPath(value, ctx.path);
    case 'request.auth.principal': {
      const iss = claimStrings(ctx.claims, ['iss']);
      const sub = claimStrings(ctx.claims, ['sub']);
      return matchRequestPrincipal(value, iss?.[0] ?? null, sub?.[0] ?? null);
    }
    case 'request.auth.audiences':
      return (claimStrings(ctx.claims, ['aud']) ?? []).some((a) => matchString(value, a));
    case 'request.auth.presenter':
      return (claimStrings(ctx.claims, ['azp']) ?? []).some((a) => matchString(value, a));
  }
  if (attribute.startsWith('request.headers[')) {
    const name = attribute.slice('request.headers['.length, -1).toLowerCase();
    return matchHeader(value, ctx.headers[name]);
  }
  if (attribute.startsWith('request.auth.claims')) {
    return (claimStrings(ctx.claims, claimPath(attribute)) ?? []).some((c) =>
      matchString(value, c),
    );
  }
  // experimental.envoy.filters.*: Envoy dynamic metadata, which a described request cannot carry.
  return false;
}

/** values ORed (when present), notValues negated: value-in-values AND NOT value-in-notValues. */
export function constraintMatches(c: Constraint, ctx: MatchContext): boolean {
  if (c.values.length > 0 && !c.values.some((v) => valueMatches(c.attribute, v, ctx))) return false;
  return !c.notValues.some((v) => valueMatches(c.attribute, v, ctx));
}

export function ruleMatches(rule: RuleShape, ctx: MatchContext): boolean {
  const all = (list: readonly Constraint[]): boolean =>
    list.every((c) => constraintMatches(c, ctx));
  return (
    rule.when.every((c) => constraintMatches(c, ctx)) && rule.from.some(all) && rule.to.some(all)
  );
}
