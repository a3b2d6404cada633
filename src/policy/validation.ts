import { diagnostic, type Diagnostic } from './diagnostic.js';
import { parseCidr } from './ip-match.js';
import { parseGoBool } from './parse-resources.js';
import {
  resourceLabel,
  type AuthorizationPolicy,
  type PeerAuthentication,
  type RequestAuthentication,
  type SecurityResource,
  type TargetRef,
} from './resource.js';

/**
 * Istio's validation webhook checks (pkg/config/validation: ValidateAuthorizationPolicy,
 * ValidatePeerAuthentication, checkDryRunAnnotation; pkg/config/security: ValidateAttribute).
 *
 * A policy failing them is refused by `kubectl apply`, so it normally never exists. When one
 * does reach istiod anyway (webhook disabled, object older than the check), istiod builds it
 * without re-validating, and that is what Castellan evaluates (see normalize.ts): the error
 * diagnostic is the warning that this policy would not be accepted as written.
 */
export function validateResource(r: SecurityResource): Diagnostic[] {
  switch (r.kind) {
    case 'PeerAuthentication':
      return validatePeerAuthentication(r);
    case 'AuthorizationPolicy':
      return validateAuthorizationPolicy(r);
    case 'RequestAuthentication':
      return validateRequestAuthentication(r);
  }
}

/** Marks a message as one the validation webhook refuses (decision notes look for it). */
export const WEBHOOK_REJECTS = "Istio's validation webhook rejects this";

const WEBHOOK = WEBHOOK_REJECTS;

function validatePeerAuthentication(pa: PeerAuthentication): Diagnostic[] {
  const out: Diagnostic[] = [];
  const label = resourceLabel(pa);
  const err = (field: string, msg: string): void => {
    out.push(diagnostic('error', label, field, `${msg} (${WEBHOOK})`));
  };
  if (pa.selector === null && pa.portLevelMtls && pa.portLevelMtls.length > 0) {
    err('spec.portLevelMtls', 'mesh/namespace peer authentication cannot have port level mTLS');
  }
  if (pa.portLevelMtls && pa.portLevelMtls.length === 0) {
    err('spec.portLevelMtls', 'port level mTLS, if defined, must have at least one element');
  }
  for (const { port } of pa.portLevelMtls ?? []) {
    if (port <= 0 || port > 65535)
      err(`spec.portLevelMtls.${port}`, 'port must be in range 1..65535');
  }
  if (pa.meta.annotations['istio.io/dry-run'] !== undefined) {
    err(
      'metadata.annotations.istio.io/dry-run',
      'only AuthorizationPolicy supports istio.io/dry-run',
    );
  }
  return out;
}

// validateWorkloadSelector's wildcard and empty-key errors are the CRD's CEL rules as well, so
// such an object is refused by Kubernetes already (parse-resources.ts).

/** validatePolicyTargetReference: the kinds a policy may attach to (group "" is "core"). */
const ALLOWED_TARGETS: readonly (readonly [string, string])[] = [
  ['core', 'Service'],
  ['networking.istio.io', 'ServiceEntry'],
  ['gateway.networking.k8s.io', 'Gateway'],
  ['gateway.networking.k8s.io', 'GatewayClass'],
];

function validateTargetRefs(
  refs: readonly (TargetRef | null)[],
  field: (i: number) => string,
  err: (field: string, msg: string) => void,
): void {
  refs.forEach((t, i) => {
    if (!t) return;
    const group = t.group === '' ? 'core' : t.group;
    if (!ALLOWED_TARGETS.some(([g, k]) => g === group && k === t.kind)) {
      err(
        field(i),
        `targetRef must be to one of Service, ServiceEntry (networking.istio.io), Gateway or GatewayClass (gateway.networking.k8s.io) but was ${t.group}/${t.kind}`,
      );
    }
  });
}

function validateAttachment(
  p: AuthorizationPolicy | RequestAuthentication,
  err: (field: string, msg: string) => void,
  warn: (field: string, msg: string) => void,
): void {
  validateTargetRefs([p.targetRef], () => 'spec.targetRef', err);
  validateTargetRefs(p.targetRefs, (i) => `spec.targetRefs[${i}]`, err);
  if (p.selector && Object.keys(p.selector).length === 0) {
    warn('spec.selector', 'workload selector specified without labels: it selects every workload');
  }
}

