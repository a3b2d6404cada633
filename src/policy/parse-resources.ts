import { diagnostic, type Diagnostic } from './diagnostic.js';
import {
  AUTHORIZATION_ACTIONS,
  MTLS_MODES,
  OPERATION_FIELDS,
  SOURCE_FIELDS,
  type AuthorizationAction,
  type AuthorizationPolicy,
  type Condition,
  type JwtRule,
  type MtlsMode,
  type Operation,
  type PeerAuthentication,
  type RequestAuthentication,
  type ResourceMeta,
  type Rule,
  type SecurityKind,
  type SecurityResource,
  type Source,
  type TargetRef,
} from './resource.js';

/** A parsed manifest document and where it came from (`file.yaml#2`). */
export interface ManifestDocument {
  readonly origin: string;
  readonly object: unknown;
}

export interface ParsedResources {
  readonly resources: SecurityResource[];
  readonly diagnostics: Diagnostic[];
}

const GROUP = 'security.istio.io';
const VERSIONS = new Set(['v1', 'v1beta1']);
const DRY_RUN = 'istio.io/dry-run';
const KINDS: readonly SecurityKind[] = [
  'PeerAuthentication',
  'AuthorizationPolicy',
  'RequestAuthentication',
];

/** The presence test of the CRD's CEL rules (`has(self.x)`): set, and not null (pruned). */
function present(obj: Record<string, unknown>, key: string): boolean {
  return obj[key] !== undefined && obj[key] !== null;
}

/**
 * Turns Kubernetes objects into typed PeerAuthentication, AuthorizationPolicy and
 * RequestAuthentication resources. Other kinds (and other API groups) are ignored; `kind: List`
 * is unpacked. An object that breaks the CRD (a wrong type, an unknown enum value, or one of
 * its CEL rules, as Istio's crd-all.gen.yaml declares them) could never be stored by
 * Kubernetes, so it is left out with an error diagnostic instead of being guessed at.
 */
export function parseResources(documents: readonly ManifestDocument[]): ParsedResources {
  const resources: SecurityResource[] = [];
  const diagnostics: Diagnostic[] = [];
  const visit = (origin: string, object: unknown): void => {
    if (!isRecord(object)) return;
    if (object['kind'] === 'List' && Array.isArray(object['items'])) {
      object['items'].forEach((item, i) => visit(`${origin}.items[${i}]`, item));
      return;
    }
    const apiVersion = object['apiVersion'];
    const kind = object['kind'];
    if (typeof apiVersion !== 'string' || typeof kind !== 'string') return;
    const [group, version] = apiVersion.split('/');
    if (group !== GROUP) return;
    if (!(KINDS as readonly string[]).includes(kind)) return;
    if (!VERSIONS.has(version ?? '')) {
      diagnostics.push(
        diagnostic(
          'error',
          `${kind} ${origin}`,
          'apiVersion',
          `unsupported version "${apiVersion}": use security.istio.io/v1 or v1beta1`,
        ),
      );
      return;
    }
    const reader = new SchemaReader(kind, origin);
    const resource =
      kind === 'PeerAuthentication'
        ? reader.peerAuthentication(object)
        : kind === 'AuthorizationPolicy'
          ? reader.authorizationPolicy(object)
          : reader.requestAuthentication(object);
    diagnostics.push(...reader.diagnostics);
    if (resource && !reader.failed) resources.push(resource);
  };
  for (const doc of documents) visit(doc.origin, doc.object);
  return { resources, diagnostics };
}

/** Reads one object against the CRD schema, collecting every problem rather than the first. */
class SchemaReader {
  readonly diagnostics: Diagnostic[] = [];
  failed = false;
  private label: string;

  constructor(
    private readonly kind: string,
    private readonly origin: string,
  ) {
    this.label = `${kind} ${origin}`;
  }

  private error(field: string, message: string): void {
    this.failed = true;
    this.diagnostics.push(
      diagnostic('error', this.label, field, `${message}; Kubernetes rejects it (not applied)`),
    );
  }

  private warn(field: string, message: string): void {
    this.diagnostics.push(diagnostic('warning', this.label, field, message));
  }

