import { policyRef, type RequestAuthentication } from './resource.js';
import type { JwtClaims, PolicyRequest } from './request.js';

/**
 * One JWT rule as the workload's jwt_authn filter runs it (pilot/pkg/security/authn/
 * policy_applier.go convertToEnvoyJwtConfig): the fields that change what RBAC sees.
 */
export interface BundleJwtRule {
  readonly policy: string;
  readonly rule: number;
  /** '' accepts a token of any issuer (an Envoy provider without `issuer`). */
  readonly issuer: string;
  /** Empty: any audience. */
  readonly audiences: readonly string[];
  /**
   * Top-level claims whose string value Envoy splits at spaces into a list: `scope` and
   * `permission` always, plus the rule's spaceDelimitedClaims (buildSpaceDelimitedClaims).
   */
  readonly spaceDelimitedClaims: readonly string[];
  readonly outputClaimToHeaders: readonly { readonly header: string; readonly claim: string }[];
  readonly outputPayloadToHeader: string;
  readonly forwardOriginalToken: boolean;
  /** Lower-cased headers the token is read from (fromHeaders; else `authorization`). */
  readonly tokenHeaders: readonly string[];
}

export interface RequestAuthenticationSection {
  /** Every RequestAuthentication applied to the workload. */
  readonly policies: readonly string[];
  /** Their JWT rules, sorted by issuer as istiod sorts them. */
  readonly rules: readonly BundleJwtRule[];
}

/** Claims Envoy always splits at spaces (policy_applier.go buildSpaceDelimitedClaims). */
const ALWAYS_SPACE_DELIMITED = ['permission', 'scope'];

/** The request-authentication section of a bundle, from the RequestAuthentications applied. */
export function requestAuthenticationSection(
  applied: readonly RequestAuthentication[],
): RequestAuthenticationSection {
  const rules: BundleJwtRule[] = [];
  for (const ra of applied) {
    ra.jwtRules.forEach((r, index) => {
      if (!r) return;
      rules.push({
        policy: policyRef(ra.meta),
        rule: index,
        issuer: r.issuer,
        audiences: r.audiences,
        spaceDelimitedClaims: [
          ...new Set([...ALWAYS_SPACE_DELIMITED, ...(r.spaceDelimitedClaims ?? [])]),
        ].sort(),
        outputClaimToHeaders: r.outputClaimToHeaders,
        outputPayloadToHeader: r.outputPayloadToHeader,
        forwardOriginalToken: r.forwardOriginalToken,
        tokenHeaders:
          r.fromHeaders.length > 0
            ? r.fromHeaders.map((h) => h.name.toLowerCase())
            : ['authorization'],
      });
    });
  }
  // A stable sort by issuer keeps policy order among equal issuers (slices.SortBy).
  rules.sort((a, b) => (a.issuer < b.issuer ? -1 : a.issuer > b.issuer ? 1 : 0));
  return { policies: applied.map((r) => policyRef(r.meta)).sort(), rules };
}

/** What the jwt_authn filter did with a request. */
export type JwtOutcome =
  /** No filter (no RequestAuthentication), no token, or a CORS preflight: no request identity. */
  | { readonly kind: 'none'; readonly note: string | null }
  /** Envoy answers 401. */
  | { readonly kind: 'rejected'; readonly reason: string }
  | {
      readonly kind: 'verified';
      /** Set when the described token left something to assume. */
      readonly note: string | null;
      readonly rule: BundleJwtRule;
      /** The payload as RBAC reads it from metadata (space-delimited claims split). */
      readonly claims: JwtClaims;
      /** Headers the filter adds (claim and payload outputs), lower-cased names. */
      readonly addHeaders: Readonly<Record<string, string>>;
      /** Headers the filter removes (the token, unless forwardOriginalToken). */
      readonly removeHeaders: readonly string[];
    };

function claimStringList(value: unknown): string[] {
  if (typeof value === 'string') return [value];
  if (Array.isArray(value)) return value.filter((x): x is string => typeof x === 'string');
  return [];
}

/**
 * Runs the jwt_authn filter istiod configures: each rule is a provider, required as
 * `provider OR allow_missing`, so a request without a token passes with no identity, while a
 * token that is invalid, of an issuer no rule names, or for none of the rule's audiences is
 * rejected with 401 (Envoy jwt_authn authenticator.cc: JwtUnknownIssuer, JwtAudienceNotAllowed).
 * CORS preflights bypass the filter (BypassCorsPreflight).
 */
const NO_TOKEN: JwtOutcome = { kind: 'none', note: null };

