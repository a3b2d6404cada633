import { canonicalJson, contentHash } from './canonical-json.js';
import { diagnostic, sortDiagnostics, type Diagnostic } from './diagnostic.js';
import type { ExtensionProvider, MeshSettings } from './mesh.js';
import type { NormalizedPolicy, RuleShape, TcpEffect } from './normalize.js';
import {
  mtlsForPort,
  resolvePeerAuthentication,
  type MtlsDecision,
} from './peer-authentication.js';
import type { PathNormalization } from './path-normalization.js';
import {
  requestAuthenticationSection,
  type RequestAuthenticationSection,
} from './request-authentication.js';
import type { PeerAuthentication, RequestAuthentication } from './resource.js';
import { workloadSpiffeId, type ServiceRef, type Workload } from './workload.js';

export const BUNDLE_API_VERSION = 'castellan.io/v1';

/** One rule in a bundle, with the policy it comes from and what TCP traffic does to it. */
export interface BundleRule extends RuleShape {
  readonly policy: string;
  readonly rule: number;
  readonly envoyName: string;
  /** On a TCP port: applies as written, dropped (ALLOW), or widened (HTTP fields ignored). */
  readonly onTcp: TcpEffect;
}

export interface CustomRule extends BundleRule {
  readonly provider: string;
  /**
   * `ext-authz`: a match asks the provider. `deny`: istiod could not configure the provider
   * (unknown name, or several providers on one workload) and denies matching requests.
   */
  readonly effect: 'ext-authz' | 'deny';
  /** envoyExtAuthzHttp providers are not configured on TCP filter chains. */
  readonly providerType: ExtensionProvider['type'] | null;
  readonly dryRun: boolean;
}

export interface ActionSection<R extends BundleRule = BundleRule> {
  /** Every policy of this action applied to the workload, even one whose rules were all skipped. */
  readonly policies: readonly string[];
  /** In Envoy's evaluation order: by RBAC policy name (a std::map in Envoy). */
  readonly rules: readonly R[];
}

/** CUSTOM, DENY, ALLOW and AUDIT in evaluation order, and the dry-run policies. */
export interface AuthorizationSections {
  /** In evaluation order: CUSTOM, then DENY, then ALLOW. AUDIT never decides. */
  readonly authorization: {
    readonly custom: ActionSection<CustomRule>;
    readonly deny: ActionSection;
    readonly allow: ActionSection;
    readonly audit: ActionSection;
  };
  /** istio.io/dry-run policies: evaluated and reported, never enforced. */
  readonly dryRun: {
    readonly deny: ActionSection;
    readonly allow: ActionSection;
  };
}

/**
 * A waypoint's filter chain for one service: the policies attached to the waypoint itself plus
 * those attached to the service (istiod builds one chain per service, NewBuilderForService).
 */
export interface ServiceSection extends AuthorizationSections {
  readonly service: ServiceRef;
  readonly requestAuthentication: RequestAuthenticationSection;
}

export interface PolicyBundle extends AuthorizationSections {
  readonly apiVersion: typeof BUNDLE_API_VERSION;
  readonly kind: 'PolicyBundle';
  readonly workload: {
    readonly namespace: string;
    readonly name: string;
    readonly kind: Workload['kind'];
    readonly labels: Readonly<Record<string, string>>;
    readonly serviceAccount: string;
    readonly spiffeId: string;
    readonly ports: Workload['ports'];
  };
  readonly mesh: {
    readonly rootNamespace: string;
    readonly trustDomain: string;
    readonly trustDomainAliases: readonly string[];
    readonly pathNormalization: PathNormalization;
  };
  readonly mtls: {
    /** The mode of any port without its own entry. */
    readonly default: MtlsDecision;
    readonly ports: readonly (MtlsDecision & { readonly port: number })[];
  };
  /** The JWT rules of the RequestAuthentications applied (the jwt_authn filter). */
  readonly requestAuthentication: RequestAuthenticationSection;
  /** Waypoints only: per service, the complete sets of its filter chain. */
  readonly services?: readonly ServiceSection[];
  readonly diagnostics: readonly Diagnostic[];
  /** sha256 of the canonical JSON of everything above. */
  readonly hash: string;
}

export interface BundleInputs {
  readonly workload: Workload;
  readonly mesh: MeshSettings;
  /** The PeerAuthentications selecting the workload (selection.ts). */
  readonly peerAuthentications: readonly PeerAuthentication[];
  /** The normalized AuthorizationPolicies applying to the workload. */
  readonly authorizationPolicies: readonly NormalizedPolicy[];
  /** The RequestAuthentications applying to the workload. */
  readonly requestAuthentications: readonly RequestAuthentication[];
  /** Waypoints: each service's complete policy sets (the waypoint's own included). */
  readonly services?: readonly {
    readonly service: ServiceRef;
    readonly authorizationPolicies: readonly NormalizedPolicy[];
    readonly requestAuthentications: readonly RequestAuthentication[];
  }[];
  /** Diagnostics about those policies. */
  readonly diagnostics: readonly Diagnostic[];
}

function bundleRules(p: NormalizedPolicy): BundleRule[] {
  return p.rules.map((r) => ({
    policy: p.policy,
    rule: r.index,
    envoyName: r.envoyName,
    from: r.from,
    to: r.to,
    when: r.when,
    onTcp: r.onTcp,
  }));
}

function section(policies: readonly NormalizedPolicy[]): ActionSection {
  return {
    policies: policies.map((p) => p.policy).sort(),
    rules: policies.flatMap(bundleRules).sort(byEnvoyName),
  };
}