  private meta(object: Record<string, unknown>): ResourceMeta | null {
    const metadata = object['metadata'];
    if (!isRecord(metadata)) {
      this.error('metadata', 'metadata is missing');
      return null;
    }
    const name = metadata['name'];
    if (typeof name !== 'string' || name === '') {
      this.error('metadata.name', 'metadata.name must be a non-empty string');
      return null;
    }
    let namespace = metadata['namespace'];
    if (namespace === undefined) {
      namespace = 'default';
      this.label = `${this.kind} default/${name}`;
      this.warn('metadata.namespace', 'no namespace: assumed "default", as kubectl would');
    } else if (typeof namespace !== 'string' || namespace === '') {
      this.error('metadata.namespace', 'metadata.namespace must be a non-empty string');
      return null;
    }
    this.label = `${this.kind} ${namespace as string}/${name}`;
    let creationTimestamp: number | null = null;
    const ts = metadata['creationTimestamp'];
    if (ts instanceof Date) creationTimestamp = ts.getTime();
    else if (typeof ts === 'string') {
      const ms = Date.parse(ts);
      if (Number.isNaN(ms)) this.error('metadata.creationTimestamp', `"${ts}" is not a date-time`);
      else creationTimestamp = ms;
    } else if (ts !== undefined && ts !== null) {
      this.error('metadata.creationTimestamp', 'must be an RFC 3339 date-time string');
    }
    const annotations: Record<string, string> = {};
    const rawAnnotations = metadata['annotations'];
    if (isRecord(rawAnnotations)) {
      for (const [k, v] of Object.entries(rawAnnotations)) {
        if (typeof v === 'string') annotations[k] = v;
        else this.error(`metadata.annotations.${k}`, 'annotation values must be strings');
      }
    } else if (rawAnnotations !== undefined && rawAnnotations !== null) {
      this.error('metadata.annotations', 'must be a map of strings');
    }
    return {
      namespace: namespace as string,
      name,
      creationTimestamp,
      annotations,
      origin: this.origin,
    };
  }

  private spec(object: Record<string, unknown>): Record<string, unknown> {
    const spec = object['spec'];
    if (spec === undefined || spec === null) return {};
    if (!isRecord(spec)) {
      this.error('spec', 'spec must be an object');
      return {};
    }
    return spec;
  }

  private unknownFields(obj: Record<string, unknown>, known: readonly string[], at: string): void {
    for (const key of Object.keys(obj)) {
      if (!known.includes(key)) {
        this.warn(
          at ? `${at}.${key}` : key,
          `unknown field "${key}": Kubernetes prunes it, so it has no effect`,
        );
      }
    }
  }

  private strings(obj: Record<string, unknown>, key: string, at: string): string[] {
    const v = obj[key];
    if (v === undefined || v === null) return [];
    if (!Array.isArray(v)) {
      this.error(`${at}.${key}`, 'must be a list of strings');
      return [];
    }
    const out: string[] = [];
    v.forEach((item, i) => {
      if (typeof item === 'string') out.push(item);
      // YAML turns unquoted 8080 into a number; the CRD schema says string, so does Kubernetes.
      else this.error(`${at}.${key}[${i}]`, `must be a string, found ${typeOf(item)}`);
    });
    return out;
  }

  private selector(spec: Record<string, unknown>): Record<string, string> | null {
    const sel = spec['selector'];
    if (sel === undefined || sel === null) return null;
    if (!isRecord(sel)) {
      this.error('spec.selector', 'must be an object with matchLabels');
      return null;
    }
    this.unknownFields(sel, ['matchLabels'], 'spec.selector');
    const labels = sel['matchLabels'];
    const out: Record<string, string> = {};
    if (labels === undefined || labels === null) return out;
    if (!isRecord(labels)) {
      this.error('spec.selector.matchLabels', 'must be a map of strings');
      return out;
    }
    for (const [k, v] of Object.entries(labels)) {
      const at = `spec.selector.matchLabels.${k}`;
      if (typeof v !== 'string') {
        this.error(at, 'label values must be strings');
        continue;
      }
      // The CRD's CEL rules on WorkloadSelector.matchLabels.
      if (k === '') this.error(at, 'key must not be empty');
      if (k.includes('*')) this.error(at, 'wildcard not allowed in label key match');
      if (v.includes('*')) this.error(at, 'wildcard not allowed in label value match');
      if (v.length > 63) this.error(at, 'label values are at most 63 characters');
      out[k] = v;
    }
    return out;
  }