export function authenticateRequest(
  section: RequestAuthenticationSection,
  req: PolicyRequest,
): JwtOutcome {
  if (req.protocol !== 'HTTP' || !req.jwt) return NO_TOKEN;
  if (section.rules.length === 0) {
    return {
      kind: 'none',
      note: 'the request presents a JWT, but no RequestAuthentication applies to the workload: nothing verifies it, so request.auth.* attributes and requestPrincipals are empty',
    };
  }
  const headers = req.http?.headers ?? {};
  if (
    req.http?.method === 'OPTIONS' &&
    headers['origin'] !== undefined &&
    headers['access-control-request-method'] !== undefined
  ) {
    return {
      kind: 'none',
      note: 'a CORS preflight bypasses JWT verification: no request identity',
    };
  }
  if (!req.jwt.valid) {
    return {
      kind: 'rejected',
      reason:
        'the request presents a JWT that is not valid: request authentication rejects it (401)',
    };
  }
  let claims = req.jwt.claims;
  let assumed: string | null = null;
  if (typeof claims['iss'] !== 'string' || claims['iss'] === '') {
    // A described token without `iss` is taken as one of the first rule's issuer (a real
    // token always carries it; Envoy would refuse one without): noted in the explanation.
    assumed = section.rules[0]?.issuer ?? '';
    if (assumed !== '') claims = { ...claims, iss: assumed };
  }
  const iss = typeof claims['iss'] === 'string' ? claims['iss'] : '';
  const candidates = section.rules.filter((r) => r.issuer === '' || r.issuer === iss);
  if (candidates.length === 0) {
    return {
      kind: 'rejected',
      reason: `the JWT's issuer "${iss}" is in no jwtRules of the RequestAuthentications applied (${section.policies.join(', ')}): rejected (401, Jwt issuer is not configured)`,
    };
  }
  const aud = claimStringList(claims['aud']);
  const rule = candidates.find(
    (r) => r.audiences.length === 0 || r.audiences.some((a) => aud.includes(a)),
  );
  if (!rule) {
    return {
      kind: 'rejected',
      reason: `the JWT's audiences (${aud.join(', ') || 'none'}) are not among those ${candidates.map((c) => c.policy).join(', ')} accept for issuer "${iss}": rejected (401, Audiences in Jwt are not allowed)`,
    };
  }
  const addHeaders: Record<string, string> = {};
  const add = (name: string, value: string): void => {
    const key = name.toLowerCase();
    addHeaders[key] = key in addHeaders ? `${addHeaders[key]},${value}` : value;
  };
  if (rule.outputPayloadToHeader !== '') {
    add(rule.outputPayloadToHeader, base64Url(JSON.stringify(claims)));
  }
  for (const { header, claim } of rule.outputClaimToHeaders) {
    const value = claimHeaderValue(claimAt(claims, claim));
    if (value !== '') add(header, value);
  }
  return {
    kind: 'verified',
    note:
      assumed === null
        ? null
        : `the JWT has no iss claim: taken as issued by "${assumed}" (${rule.policy}); Envoy refuses a real token without one`,
    rule,
    claims: splitSpaceDelimited(claims, rule.spaceDelimitedClaims),
    addHeaders,
    removeHeaders: rule.forwardOriginalToken ? [] : rule.tokenHeaders,
  };
}

/** NormalizePayload: a listed top-level claim holding a string becomes its space-separated words. */
export function splitSpaceDelimited(claims: JwtClaims, names: readonly string[]): JwtClaims {
  let out: Record<string, unknown> | null = null;
  for (const name of names) {
    const v = claims[name];
    if (typeof v !== 'string') continue;
    const words = v.split(' ').filter((w) => w !== '');
    if (words.length === 0) continue;
    out ??= { ...claims };
    out[name] = words;
  }
  return out ?? claims;
}

/** StructUtils::GetValue: a claim name, with `.` stepping into nested objects. */
function claimAt(claims: JwtClaims, name: string): unknown {
  let cur: unknown = claims;
  for (const part of name.split('.')) {
    if (typeof cur !== 'object' || cur === null || Array.isArray(cur)) return undefined;
    cur = (cur as Record<string, unknown>)[part];
  }
  return cur;
}

/** addJWTClaimToHeader: strings as they are, numbers and booleans printed, JSON in base64. */
function claimHeaderValue(value: unknown): string {
  if (typeof value === 'string') return value;
  if (typeof value === 'number') return String(value);
  if (typeof value === 'boolean') return value ? 'true' : 'false';
  if (typeof value === 'object' && value !== null) return base64(JSON.stringify(value));
  return '';
}

function base64(text: string): string {
  return btoa(String.fromCharCode(...new TextEncoder().encode(text)));
}

function base64Url(text: string): string {
  return base64(text).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
}