function validateRequestAuthentication(ra: RequestAuthentication): Diagnostic[] {
  const out: Diagnostic[] = [];
  const label = resourceLabel(ra);
  const err = (field: string, msg: string): void => {
    out.push(diagnostic('error', label, field, `${msg} (${WEBHOOK})`));
  };
  validateAttachment(ra, err, (field, msg) => out.push(diagnostic('warning', label, field, msg)));
  ra.jwtRules.forEach((rule, i) => {
    const at = `spec.jwtRules[${i}]`;
    if (!rule) return;
    if (rule.issuer === '' && rule.jwksUri === '') {
      err(at, 'issuer or jwksUri must be non-empty string');
    }
    if (rule.jwks !== '') {
      try {
        JSON.parse(rule.jwks);
      } catch {
        err(`${at}.jwks`, 'jwks parse error: not a JSON Web Key Set');
      }
    }
  });
  return out;
}

/** The `when` keys Istio knows by exact name (the map-like ones are matched by prefix). */
export const WHEN_EXACT_KEYS: ReadonlySet<string> = new Set([
  'source.ip',
  'remote.ip',
  'source.namespace',
  'source.serviceAccount',
  'source.trustDomain',
  'source.principal',
  'request.auth.principal',
  'request.auth.audiences',
  'request.auth.presenter',
  'destination.ip',
  'destination.port',
  'connection.sni',
]);

/** security.ValidateAttribute: whether a `when` key and its values are acceptable. */
function validateAttribute(key: string, values: readonly string[]): string | null {
  if (values.some((v) => v === '')) return `empty value not allowed, found in ${key}`;
  const mapKey = (): string | null => {
    const open = key.indexOf('[');
    return key.endsWith(']') && open > 0 && open < key.length - 2
      ? null
      : `bad key (${key}): should have format a[b]`;
  };
  if (key.startsWith('request.headers')) return mapKey();
  if (key.startsWith('request.auth.claims')) return mapKey();
  if (key.startsWith('experimental.envoy.filters.')) return mapKey();
  if (key === 'source.ip' || key === 'remote.ip' || key === 'destination.ip')
    return validateIps(values);
  if (key === 'destination.port') return validatePorts(values);
  if (key === 'source.serviceAccount') return checkServiceAccount(key, values);
  if (key === 'source.trustDomain') return checkWildcardValues(key, values);
  if (WHEN_EXACT_KEYS.has(key)) return null;
  if (key === 'destination.namespace')
    return `attribute ${key} is replaced by the metadata.namespace`;
  if (key.startsWith('destination.labels'))
    return `attribute ${key} is replaced by the workload selector`;
  if (key === 'destination.name' || key === 'destination.user') {
    return `deprecated attribute ${key}: only supported in v1alpha1`;
  }
  return `unknown attribute: ${key}`;
}

function validateIps(values: readonly string[]): string | null {
  const bad = values.filter((v) => !parseCidr(v));
  return bad.length ? `bad IP address or CIDR range (${bad.join(', ')})` : null;
}

/** security.CheckWildcardValues: exact, `x*`, `*x` or `*`, never empty. */
function checkWildcardValues(key: string, values: readonly string[]): string | null {
  for (const v of values) {
    if (v === '') return `empty value not allowed, found in ${key}`;
    const stars = v.split('*').length - 1;
    if (stars > 1) return `at most one wildcard is allowed, found in ${key}: "${v}"`;
    if (stars === 1 && v !== '*' && !v.startsWith('*') && !v.endsWith('*')) {
      return `wildcard is only allowed at the start or end, found in ${key}: "${v}"`;
    }
  }
  return null;
}

/** security.CheckTrustDomainValues: wildcard values without `/`. */
function checkTrustDomainValues(key: string, values: readonly string[]): string | null {
  const e = checkWildcardValues(key, values);
  if (e) return e;
  const bad = values.find((v) => v.includes('/'));
  return bad === undefined ? null : `trust domain must not contain '/', found in ${key}: "${bad}"`;
}

/** security.CheckServiceAccount: `<name>` or `<namespace>/<name>`, no wildcard, at most 16. */
function checkServiceAccount(key: string, values: readonly string[]): string | null {
  if (values.length > 16) return 'may not have more than 16 values';
  for (const v of values) {
    if (v === '') return `empty value not allowed, found in ${key}`;
    if (v.includes('*')) return `wildcard not allowed, found in ${key}`;
    const slashes = v.split('/').length - 1;
    if (slashes > 1) {
      return `expected format 'serviceAccount' or 'namespace/serviceAccount', found "${v}" in ${key}`;
    }
    if (v.length > 320) return `value cannot exceed 320 characters, found "${v}" in ${key}`;
    const [ns, sa] = v.split('/') as [string, string | undefined];
    if (slashes === 1 && ns === '') {
      return `expected format 'serviceAccount' or 'namespace/serviceAccount', found empty namespace "${v}" in ${key}`;
    }
    if (slashes === 1 && sa === '') {
      return `expected format 'serviceAccount' or 'namespace/serviceAccount', found empty serviceAccount "${v}" in ${key}`;
    }
  }
  return null;
}