  /** The CRD's CEL rule on the spec: at most one of selector, targetRef, targetRefs. */
  private oneAttachment(spec: Record<string, unknown>): void {
    const set = ['selector', 'targetRef', 'targetRefs'].filter((k) => present(spec, k));
    if (set.length > 1) {
      this.error('spec', `only one of targetRefs or selector can be set (found ${set.join(', ')})`);
    }
  }

  private targetRefs(spec: Record<string, unknown>): {
    targetRef: TargetRef | null;
    targetRefs: TargetRef[];
  } {
    const ref = spec['targetRef'];
    const targetRef =
      ref === undefined || ref === null ? null : this.targetRef(ref, 'spec.targetRef');
    const targetRefs: TargetRef[] = [];
    const refs = spec['targetRefs'];
    if (refs !== undefined && refs !== null) {
      if (!Array.isArray(refs)) this.error('spec.targetRefs', 'must be a list');
      else {
        if (refs.length > 16) this.error('spec.targetRefs', 'at most 16 items');
        refs.forEach((r, i) => {
          const t = this.targetRef(r, `spec.targetRefs[${i}]`);
          if (t) targetRefs.push(t);
        });
      }
    }
    return { targetRef, targetRefs };
  }

  peerAuthentication(object: Record<string, unknown>): PeerAuthentication | null {
    const meta = this.meta(object);
    if (!meta) return null;
    const spec = this.spec(object);
    this.unknownFields(spec, ['selector', 'mtls', 'portLevelMtls'], 'spec');
    const selector = this.selector(spec);
    const mode = this.mtlsMode(spec['mtls'], 'spec.mtls');
    let portLevelMtls: { port: number; mode: MtlsMode }[] | null = null;
    const ports = spec['portLevelMtls'];
    if (ports !== undefined && ports !== null) {
      if (!isRecord(ports)) {
        this.error('spec.portLevelMtls', 'must be a map from port number to {mode}');
      } else {
        portLevelMtls = [];
        for (const [key, value] of Object.entries(ports)) {
          const port = /^\d+$/.test(key) ? Number(key) : NaN;
          if (!Number.isInteger(port) || port > 4294967295) {
            this.error(`spec.portLevelMtls.${key}`, 'keys must be port numbers');
            continue;
          }
          portLevelMtls.push({ port, mode: this.mtlsMode(value, `spec.portLevelMtls.${key}`) });
        }
        portLevelMtls.sort((a, b) => a.port - b.port);
      }
    }
    return {
      kind: 'PeerAuthentication',
      meta,
      selector: selector && Object.keys(selector).length > 0 ? selector : null,
      mode,
      portLevelMtls,
    };
  }

  private mtlsMode(v: unknown, at: string): MtlsMode {
    if (v === undefined || v === null) return 'UNSET';
    if (!isRecord(v)) {
      this.error(at, 'must be an object with a mode');
      return 'UNSET';
    }
    this.unknownFields(v, ['mode'], at);
    const mode = v['mode'];
    if (mode === undefined || mode === null) return 'UNSET';
    if (typeof mode !== 'string' || !(MTLS_MODES as readonly string[]).includes(mode)) {
      this.error(`${at}.mode`, `${quoted(mode)} is not one of ${MTLS_MODES.join(', ')}`);
      return 'UNSET';
    }
    return mode as MtlsMode;
  }

