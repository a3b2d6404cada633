import { InputFields, fieldError } from './input-fields.js';
import { parseIp } from './ip-match.js';
import { parseServiceRef, type ServiceRef } from './workload.js';

export type JwtClaims = Readonly<Record<string, unknown>>;

/** One request arriving at a workload's inbound port, as `castellan policy check` describes it. */
export interface PolicyRequest {
  readonly protocol: 'HTTP' | 'TCP';
  /** The workload (target) port. */
  readonly port: number;
  readonly tls: 'mtls' | 'plaintext';
  /** The peer's identity `<td>/ns/<ns>/sa/<sa>`; meaningful only over mTLS. */
  readonly sourcePrincipal: string | null;
  /** What the input claims the source namespace is; Istio derives it from the principal. */
  readonly sourceNamespace: string | null;
  readonly sourceIp: string | null;
  /** The original client address (X-Forwarded-For / PROXY protocol); defaults to sourceIp. */
  readonly remoteIp: string | null;
  readonly destinationIp: string | null;
  readonly sni: string | null;
  readonly http: {
    /** `http.method`, else the `:method` header. */
    readonly method: string | null;
    /** `http.path`, else the `:path` header: as the client sent it; Envoy normalizes it. */
    readonly path: string | null;
    /** `:authority`: `http.host`, else the `:authority` or `host` header. */
    readonly host: string | null;
    /** `:scheme`: `http.scheme`, else the `:scheme` header, else `http`. */
    readonly scheme: string;
    /** Lower-cased names; repeated values joined with ',' as Envoy presents them. */
    readonly headers: Readonly<Record<string, string>>;
  } | null;
  /**
   * On a waypoint: the Service (or ServiceEntry) the request is addressed to, whose attached
   * policies apply. Null elsewhere, or when not given.
   */
  readonly service: ServiceRef | null;
  /** Absent: no token presented. */
  readonly jwt: { readonly valid: boolean; readonly claims: JwtClaims } | null;
  /** The CUSTOM provider's answer, when one applies. */
  readonly externalAuthorizer: { readonly decision: 'allow' | 'deny' } | null;
}

/**
 * The `request` of a `policy check` input. `defaultNamespace` is the namespace of a `service`
 * given without one (the workload's).
 */
export function parseRequest(
  value: unknown,
  path = 'request',
  defaultNamespace = 'default',
): PolicyRequest {
  const f = InputFields.of(value, path);
  const protocol = f.oneOf('protocol', ['HTTP', 'TCP'] as const, 'HTTP');
  const tls = f.oneOf('tls', ['mtls', 'plaintext'] as const);
  const source = f.object('source');
  const ip = (fields: InputFields | null, key: string): string | null => {
    const v = fields?.string(key);
    if (!fields || v === undefined) return null;
    if (!parseIp(v)) throw fieldError(fields.at(key), `"${v}" is not an IP address`);
    return v;
  };
  let principal = source?.string('principal') ?? null;
  if (principal?.startsWith('spiffe://')) principal = principal.slice('spiffe://'.length);
  if (principal !== null && principal === '') principal = null;
  const sourceIp = ip(source, 'ip');
  const http = f.object('http');
  if (protocol === 'HTTP' && !http)
    throw fieldError(f.at('http'), 'is required for an HTTP request');
  const jwt = f.object('jwt');
  const ext = f.object('externalAuthorizer');
  let headers: Record<string, string> = {};
  if (http) {
    const raw = http.raw('headers');
    if (raw !== undefined && raw !== null) {
      if (typeof raw !== 'object' || Array.isArray(raw)) {
        throw fieldError(http.at('headers'), 'must be a map of header name to value');
      }
      headers = {};
      for (const [k, v] of Object.entries(raw as Record<string, unknown>)) {
        const name = k.toLowerCase();
        const values = Array.isArray(v) ? v : [v];
        if (values.some((x) => typeof x !== 'string' && typeof x !== 'number')) {
          throw fieldError(`${http.at('headers')}.${k}`, 'must be a string or a list of strings');
        }
        const joined = values.map(String).join(',');
        headers[name] = name in headers ? `${headers[name]},${joined}` : joined;
      }
    }
  }
  const host = http?.string('host') ?? headers[':authority'] ?? headers['host'] ?? null;
  const scheme = http?.string('scheme') ?? headers[':scheme'] ?? 'http';
  const service = f.has('service')
    ? parseServiceRef(f.raw('service'), f.at('service'), defaultNamespace)
    : null;
  let claims: Record<string, unknown> = {};
  if (jwt) {
    const c = jwt.raw('claims');
    if (c !== undefined && c !== null) {
      if (typeof c !== 'object' || Array.isArray(c))
        throw fieldError(jwt.at('claims'), 'must be a map');
      claims = c as Record<string, unknown>;
    }
  }
  return {
    protocol,
    port: f.port('port', true) as number,
    tls,
    sourcePrincipal: principal,
    sourceNamespace: source?.string('namespace') ?? null,
    sourceIp,
    remoteIp: ip(f, 'remoteIp') ?? sourceIp,
    destinationIp: ip(f, 'destinationIp'),
    sni: f.string('sni') ?? null,
    http: http
      ? {
          method: http.string('method') ?? headers[':method'] ?? null,
          path: http.string('path') ?? headers[':path'] ?? null,
          host,
          scheme,
          headers,
        }
      : null,
    service,
    jwt: jwt ? { valid: jwt.boolean('valid') ?? true, claims } : null,
    externalAuthorizer: ext
      ? { decision: ext.oneOf('decision', ['allow', 'deny'] as const) }
      : null,
  };
}