function validatePorts(values: readonly string[]): string | null {
  const bad = values.filter((v) => !/^\d+$/.test(v) || Number(v) > 65535);
  return bad.length ? `bad port (${bad.join(', ')})` : null;
}

function validateAuthorizationPolicy(ap: AuthorizationPolicy): Diagnostic[] {
  const out: Diagnostic[] = [];
  const label = resourceLabel(ap);
  const err = (field: string, msg: string): void => {
    out.push(diagnostic('error', label, field, `${msg} (${WEBHOOK})`));
  };
  const warn = (field: string, msg: string): void => {
    out.push(diagnostic('warning', label, field, msg));
  };

  const dryRun = ap.meta.annotations['istio.io/dry-run'];
  if (dryRun !== undefined) {
    const field = 'metadata.annotations.istio.io/dry-run';
    if (ap.action !== 'ALLOW' && ap.action !== 'DENY') {
      err(field, `istio.io/dry-run only supports action ALLOW/DENY, found ${ap.action}`);
    } else if (parseGoBool(dryRun) === undefined) {
      err(field, `invalid value "${dryRun}": istiod treats it as false and enforces the policy`);
    }
  }
  validateAttachment(ap, err, warn);

  if (ap.action === 'CUSTOM') {
    if (ap.rules.length === 0) {
      err(
        'spec.rules',
        'CUSTOM action without `rules` is meaningless as it will never be triggered',
      );
    } else if (!ap.provider) {
      err('spec.provider.name', '`provider.name` must not be empty');
    }
    ap.rules.forEach((rule, i) => {
      if (!rule) return;
      rule.from.forEach((src, j) => {
        if (!src) return;
        for (const f of [
          'namespaces',
          'notNamespaces',
          'serviceAccounts',
          'notServiceAccounts',
          'trustDomains',
          'notTrustDomains',
          'principals',
          'notPrincipals',
          'requestPrincipals',
          'notRequestPrincipals',
        ] as const) {
          if (src[f].length) {
            err(
              `spec.rules[${i}].from[${j}].source.${f}`,
              `${f} is currently not supported with CUSTOM action`,
            );
          }
        }
      });
      rule.when.forEach((c, j) => {
        if (
          c.key === 'source.namespace' ||
          c.key === 'source.serviceAccount' ||
          c.key === 'source.trustDomain' ||
          c.key === 'source.principal' ||
          c.key.startsWith('request.auth.')
        ) {
          err(
            `spec.rules[${i}].when[${j}].key`,
            `${c.key} is currently not supported with CUSTOM action`,
          );
        }
      });
    });
  }
  if (ap.provider !== null && ap.action !== 'CUSTOM') {
    err('spec.provider', `\`provider\` must not be with non CUSTOM action, found ${ap.action}`);
  }
  if (ap.action === 'DENY' && ap.rules.length === 0) {
    err(
      'spec.rules',
      'DENY action without `rules` is meaningless as it will never be triggered; add an empty rule `{}` to match every request',
    );
  }

  ap.rules.forEach((rule, i) => {
    const at = `spec.rules[${i}]`;
    if (!rule) {
      err(at, '`rule` must not be nil');
      return;
    }
    let fromExists = false;
    let toExists = false;
    let tcpInFrom = false;
    let tcpInTo = false;
    rule.from.forEach((src, j) => {
      const sat = `${at}.from[${j}].source`;
      if (!src) {
        err(sat, '`from.source` must not be nil');
        return;
      }
      fromExists = true;
      const total = Object.values(src).reduce((n, v) => n + v.length, 0);
      if (total === 0) err(sat, '`from.source` must not be empty');
      // serviceAccounts with namespaces or principals: the CRD's CEL rule refuses it already.
      for (const f of ['ipBlocks', 'notIpBlocks', 'remoteIpBlocks', 'notRemoteIpBlocks'] as const) {
        const e = validateIps(src[f]);
        if (e) err(`${sat}.${f}`, e);
      }
      for (const [f, values] of Object.entries(src)) {
        if (values.some((v) => v === ''))
          err(`${sat}.${f}`, `empty value not allowed, found in ${f}`);
      }
      for (const f of ['serviceAccounts', 'notServiceAccounts'] as const) {
        const e = checkServiceAccount(
          f === 'serviceAccounts' ? 'ServiceAccounts' : 'NotServiceAccounts',
          src[f],
        );
        if (e) err(`${sat}.${f}`, e);
      }
      for (const f of ['trustDomains', 'notTrustDomains'] as const) {
        const e = checkTrustDomainValues(
          f === 'trustDomains' ? 'TrustDomains' : 'NotTrustDomains',
          src[f],
        );
        if (e) err(`${sat}.${f}`, e);
      }
      const tcpFields = [
        'principals',
        'notPrincipals',
        'ipBlocks',
        'notIpBlocks',
        'namespaces',
        'notNamespaces',
        'remoteIpBlocks',
        'notRemoteIpBlocks',
        'serviceAccounts',
        'notServiceAccounts',
      ] as const;
      if (tcpFields.some((f) => src[f].length > 0)) tcpInFrom = true;
    });
    rule.to.forEach((op, j) => {
      const oat = `${at}.to[${j}].operation`;
      if (!op) {
        err(oat, '`to.operation` must not be nil');
        return;
      }
      toExists = true;
      const total = Object.values(op).reduce((n, v) => n + v.length, 0);
      if (total === 0) err(oat, '`to.operation` must not be empty');
      for (const f of ['ports', 'notPorts'] as const) {
        const e = validatePorts(op[f]);
        if (e) err(`${oat}.${f}`, e);
      }
      for (const [f, values] of Object.entries(op)) {
        if (values.some((v) => v === ''))
          err(`${oat}.${f}`, `empty value not allowed, found in ${f}`);
      }
      for (const f of ['paths', 'notPaths'] as const) {
        const e = checkValidPathTemplate(f === 'paths' ? 'Paths' : 'NotPaths', op[f]);
        if (e) err(`${oat}.${f}`, e);
      }
      if (op.ports.length + op.notPorts.length > 0) tcpInTo = true;
    });
    rule.when.forEach((c, j) => {
      const cat = `${at}.when[${j}]`;
      if (c.key === '') {
        err(`${cat}.key`, '`key` must not be empty');
        return;
      }
      if (c.values.length === 0 && c.notValues.length === 0) {
        err(cat, `at least one of \`values\` or \`notValues\` must be set for key ${c.key}`);
        return;
      }
      const ev = validateAttribute(c.key, c.values);
      if (ev) err(`${cat}.values`, `invalid \`value\` for \`key\` ${c.key}: ${ev}`);
      const en = validateAttribute(c.key, c.notValues);
      if (en) err(`${cat}.notValues`, `invalid \`notValue\` for \`key\` ${c.key}: ${en}`);
    });
    if (
      ap.action === 'DENY' &&
      // eslint-disable-next-line @typescript-eslint/no-unnecessary-condition -- set in the forEach callbacks above; the narrowing to false ignores callbacks
      ((fromExists && !toExists && !tcpInFrom) || (toExists && !tcpInTo))
    ) {
      warn(
        at,
        'this DENY rule uses only HTTP attributes: it will deny all traffic to TCP ports under its scope; scope it with `ports`',
      );
    }
  });
  return out;
}

