import { diagnostic, type Diagnostic } from './diagnostic.js';
import { parseCidr } from './ip-match.js';
import {
  policyRef,
  resourceLabel,
  type AuthorizationAction,
  type AuthorizationPolicy,
  type Operation,
  type Rule,
  type Source,
} from './resource.js';
import { expandPrincipalAliases, expandTrustDomainValues } from './trust-domain.js';
import { WHEN_EXACT_KEYS } from './validation.js';

/**
 * One attribute test inside a rule: the request attribute must match one of `values` (when
 * any) and none of `notValues`. `field` points back at the policy field it came from.
 */
export interface Constraint {
  readonly attribute: string;
  readonly field: string;
  readonly values: readonly string[];
  readonly notValues: readonly string[];
}

/**
 * The matching part of a rule, shared by normalized and bundle rules, as istiod generates it
 * (pilot/pkg/security/authz/model Model): `from` entries ORed, `to` entries ORed, `when`
 * conditions ANDed, and the three ANDed together; the constraints inside one entry are ANDed.
 * An absent `from`/`to` is a single entry without constraints.
 */
export interface RuleShape {
  readonly from: readonly (readonly Constraint[])[];
  readonly to: readonly (readonly Constraint[])[];
  readonly when: readonly Constraint[];
}

export interface NormalizedRule extends RuleShape {
  readonly index: number;
  /** The Envoy RBAC policy name, `ns[<ns>]-policy[<name>]-rule[<i>]`. */
  readonly envoyName: string;
  /** What a TCP filter chain does to the rule, worked out once per policy (see onTcp). */
  readonly onTcp: TcpEffect;
}

export interface NormalizedPolicy {
  readonly policy: string;
  readonly action: AuthorizationAction;
  /** CUSTOM only: the extension provider name ('' when the policy names none). */
  readonly provider: string | null;
  readonly dryRun: boolean;
  /** Empty for a policy without rules: it matches nothing (istiod's "match never" policy). */
  readonly rules: readonly NormalizedRule[];
}

/** Attributes only an HTTP filter chain can see (generators that fail with "is HTTP only"). */
function isHttpOnly(attribute: string): boolean {
  return (
    attribute === 'request.host' ||
    attribute === 'request.method' ||
    attribute === 'request.path' ||
    attribute.startsWith('request.auth.') ||
    attribute.startsWith('request.headers')
  );
}

const SOURCE_ATTRIBUTES: readonly [keyof Source, keyof Source, string][] = [
  ['principals', 'notPrincipals', 'source.principal'],
  ['serviceAccounts', 'notServiceAccounts', 'source.serviceAccount'],
  ['requestPrincipals', 'notRequestPrincipals', 'request.auth.principal'],
  ['namespaces', 'notNamespaces', 'source.namespace'],
  ['trustDomains', 'notTrustDomains', 'source.trustDomain'],
  ['remoteIpBlocks', 'notRemoteIpBlocks', 'remote.ip'],
  ['ipBlocks', 'notIpBlocks', 'source.ip'],
];

const OPERATION_ATTRIBUTES: readonly [keyof Operation, keyof Operation, string][] = [
  ['hosts', 'notHosts', 'request.host'],
  ['methods', 'notMethods', 'request.method'],
  ['paths', 'notPaths', 'request.path'],
  ['ports', 'notPorts', 'destination.port'],
];

function knownWhenKey(key: string): boolean {
  return (
    WHEN_EXACT_KEYS.has(key) ||
    key.startsWith('request.headers') ||
    key.startsWith('request.auth.claims') ||
    key.startsWith('experimental.envoy.filters.')
  );
}

/** Why a single value cannot be turned into an Envoy matcher, or null when it can. */
function valueError(attribute: string, value: string): string | null {
  if (attribute === 'source.ip' || attribute === 'remote.ip' || attribute === 'destination.ip') {
    return parseCidr(value) ? null : `"${value}" is not an IP address or CIDR range`;
  }
  if (attribute === 'destination.port') {
    return /^\d+$/.test(value) && Number(value) <= 65535 ? null : `"${value}" is not a port`;
  }
  return null;
}

function keyError(attribute: string): string | null {
  if (attribute.startsWith('request.headers')) {
    return /^request\.headers\[[^\]]+\]$/.test(attribute)
      ? null
      : `bad key (${attribute}): should have format request.headers[<name>]`;
  }
  if (attribute.startsWith('request.auth.claims')) {
    return /^request\.auth\.claims(\[[^\][]+\])+$/.test(attribute)
      ? null
      : `bad key (${attribute}): should have format request.auth.claims[<name>]`;
  }
  if (attribute.startsWith('experimental.envoy.filters.')) {
    return /\[[^\]]+\]$/.test(attribute) ? null : `bad key (${attribute}): should have format a[b]`;
  }
  return null;
}

export interface NormalizeContext {
  readonly trustDomains: readonly string[];
}

/**
 * Normalizes one AuthorizationPolicy the way istiod's builder does (pilot/pkg/security/authz/
 * builder.build): nil rules and rules with an unknown `when` key are skipped; a value that
 * cannot be generated (a bad IP or port) skips the whole rule in an ALLOW policy (narrower)
 * and only that value in DENY/AUDIT/CUSTOM (wider) — model.checkError; trust-domain aliases
 * are applied to principals. Every skip is reported as a diagnostic.
 */
