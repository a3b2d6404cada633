import { CastellanError } from '../errors.js';
import type {
  ActionSection,
  AuthorizationSections,
  BundleRule,
  PolicyBundle,
} from './policy-bundle.js';
import { withoutHttpOnly, type RuleShape } from './normalize.js';
import type { PathNormalization } from './path-normalization.js';
import type { MtlsDecision } from './peer-authentication.js';
import {
  authenticateRequest,
  type JwtOutcome,
  type RequestAuthenticationSection,
} from './request-authentication.js';
import type { PolicyRequest } from './request.js';
import { matchContext, normalizedPathOf, ruleMatches, type MatchContext } from './rule-match.js';
import { serviceKey } from './workload.js';

/**
 * Where the request was decided: the connection (mtls), the HTTP connection manager's path
 * handling (path), the ext_authz filter (custom), the jwt_authn filter (jwt), the RBAC
 * filters (deny, allow), or no ALLOW policy at all (default).
 */
export type Stage = 'mtls' | 'path' | 'custom' | 'jwt' | 'deny' | 'allow' | 'default';

/** What a dry-run policy set would have decided, had it been enforced. */
export interface DryRunResult {
  readonly action: 'ALLOW' | 'DENY';
  readonly wouldBe: 'ALLOW' | 'DENY';
  readonly policy: string | null;
  readonly rule: number | null;
  readonly reason: string;
}

export interface Decision {
  readonly decision: 'ALLOW' | 'DENY';
  readonly stage: Stage;
  readonly policy: string | null;
  readonly rule: number | null;
  readonly dryRun: readonly DryRunResult[];
  readonly reason: string;
  /** AUDIT rules that matched: the request is marked for audit; the decision is unaffected. */
  readonly audit: readonly { readonly policy: string; readonly rule: number }[];
  /** The effective mTLS mode of the request's port. */
  readonly mtls: MtlsDecision;
  /** Things the caller should know about how the request was read. */
  readonly notes: readonly string[];
  /** The request path as sent and as the filters saw it (null when refused); null on TCP. */
  readonly path: {
    readonly original: string;
    readonly normalized: string | null;
    readonly mode: PathNormalization;
  } | null;
}

/** The JSON shape `castellan policy check --output json` prints. */
export function decisionJson(d: Decision): Record<string, unknown> {
  return {
    decision: d.decision,
    stage: d.stage,
    policy: d.policy,
    rule: d.rule,
    dryRun: d.dryRun,
    reason: d.reason,
    normalizedPath: d.path?.normalized ?? null,
    notes: d.notes,
  };
}

/** The TCP form of each widened rule, built on first use rather than on every decision. */
const widenedForTcp = new WeakMap<BundleRule, RuleShape>();

/** The rule as the request's filter chain evaluates it; null when TCP drops it. */
function ruleOnChain(r: BundleRule, tcp: boolean): RuleShape | null {
  if (!tcp || r.onTcp === 'applies') return r;
  if (r.onTcp === 'dropped') return null;
  let widened = widenedForTcp.get(r);
  if (!widened) {
    widened = withoutHttpOnly(r);
    widenedForTcp.set(r, widened);
  }
  return widened;
}

function matches(r: BundleRule, ctx: MatchContext): boolean {
  const rule = ruleOnChain(r, ctx.tcp);
  return rule !== null && ruleMatches(rule, ctx);
}

function firstMatch<R extends BundleRule>(rules: readonly R[], ctx: MatchContext): R | null {
  return rules.find((r) => matches(r, ctx)) ?? null;
}

function describe(r: BundleRule): string {
  return `${r.policy} rule ${r.rule}`;
}

function shadow(
  section: ActionSection,
  action: 'ALLOW' | 'DENY',
  ctx: MatchContext,
): DryRunResult | null {
  if (section.policies.length === 0) return null;
  const hit = firstMatch(section.rules, ctx);
  if (action === 'DENY') {
    return hit
      ? {
          action,
          wouldBe: 'DENY',
          policy: hit.policy,
          rule: hit.rule,
          reason: `dry-run ${describe(hit)} matches: it would deny`,
        }
      : {
          action,
          wouldBe: 'ALLOW',
          policy: null,
          rule: null,
          reason: 'no dry-run DENY rule matches',
        };
  }
  return hit
    ? {
        action,
        wouldBe: 'ALLOW',
        policy: hit.policy,
        rule: hit.rule,
        reason: `dry-run ${describe(hit)} matches: it would allow`,
      }
    : {
        action,
        wouldBe: 'DENY',
        policy: null,
        rule: null,
        reason: `no rule of the dry-run ALLOW policies (${section.policies.join(', ')}) matches: they would deny`,
      };
}

const NO_NOTES: readonly string[] = [];
const NO_JWT: JwtOutcome = { kind: 'none', note: null };

/** Per bundle, the notes about policies it applies that Istio's validation refuses. */
const invalidPolicyNotes = new WeakMap<PolicyBundle, readonly string[]>();