  authorizationPolicy(object: Record<string, unknown>): AuthorizationPolicy | null {
    const meta = this.meta(object);
    if (!meta) return null;
    const spec = this.spec(object);
    this.unknownFields(
      spec,
      ['selector', 'targetRef', 'targetRefs', 'rules', 'action', 'provider'],
      'spec',
    );
    const selector = this.selector(spec);
    let action: AuthorizationAction = 'ALLOW';
    const rawAction = spec['action'];
    if (rawAction !== undefined && rawAction !== null) {
      if (
        typeof rawAction === 'string' &&
        (AUTHORIZATION_ACTIONS as readonly string[]).includes(rawAction)
      ) {
        action = rawAction as AuthorizationAction;
      } else {
        this.error(
          'spec.action',
          `${quoted(rawAction)} is not one of ${AUTHORIZATION_ACTIONS.join(', ')}`,
        );
      }
    }
    let provider: string | null = null;
    const rawProvider = spec['provider'];
    if (rawProvider !== undefined && rawProvider !== null) {
      if (!isRecord(rawProvider)) this.error('spec.provider', 'must be an object with a name');
      else {
        const name = rawProvider['name'];
        if (name === undefined || name === null) provider = '';
        else if (typeof name === 'string') provider = name;
        else this.error('spec.provider.name', 'must be a string');
      }
    }
    this.oneAttachment(spec);
    const { targetRef, targetRefs } = this.targetRefs(spec);
    const rules: (Rule | null)[] = [];
    const rawRules = spec['rules'];
    if (rawRules !== undefined && rawRules !== null) {
      if (!Array.isArray(rawRules)) this.error('spec.rules', 'must be a list of rules');
      else {
        if (rawRules.length > 512) this.error('spec.rules', 'at most 512 items');
        rawRules.forEach((r, i) => rules.push(this.rule(r, `spec.rules[${i}]`)));
      }
    }
    return {
      kind: 'AuthorizationPolicy',
      meta,
      action,
      provider,
      selector,
      targetRef,
      targetRefs,
      rules,
      dryRun: parseGoBool(meta.annotations[DRY_RUN]) ?? false,
    };
  }

  requestAuthentication(object: Record<string, unknown>): RequestAuthentication | null {
    const meta = this.meta(object);
    if (!meta) return null;
    const spec = this.spec(object);
    this.unknownFields(spec, ['selector', 'targetRef', 'targetRefs', 'jwtRules'], 'spec');
    const selector = this.selector(spec);
    this.oneAttachment(spec);
    const { targetRef, targetRefs } = this.targetRefs(spec);
    const jwtRules: (JwtRule | null)[] = [];
    const raw = spec['jwtRules'];
    if (raw !== undefined && raw !== null) {
      if (!Array.isArray(raw)) this.error('spec.jwtRules', 'must be a list');
      else {
        if (raw.length > 4096) this.error('spec.jwtRules', 'at most 4096 items');
        raw.forEach((r, i) => jwtRules.push(this.jwtRule(r, `spec.jwtRules[${i}]`)));
      }
    }
    return { kind: 'RequestAuthentication', meta, selector, targetRef, targetRefs, jwtRules };
  }