export function normalizePolicy(
  ap: AuthorizationPolicy,
  ctx: NormalizeContext,
  diagnostics: Diagnostic[],
): NormalizedPolicy {
  const label = resourceLabel(ap);
  const rules: NormalizedRule[] = [];
  ap.rules.forEach((rule, index) => {
    const at = `spec.rules[${index}]`;
    if (!rule) {
      diagnostics.push(diagnostic('error', label, at, 'nil rule: istiod skips it'));
      return;
    }
    const normalized = normalizeRule(ap, rule, index, ctx, (field, message, skipRule) => {
      diagnostics.push(
        diagnostic(
          'error',
          label,
          field,
          skipRule
            ? `${message}: istiod skips rule ${index}`
            : `${message}: istiod ignores this value (the ${ap.action} rule gets wider)`,
        ),
      );
    });
    if (normalized) rules.push(normalized);
  });
  return {
    policy: policyRef(ap.meta),
    action: ap.action,
    provider: ap.action === 'CUSTOM' ? (ap.provider ?? '') : null,
    dryRun: ap.dryRun,
    rules,
  };
}

function normalizeRule(
  ap: AuthorizationPolicy,
  rule: Rule,
  index: number,
  ctx: NormalizeContext,
  report: (field: string, message: string, skipRule: boolean) => void,
): NormalizedRule | null {
  const at = `spec.rules[${index}]`;
  for (const [j, c] of rule.when.entries()) {
    if (!knownWhenKey(c.key)) {
      report(`${at}.when[${j}].key`, `unknown attribute ${c.key}`, true);
      return null;
    }
  }
  let skip = false;
  const build = (
    attribute: string,
    field: string,
    values: readonly string[],
    notValues: readonly string[],
  ): Constraint | null => {
    const kerr = keyError(attribute);
    if (kerr) {
      if (ap.action === 'ALLOW') skip = true;
      report(field, kerr, ap.action === 'ALLOW');
      return null;
    }
    const keep = (list: readonly string[], which: string): string[] =>
      list.filter((v) => {
        const e = valueError(attribute, v);
        if (!e) return true;
        if (ap.action === 'ALLOW') skip = true;
        report(`${field}.${which}`, e, ap.action === 'ALLOW');
        return false;
      });
    let vs = keep(values, 'values');
    let ns = keep(notValues, 'notValues');
    if (attribute === 'source.principal') {
      vs = expandPrincipalAliases(vs, ctx.trustDomains);
      ns = expandPrincipalAliases(ns, ctx.trustDomains);
    }
    if (attribute === 'source.trustDomain') {
      vs = expandTrustDomainValues(vs, ctx.trustDomains);
      ns = expandTrustDomainValues(ns, ctx.trustDomains);
    }
    if (attribute === 'source.serviceAccount') {
      // `<name>` means a service account of the policy's own namespace (serviceAccountRegex).
      const qualify = (v: string): string => (v.includes('/') ? v : `${ap.meta.namespace}/${v}`);
      vs = vs.map(qualify);
      ns = ns.map(qualify);
    }
    if (vs.length === 0 && ns.length === 0) return null;
    return { attribute, field, values: vs, notValues: ns };
  };

  const when: Constraint[] = [];
  rule.when.forEach((c, j) => {
    const built = build(c.key, `${at}.when[${j}]`, c.values, c.notValues);
    if (built) when.push(built);
  });
  const from: Constraint[][] = rule.from.length
    ? rule.from.map((src, j) => {
        const list: Constraint[] = [];
        if (!src) return list;
        for (const [pos, neg, attribute] of SOURCE_ATTRIBUTES) {
          const built = build(attribute, `${at}.from[${j}].source.${pos}`, src[pos], src[neg]);
          if (built) list.push(built);
        }
        return list;
      })
    : [[]];
  const to: Constraint[][] = rule.to.length
    ? rule.to.map((op, j) => {
        const list: Constraint[] = [];
        if (!op) return list;
        for (const [pos, neg, attribute] of OPERATION_ATTRIBUTES) {
          const built = build(attribute, `${at}.to[${j}].operation.${pos}`, op[pos], op[neg]);
          if (built) list.push(built);
        }
        return list;
      })
    : [[]];
  // eslint-disable-next-line @typescript-eslint/no-unnecessary-condition -- build() above sets it; the narrowing to false ignores callbacks
  if (skip) return null;
  return {
    index,
    envoyName: `ns[${ap.meta.namespace}]-policy[${ap.meta.name}]-rule[${index}]`,
    from,
    to,
    when,
    onTcp: onTcp({ from, to, when }, ap.action),
  };
}

export type TcpEffect = 'applies' | 'dropped' | 'widened';

/** Whether a rule uses an attribute a TCP filter chain cannot generate. */
function usesHttpOnly(rule: RuleShape): boolean {
  const all = [...rule.from.flat(), ...rule.to.flat(), ...rule.when];
  return all.some((c) => isHttpOnly(c.attribute));
}

/**
 * What TCP does to a rule (model.checkError): an HTTP-only attribute cannot be generated, so an
 * ALLOW rule containing one is dropped whole (it allows less), while in DENY/AUDIT/CUSTOM the
 * attribute is left out (the rule matches more).
 */
function onTcp(rule: RuleShape, action: AuthorizationAction): TcpEffect {
  if (!usesHttpOnly(rule)) return 'applies';
  return action === 'ALLOW' ? 'dropped' : 'widened';
}

/** The widened TCP form of a rule: its HTTP-only constraints left out. */
export function withoutHttpOnly(rule: RuleShape): RuleShape {
  const keep = (list: readonly Constraint[]): Constraint[] =>
    list.filter((c) => !isHttpOnly(c.attribute));
  return { from: rule.from.map(keep), to: rule.to.map(keep), when: keep(rule.when) };
}