function byEnvoyName(a: BundleRule, b: BundleRule): number {
  return a.envoyName < b.envoyName ? -1 : a.envoyName > b.envoyName ? 1 : 0;
}

/**
 * The CUSTOM/DENY/ALLOW/AUDIT sections and dry-run sections of one set of policies, with the
 * diagnostics of CUSTOM policies istiod cannot configure.
 */
function authorizationSections(
  policies: readonly NormalizedPolicy[],
  mesh: MeshSettings,
  diagnostics: Diagnostic[],
): AuthorizationSections {
  const of = (action: NormalizedPolicy['action'], dryRun: boolean): NormalizedPolicy[] =>
    policies.filter(
      (p) =>
        p.action === action &&
        (action === 'ALLOW' || action === 'DENY' ? p.dryRun === dryRun : !dryRun),
    );
  for (const p of policies) {
    if (p.action === 'AUDIT' && p.dryRun) {
      // istiod puts it in shadow rules, which never mark a request for audit.
      diagnostics.push(
        diagnostic(
          'warning',
          `AuthorizationPolicy ${p.policy}`,
          'metadata.annotations.istio.io/dry-run',
          'a dry-run AUDIT policy has no effect',
        ),
      );
    }
  }

  const customPolicies = of('CUSTOM', false);
  const providers = [...new Set(customPolicies.map((p) => p.provider ?? ''))].sort();
  const customRules: CustomRule[] = [];
  for (const p of customPolicies) {
    const provider = p.provider ?? '';
    const declared = mesh.extensionProviders.find((e) => e.name === provider);
    // What istiod cannot configure, it turns into a deny of the requests the policy matches.
    const denial =
      providers.length > 1
        ? `the workload has CUSTOM policies for ${providers.length} providers (${providers.join(', ')}); istiod supports one per workload and denies requests matching them`
        : !declared || declared.type === 'other'
          ? `provider "${provider}" is not an ext_authz provider in mesh.extensionProviders; istiod denies requests matching this policy`
          : undefined;
    const effect: CustomRule['effect'] = denial === undefined ? 'ext-authz' : 'deny';
    if (denial !== undefined) {
      diagnostics.push(
        diagnostic('error', `AuthorizationPolicy ${p.policy}`, 'spec.provider.name', denial),
      );
    }
    // Dry-run CUSTOM rules still call the provider (istiod limitation), but are not turned into denies.
    if (effect === 'deny' && p.dryRun) continue;
    for (const r of bundleRules(p)) {
      customRules.push({
        ...r,
        provider,
        effect,
        providerType: declared?.type ?? null,
        dryRun: p.dryRun,
      });
    }
  }
  customRules.sort(byEnvoyName);

  return {
    authorization: {
      custom: { policies: customPolicies.map((p) => p.policy).sort(), rules: customRules },
      deny: section(of('DENY', false)),
      allow: section(of('ALLOW', false)),
      audit: section(of('AUDIT', false)),
    },
    dryRun: { deny: section(of('DENY', true)), allow: section(of('ALLOW', true)) },
  };
}

/** Builds the deterministic bundle of one workload. */
export function buildBundle(inputs: BundleInputs): PolicyBundle {
  const { workload, mesh } = inputs;
  const diagnostics: Diagnostic[] = [...inputs.diagnostics];
  const resolved = resolvePeerAuthentication(inputs.peerAuthentications, mesh.rootNamespace);
  const portNumbers = new Set<number>([
    ...workload.ports.map((p) => p.number),
    ...resolved.ports.map((p) => p.port),
  ]);
  const ports = [...portNumbers]
    .sort((a, b) => a - b)
    .map((port) => ({ port, ...mtlsForPort(resolved, port) }));

  const sections = authorizationSections(inputs.authorizationPolicies, mesh, diagnostics);
  const services = inputs.services?.map((svc): ServiceSection => ({
    service: svc.service,
    requestAuthentication: requestAuthenticationSection(svc.requestAuthentications),
    ...authorizationSections(svc.authorizationPolicies, mesh, diagnostics),
  }));

  const body: Omit<PolicyBundle, 'hash'> = {
    apiVersion: BUNDLE_API_VERSION,
    kind: 'PolicyBundle',
    workload: {
      namespace: workload.namespace,
      name: workload.name,
      kind: workload.kind,
      labels: workload.labels,
      serviceAccount: workload.serviceAccount,
      spiffeId: workloadSpiffeId(workload, mesh.trustDomain),
      ports: workload.ports,
    },
    mesh: {
      rootNamespace: mesh.rootNamespace,
      trustDomain: mesh.trustDomain,
      trustDomainAliases: mesh.trustDomainAliases,
      pathNormalization: mesh.pathNormalization,
    },
    mtls: { default: resolved.workload, ports },
    requestAuthentication: requestAuthenticationSection(inputs.requestAuthentications),
    // Spelled out, not spread: decide() reads these on every request, and objects built by
    // spreading are slower to read (measured by the policy bench).
    authorization: sections.authorization,
    dryRun: sections.dryRun,
    services,
    diagnostics: dedupe(sortDiagnostics(diagnostics)),
  };
  return { ...body, hash: contentHash(body) };
}

function dedupe(list: Diagnostic[]): Diagnostic[] {
  const seen = new Set<string>();
  return list.filter((d) => {
    const k = JSON.stringify([d.severity, d.resource, d.field, d.message]);
    if (seen.has(k)) return false;
    seen.add(k);
    return true;
  });
}

/** The bundle as printed and served: canonical, indented, newline-terminated. */
export function serializeBundle(bundle: PolicyBundle): string {
  return `${canonicalJson(bundle, 2)}\n`;
}