  private jwtRule(v: unknown, at: string): JwtRule | null {
    if (v === null || v === undefined) return null;
    if (!isRecord(v)) {
      this.error(at, 'a JWT rule must be an object');
      return null;
    }
    const fields = [
      'issuer',
      'audiences',
      'jwksUri',
      'jwks_uri',
      'jwks',
      'fromHeaders',
      'fromParams',
      'fromCookies',
      'outputPayloadToHeader',
      'forwardOriginalToken',
      'outputClaimToHeaders',
      'timeout',
      'spaceDelimitedClaims',
      'presence',
    ];
    this.unknownFields(v, fields, at);
    const str = (k: string, minLength = 0): string => {
      const x = v[k];
      if (x === undefined || x === null) return '';
      if (typeof x !== 'string') {
        this.error(`${at}.${k}`, 'must be a string');
        return '';
      }
      if (x.length < minLength) this.error(`${at}.${k}`, 'must not be empty');
      return x;
    };
    const nonEmpty = (k: string): string[] => {
      const list = this.strings(v, k, at);
      if (list.some((x) => x === '')) this.error(`${at}.${k}`, 'items must not be empty');
      return list;
    };
    const issuer = str('issuer', 1);
    const jwksKeys = ['jwksUri', 'jwks_uri', 'jwks'].filter((k) => present(v, k));
    if (jwksKeys.length > 1) this.error(at, 'only one of jwks or jwksUri can be set');
    const jwksUri = str('jwksUri', 1) || str('jwks_uri', 1);
    if (jwksUri.length > 2048) this.error(`${at}.jwksUri`, 'at most 2048 characters');
    if (jwksUri !== '' && !/^https?:\/\//i.test(jwksUri)) {
      this.error(`${at}.jwksUri`, 'url must have scheme http:// or https://');
    }
    const list = (k: string): Record<string, unknown>[] => {
      const x = v[k];
      if (x === undefined || x === null) return [];
      if (!Array.isArray(x)) {
        this.error(`${at}.${k}`, 'must be a list');
        return [];
      }
      return x.filter((item, i) => {
        if (isRecord(item)) return true;
        this.error(`${at}.${k}[${i}]`, 'must be an object');
        return false;
      }) as Record<string, unknown>[];
    };
    const fromHeaders = list('fromHeaders').map((h, i) => {
      const hat = `${at}.fromHeaders[${i}]`;
      const name = h['name'];
      const prefix = h['prefix'];
      if (typeof name !== 'string' || name === '') this.error(`${hat}.name`, 'is required');
      if (prefix !== undefined && prefix !== null && typeof prefix !== 'string') {
        this.error(`${hat}.prefix`, 'must be a string');
      }
      return {
        name: typeof name === 'string' ? name : '',
        prefix: typeof prefix === 'string' ? prefix : '',
      };
    });
    const outputClaimToHeaders = list('outputClaimToHeaders').map((h, i) => {
      const hat = `${at}.outputClaimToHeaders[${i}]`;
      const header = h['header'];
      const claim = h['claim'];
      if (typeof header !== 'string' || !/^[-_A-Za-z0-9]+$/.test(header)) {
        this.error(`${hat}.header`, 'is required and must match ^[-_A-Za-z0-9]+$');
      }
      if (typeof claim !== 'string' || claim === '') this.error(`${hat}.claim`, 'is required');
      return {
        header: typeof header === 'string' ? header : '',
        claim: typeof claim === 'string' ? claim : '',
      };
    });
    const forward = v['forwardOriginalToken'];
    if (forward !== undefined && forward !== null && typeof forward !== 'boolean') {
      this.error(`${at}.forwardOriginalToken`, 'must be true or false');
    }
    const presence = v['presence'];
    if (
      presence !== undefined &&
      presence !== null &&
      presence !== 'OPTIONAL' &&
      presence !== 'REQUIRED'
    ) {
      this.error(`${at}.presence`, `${JSON.stringify(presence)} is not one of OPTIONAL, REQUIRED`);
    }
    const timeout = str('timeout');
    if (timeout !== '' && !/^(\d+(\.\d+)?(ns|us|µs|ms|s|m|h))+$/.test(timeout)) {
      this.error(`${at}.timeout`, 'must be a valid duration greater than 1ms');
    }
    const spaceDelimited = present(v, 'spaceDelimitedClaims')
      ? nonEmpty('spaceDelimitedClaims')
      : null;
    if (spaceDelimited && spaceDelimited.length > 64) {
      this.error(`${at}.spaceDelimitedClaims`, 'at most 64 items');
    }
    return {
      issuer,
      audiences: nonEmpty('audiences'),
      jwksUri,
      jwks: str('jwks'),
      fromHeaders,
      fromParams: nonEmpty('fromParams'),
      fromCookies: nonEmpty('fromCookies'),
      forwardOriginalToken: forward === true,
      outputPayloadToHeader: str('outputPayloadToHeader'),
      outputClaimToHeaders,
      spaceDelimitedClaims: spaceDelimited,
    };
  }

  private targetRef(v: unknown, at: string): TargetRef | null {
    if (!isRecord(v)) {
      this.error(at, 'must be an object');
      return null;
    }
    this.unknownFields(v, ['group', 'kind', 'name', 'namespace'], at);
    const str = (k: string): string => {
      const x = v[k];
      if (x === undefined || x === null) return '';
      if (typeof x === 'string') return x;
      this.error(`${at}.${k}`, 'must be a string');
      return '';
    };
    const ref = {
      group: str('group'),
      kind: str('kind'),
      name: str('name'),
      namespace: str('namespace'),
    };
    // istio/api PolicyTargetReference as the CRD declares it.
    if (ref.group !== '' && !GROUP_NAME.test(ref.group)) {
      this.error(`${at}.group`, `"${ref.group}" is not a valid API group`);
    }
    if (!KIND_NAME.test(ref.kind)) this.error(`${at}.kind`, 'is required and must be a kind name');
    if (ref.name === '') this.error(`${at}.name`, 'is required');
    if (ref.namespace !== '') {
      this.error(`${at}.namespace`, 'cross namespace referencing is not currently supported');
    }
    return ref;
  }