const VALID_LITERAL = /^[a-zA-Z0-9\-._~%!$&'()+,;:@=]+$/;

/**
 * security.CheckValidPathTemplate: in a path with `{*}`/`{**}`, every segment is one of them or
 * an RFC 3986 literal, and `{**}` is the last operator; braces are refused everywhere else.
 */
function checkValidPathTemplate(key: string, paths: readonly string[]): string | null {
  for (const raw of paths) {
    const template = raw.includes('{*}') || raw.includes('{**}');
    const path = raw.replace(/^\/+|\/+$/g, '');
    let sawAny = false;
    for (const glob of path.split('/')) {
      if ((glob === '{*}' || glob === '{**}') && !sawAny) {
        if (glob === '{**}') sawAny = true;
        continue;
      }
      if (glob === '{*}' || glob === '{**}') {
        return `invalid or unsupported path ${path}, found in ${key}. {**} is not the last operator`;
      }
      if (/[{}]/.test(glob)) {
        return `invalid or unsupported path ${path}, found in ${key}. Contains '{' or '}' beyond a supported path template`;
      }
      if (template && !VALID_LITERAL.test(glob)) {
        return `invalid or unsupported path ${path}, found in ${key}. Contains segment ${glob} with invalid string literal`;
      }
    }
  }
  return null;
}
