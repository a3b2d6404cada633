import { CastellanError } from '../errors.js';
import type { ActionSection, BundleRule, PolicyBundle } from './policy-bundle.js';
import { withoutHttpOnly, type RuleShape } from './normalize.js';
import type { MtlsDecision } from './peer-authentication.js';
import type { PolicyRequest } from './request.js';
import { matchContext, ruleMatches, type MatchContext } from './rule-match.js';

export type Stage = 'mtls' | 'jwt' | 'custom' | 'deny' | 'allow' | 'default';

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

/**
 * Decides a request as the workload's sidecar would, in the order of its filter chain:
 * peer authentication (mTLS mode), request authentication (JWT), CUSTOM (ext_authz), then the
 * RBAC filters AUDIT, DENY and ALLOW. Dry-run rules are evaluated where Envoy evaluates their
 * shadow rules — in the DENY and ALLOW filters, so only when the request gets that far.
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
  const result = (
    decision: 'ALLOW' | 'DENY',
    stage: Stage,
    policy: string | null,
    rule: number | null,
    reason: string,
  ): Decision => ({ decision, stage, policy, rule, dryRun, reason, audit, mtls, notes });
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
  if (req.protocol === 'HTTP' && req.jwt && !req.jwt.valid) {
    return result(
      'DENY',
      'jwt',
      null,
      null,
      'the request presents a JWT that is not valid: request authentication rejects it (401)',
    );
  }
  const ctx = matchContext(req, mtls.mode !== 'DISABLE');

  const custom = bundle.authorization.custom.rules.filter(
    (r) => !(ctx.tcp && r.effect === 'ext-authz' && r.providerType === 'envoyExtAuthzHttp'),
  );
  const customHit = firstMatch(custom, ctx);
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

  for (const r of bundle.authorization.audit.rules) {
    if (matches(r, ctx)) audit.push({ policy: r.policy, rule: r.rule });
  }

  const denyShadow = shadow(bundle.dryRun.deny, 'DENY', ctx);
  if (denyShadow) dryRun.push(denyShadow);
  const denyHit = firstMatch(bundle.authorization.deny.rules, ctx);
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

  const allowShadow = shadow(bundle.dryRun.allow, 'ALLOW', ctx);
  if (allowShadow) dryRun.push(allowShadow);
  const allow = bundle.authorization.allow;
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
  lines.push(
    `  mTLS: ${d.mtls.mode} (${d.mtls.policy ? `${d.mtls.policy}, ${d.mtls.level} level` : 'default'})`,
  );
  for (const r of d.dryRun) lines.push(`  dry-run ${r.action}: would ${r.wouldBe} — ${r.reason}`);
  for (const a of d.audit) lines.push(`  audit: marked by ${a.policy} rule ${a.rule}`);
  for (const n of d.notes) lines.push(`  note: ${n}`);
  return `${lines.join('\n')}\n`;
}
