import { diagnostic, type Diagnostic } from './diagnostic.js';
import { parseCidr } from './ip-match.js';
import { parseGoBool } from './parse-resources.js';
import {
  resourceLabel,
  type AuthorizationPolicy,
  type PeerAuthentication,
  type SecurityResource,
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
  return r.kind === 'PeerAuthentication'
    ? validatePeerAuthentication(r)
    : validateAuthorizationPolicy(r);
}

const WEBHOOK = "Istio's validation webhook rejects this";

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
  out.push(...validateSelector(pa.selector, label));
  if (pa.meta.annotations['istio.io/dry-run'] !== undefined) {
    err(
      'metadata.annotations.istio.io/dry-run',
      'only AuthorizationPolicy supports istio.io/dry-run',
    );
  }
  return out;
}

function validateSelector(
  selector: Readonly<Record<string, string>> | null,
  label: string,
): Diagnostic[] {
  const out: Diagnostic[] = [];
  for (const [k, v] of Object.entries(selector ?? {})) {
    const field = `spec.selector.matchLabels.${k}`;
    if (k === '')
      out.push(
        diagnostic('error', label, field, `empty key is not supported in selector (${WEBHOOK})`),
      );
    if (k.includes('*') || v.includes('*')) {
      out.push(
        diagnostic(
          'error',
          label,
          field,
          `wildcard is not supported in selector: "${k}=${v}" (${WEBHOOK})`,
        ),
      );
    }
  }
  return out;
}

/** The `when` keys Istio knows by exact name (the map-like ones are matched by prefix). */
export const WHEN_EXACT_KEYS: ReadonlySet<string> = new Set([
  'source.ip',
  'remote.ip',
  'source.namespace',
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
  const selectorKinds = (ap.selector ? 1 : 0) + (ap.targetRefs.length ? 1 : 0);
  if (selectorKinds > 1) err('spec', 'only one of targetRefs or workloadSelector can be set');
  out.push(...validateSelector(ap.selector, label));
  if (ap.selector && Object.keys(ap.selector).length === 0) {
    warn('spec.selector', 'workload selector specified without labels: it selects every workload');
  }

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
      const identity =
        src.principals.length +
        src.notPrincipals.length +
        src.namespaces.length +
        src.notNamespaces.length;
      if (identity > 0 && src.serviceAccounts.length + src.notServiceAccounts.length > 0) {
        err(sat, 'cannot set serviceAccounts with namespaces or principals');
      }
      for (const f of ['ipBlocks', 'notIpBlocks', 'remoteIpBlocks', 'notRemoteIpBlocks'] as const) {
        const e = validateIps(src[f]);
        if (e) err(`${sat}.${f}`, e);
      }
      for (const [f, values] of Object.entries(src)) {
        if (values.some((v) => v === ''))
          err(`${sat}.${f}`, `empty value not allowed, found in ${f}`);
      }
      for (const f of ['serviceAccounts', 'notServiceAccounts'] as const) {
        for (const v of src[f]) {
          if (v.split('/').length > 2 || v.includes('*')) {
            err(`${sat}.${f}`, `"${v}" must be <name> or <namespace>/<name>, without wildcards`);
          }
        }
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
        if (op[f].some(unsupportedPathTemplate)) {
          err(`${oat}.${f}`, `invalid or unsupported path template, found in ${f}`);
        }
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

// Named variables `{x}`, `{x=*}`, empty braces, and bare `*`/`**` segments are not supported.
const UNSUPPORTED_TEMPLATE = /\/{\w+=\*[*]?}|{\w*}|\/\*[*]?|\*[*]?\//;

function unsupportedPathTemplate(path: string): boolean {
  return (path.includes('{*}') || path.includes('{**}')) && UNSUPPORTED_TEMPLATE.test(path);
}