  private rule(v: unknown, at: string): Rule | null {
    if (v === null || v === undefined) return null;
    if (!isRecord(v)) {
      this.error(at, 'a rule must be an object');
      return null;
    }
    this.unknownFields(v, ['from', 'to', 'when'], at);
    const list = (key: string): unknown[] => {
      const x = v[key];
      if (x === undefined || x === null) return [];
      if (!Array.isArray(x)) {
        this.error(`${at}.${key}`, 'must be a list');
        return [];
      }
      return x;
    };
    const rawFrom = list('from');
    if (rawFrom.length > 512) this.error(`${at}.from`, 'at most 512 items');
    const from = rawFrom.map((entry, i) =>
      this.entry(entry, `${at}.from[${i}]`, 'source', SOURCE_FIELDS),
    ) as (Source | null)[];
    const to = list('to').map((entry, i) =>
      this.entry(entry, `${at}.to[${i}]`, 'operation', OPERATION_FIELDS),
    ) as (Operation | null)[];
    const when: Condition[] = [];
    list('when').forEach((c, i) => {
      const cat = `${at}.when[${i}]`;
      if (!isRecord(c)) {
        this.error(cat, 'a condition must be an object with key and values');
        return;
      }
      this.unknownFields(c, ['key', 'values', 'notValues'], cat);
      const key = c['key'];
      if (typeof key !== 'string') {
        this.error(`${cat}.key`, 'key is required and must be a string');
        return;
      }
      when.push({
        key,
        values: this.strings(c, 'values', cat),
        notValues: this.strings(c, 'notValues', cat),
      });
    });
    return { from, to, when };
  }

  private entry(
    v: unknown,
    at: string,
    inner: 'source' | 'operation',
    fields: readonly string[],
  ): Record<string, readonly string[]> | null {
    if (v === null || v === undefined) return null;
    if (!isRecord(v)) {
      this.error(at, `must be an object with ${inner}`);
      return null;
    }
    this.unknownFields(v, [inner], at);
    const body = v[inner];
    if (body === undefined || body === null) return null;
    if (!isRecord(body)) {
      this.error(`${at}.${inner}`, 'must be an object');
      return null;
    }
    const bat = `${at}.${inner}`;
    this.unknownFields(body, fields, bat);
    const out: Record<string, readonly string[]> = {};
    for (const f of fields) out[f] = this.strings(body, f, bat);
    if (inner === 'source') {
      for (const f of ['serviceAccounts', 'notServiceAccounts']) {
        const list = out[f] ?? [];
        if (list.length > 16) this.error(`${bat}.${f}`, 'at most 16 items');
        if (list.some((x) => x.length > 320))
          this.error(`${bat}.${f}`, 'items are at most 320 characters');
      }
      // The CRD's CEL rule on Source.
      if (
        (present(body, 'serviceAccounts') || present(body, 'notServiceAccounts')) &&
        ['principals', 'notPrincipals', 'namespaces', 'notNamespaces'].some((k) => present(body, k))
      ) {
        this.error(bat, 'Cannot set serviceAccounts with namespaces or principals');
      }
    }
    return out;
  }
}

const GROUP_NAME = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;
const KIND_NAME = /^[a-zA-Z]([-a-zA-Z0-9]*[a-zA-Z0-9])?$/;

/** Go's strconv.ParseBool, which istiod uses for istio.io/dry-run; undefined when unparseable. */
export function parseGoBool(value: string | undefined): boolean | undefined {
  if (value === undefined) return undefined;
  if (['1', 't', 'T', 'TRUE', 'true', 'True'].includes(value)) return true;
  if (['0', 'f', 'F', 'FALSE', 'false', 'False'].includes(value)) return false;
  return undefined;
}

export function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v) && !(v instanceof Date);
}

function typeOf(v: unknown): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'a list';
  return typeof v === 'object' ? 'an object' : `${typeof v} ${JSON.stringify(v)}`;
}

/** A value as a message shows it: a string in quotes, anything else by its type. */
function quoted(v: unknown): string {
  return typeof v === 'string' ? `"${v}"` : typeOf(v);
}