function invalidPolicies(bundle: PolicyBundle): readonly string[] {
  if (bundle.diagnostics.length === 0) return NO_NOTES;
  let notes = invalidPolicyNotes.get(bundle);
  if (!notes) {
    notes = bundle.diagnostics
      .filter((d) => d.severity === 'error')
      .map((d) => `${d.resource} has an error: ${d.field}: ${d.message}`);
    invalidPolicyNotes.set(bundle, notes);
  }
  return notes;
}

/** The sections of the chain the request runs through: a waypoint's service chain, or the workload's. */
function chainFor(
  bundle: PolicyBundle,
  req: PolicyRequest,
  notes: string[],
): AuthorizationSections & { readonly requestAuthentication: RequestAuthenticationSection } {
  if (req.service === null) {
    if (bundle.services?.length) {
      notes.push(
        'the request names no service (request.service): only policies attached to the waypoint itself apply',
      );
    }
    return bundle;
  }
  if (bundle.workload.kind !== 'waypoint') {
    notes.push(`request.service matters on a waypoint only; a ${bundle.workload.kind} ignores it`);
    return bundle;
  }
  const key = serviceKey(req.service);
  const chain = bundle.services?.find((s) => serviceKey(s.service) === key);
  if (!chain) {
    notes.push(
      `no policy attaches to ${req.service.kind} ${req.service.namespace}/${req.service.name}: the waypoint's own policies apply`,
    );
    return bundle;
  }
  return chain;
}

/**
 * Decides a request as the workload's proxy would, in the order of its filter chain
 * (pilot/pkg/networking/core/listener_builder.go buildHTTPFilters): the connection's peer
 * authentication (mTLS mode); the connection manager's path normalization; CUSTOM (ext_authz,
 * before request authentication); request authentication (JWT); then the RBAC filters AUDIT,
 * DENY and ALLOW. The path is normalized once, here, and every rule sees the same view. Dry-run
 * rules are evaluated where Envoy evaluates their shadow rules — in the DENY and ALLOW filters,
 * so only when the request gets that far.
 */
export function decide(bundle: PolicyBundle, req: PolicyRequest): Decision {
  const notes: string[] = [];
  const mtls = bundle.mtls.ports.find((p) => p.port === req.port) ?? bundle.mtls.default;
  const declared = bundle.workload.ports.find((p) => p.number === req.port);
  if (declared) {
    const chainIsTcp = declared.protocol === 'TCP';
    if (chainIsTcp !== (req.protocol === 'TCP')) {
      notes.push(
        `port ${req.port} is declared ${declared.protocol}: the request is evaluated as ${req.protocol} as given`,
      );
    }
  }
  const dryRun: DryRunResult[] = [];
  const audit: { policy: string; rule: number }[] = [];
  const mode = bundle.mesh.pathNormalization;
  const rawPath = req.protocol === 'HTTP' ? (req.http?.path ?? null) : null;
  const normalized = normalizedPathOf(req, mode);
  const path =
    rawPath === null
      ? null
      : { original: rawPath, normalized: normalized?.ok ? normalized.path : null, mode };
  const result = (
    decision: 'ALLOW' | 'DENY',
    stage: Stage,
    policy: string | null,
    rule: number | null,
    reason: string,
  ): Decision => {
    const invalid = invalidPolicies(bundle);
    return {
      decision,
      stage,
      policy,
      rule,
      dryRun,
      reason,
      audit,
      mtls,
      notes: invalid.length ? [...notes, ...invalid] : notes,
      path,
    };
  };
  const by = mtls.policy ? `${mtls.policy} (${mtls.level})` : 'the default';

  if (req.tls === 'plaintext' && mtls.mode === 'STRICT') {
    return result(
      'DENY',
      'mtls',
      mtls.policy,
      null,
      `port ${req.port} requires mTLS (STRICT, set by ${by}); the connection is plaintext`,
    );
  }
  if (mtls.mode === 'DISABLE' && req.tls === 'mtls') {
    notes.push(
      `mTLS is DISABLEd on port ${req.port} (${by}): the sidecar does not terminate TLS, so no peer identity is available`,
    );
  }
  if (req.tls === 'plaintext' && req.sourcePrincipal) {
    notes.push('the request is plaintext: its source principal is not verified and is ignored');
  }
  if (req.sourceNamespace && req.tls === 'mtls' && req.sourcePrincipal) {
    const m = /\/ns\/([^/]+)\//.exec(`/${req.sourcePrincipal}`);
    if (m && m[1] !== req.sourceNamespace) {
      notes.push(
        `source.namespace "${req.sourceNamespace}" differs from the principal's namespace "${m[1]}"; Istio uses the principal`,
      );
    }
  }
  if (normalized && !normalized.ok) {
    return result('DENY', 'path', null, null, normalized.reason);
  }
  const chain =
    req.service === null && bundle.services === undefined ? bundle : chainFor(bundle, req, notes);
  const peerVisible = mtls.mode !== 'DISABLE';
  const seen = normalized?.ok ? normalized : null;
  const beforeJwt = matchContext(req, peerVisible, seen);

  const custom = chain.authorization.custom.rules.filter(
    (r) => !(beforeJwt.tcp && r.effect === 'ext-authz' && r.providerType === 'envoyExtAuthzHttp'),
  );
  const customHit = firstMatch(custom, beforeJwt);
  if (customHit) {
    if (customHit.effect === 'deny') {
      return result(
        'DENY',
        'custom',
        customHit.policy,
        customHit.rule,
        `CUSTOM ${describe(customHit)} matches, but istiod could not configure provider "${customHit.provider}", so matching requests are denied`,
      );
    }
    if (!req.externalAuthorizer) {
      throw new CastellanError(
        'invalid-argument',
        `CUSTOM ${describe(customHit)} matches, so the answer of provider "${customHit.provider}" is needed: set decision: allow or deny`,
        { subject: 'request.externalAuthorizer' },
      );
    }
    if (req.externalAuthorizer.decision === 'deny') {
      return result(
        'DENY',
        'custom',
        customHit.policy,
        customHit.rule,
        `CUSTOM ${describe(customHit)} matches and provider "${customHit.provider}" denies the request`,
      );
    }
    notes.push(
      `CUSTOM ${describe(customHit)} matched; provider "${customHit.provider}" allowed the request`,
    );
  }

  const jwt = req.jwt === null ? NO_JWT : authenticateRequest(chain.requestAuthentication, req);
  if (jwt.kind === 'rejected') return result('DENY', 'jwt', null, null, jwt.reason);
  if (jwt.note) notes.push(jwt.note);
  const ctx = jwt.kind === 'verified' ? matchContext(req, peerVisible, seen, jwt) : beforeJwt;

  for (const r of chain.authorization.audit.rules) {
    if (matches(r, ctx)) audit.push({ policy: r.policy, rule: r.rule });
  }

  const denyShadow = shadow(chain.dryRun.deny, 'DENY', ctx);
  if (denyShadow) dryRun.push(denyShadow);
  const denyHit = firstMatch(chain.authorization.deny.rules, ctx);
  if (denyHit) {
    const widened =
      ctx.tcp && denyHit.onTcp === 'widened'
        ? ' (on TCP its HTTP-only fields are ignored, widening it)'
        : '';
    return result(
      'DENY',
      'deny',
      denyHit.policy,
      denyHit.rule,
      `DENY ${describe(denyHit)} matches${widened}`,
    );
  }

  const allowShadow = shadow(chain.dryRun.allow, 'ALLOW', ctx);
  if (allowShadow) dryRun.push(allowShadow);
  const allow = chain.authorization.allow;
  if (allow.policies.length === 0) {
    return result(
      'ALLOW',
      'default',
      null,
      null,
      'no DENY rule matches and no ALLOW policy applies to the workload',
    );
  }
  const allowHit = firstMatch(allow.rules, ctx);
  if (allowHit)
    return result(
      'ALLOW',
      'allow',
      allowHit.policy,
      allowHit.rule,
      `ALLOW ${describe(allowHit)} matches`,
    );
  const dropped = ctx.tcp ? allow.rules.filter((r) => r.onTcp === 'dropped').map(describe) : [];
  const droppedNote = dropped.length
    ? `; on TCP these rules are dropped for using HTTP-only fields: ${dropped.join(', ')}`
    : '';
  return result(
    'DENY',
    'allow',
    null,
    null,
    `ALLOW policies apply (${allow.policies.join(', ')}) but none of their rules matches${droppedNote}`,
  );
}

/** The human-readable form of a decision. */
export function formatDecision(d: Decision): string {
  const lines = [
    `${d.decision} at stage ${d.stage}${d.policy ? ` by ${d.policy}${d.rule !== null ? ` rule ${d.rule}` : ''}` : ''}`,
  ];
  lines.push(`  reason: ${d.reason}`);
  if (d.path) {
    const how =
      d.path.normalized === null
        ? 'refused'
        : d.path.normalized === d.path.original
          ? 'unchanged'
          : `normalized from ${d.path.original}`;
    lines.push(
      `  path: ${d.path.normalized ?? d.path.original} (${how}; pathNormalization ${d.path.mode})`,
    );
  }
  lines.push(
    `  mTLS: ${d.mtls.mode} (${d.mtls.policy ? `${d.mtls.policy}, ${d.mtls.level} level` : 'default'})`,
  );
  for (const r of d.dryRun) lines.push(`  dry-run ${r.action}: would ${r.wouldBe} — ${r.reason}`);
  for (const a of d.audit) lines.push(`  audit: marked by ${a.policy} rule ${a.rule}`);
  for (const n of d.notes) lines.push(`  note: ${n}`);
  return `${lines.join('\n')}\n`;
}
