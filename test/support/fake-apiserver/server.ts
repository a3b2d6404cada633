import { createServer, type Server } from 'node:https';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import { randomBytes } from 'node:crypto';
import { writeFileSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { stringify as toYaml } from 'yaml';
import { makeServingTls, type ServingTls } from './tls.js';
import {
  RESOURCE_TYPES,
  apiVersionOf,
  findResourceType,
  storageKeyOf,
  type ResourceType,
} from './resources.js';
import { ObjectStore, type KubeObject, type StoreEvent } from './store.js';
import { StatusError, statusErrors, successStatus, type Status } from './status.js';
import { parseFieldSelector, parseLabelSelector, type Predicate } from './selectors.js';
import { jsonPatch, mergePatch, type Json } from './patch.js';
import { ServiceAccountIssuer, type TokenReviewStatus } from './service-account-issuer.js';
import { toTable, wantsTable } from './table.js';

/** A Kubernetes API verb, as RBAC and audit logs name them. */
export type Verb =
  'get' | 'list' | 'watch' | 'create' | 'update' | 'patch' | 'delete' | 'discovery' | 'other';

/** One request the fake served, for tests that count API calls. */
export interface RequestRecord {
  readonly method: string;
  /** The path without the query string. */
  readonly path: string;
  readonly query: URLSearchParams;
  readonly verb: Verb;
  readonly group: string;
  readonly resource: string;
  readonly namespace: string | undefined;
  readonly name: string | undefined;
  /** The bearer token's user name, or undefined when unauthenticated. */
  readonly user: string | undefined;
  /** The HTTP status answered (set when the response is sent; 200 for watches). */
  code?: number;
}

export type RequestFilter = Partial<
  Pick<
    RequestRecord,
    'method' | 'path' | 'verb' | 'group' | 'resource' | 'namespace' | 'name' | 'user' | 'code'
  >
>;

export interface FakeApiServerOptions {
  /** The bearer token of the default user (`castellan-test`); random when not given. */
  token?: string;
  /** More tokens → user names. Every request must carry one of the known tokens. */
  users?: Record<string, string>;
  /** The service account issuer (`iss` of tokens, OIDC discovery). Default as kubeadm's. */
  issuer?: string;
  /** The time the token issuer and TokenReview see, ms. Default Date.now. */
  now?: () => number;
  /** Namespaces besides default, kube-system, kube-public and kube-node-lease. */
  namespaces?: string[];
  /** How often watches that asked for bookmarks get one. Default 1000 ms. */
  bookmarkIntervalMs?: number;
  /** Server-side end of every watch after this long (the real server's request timeout). */
  watchTimeoutMs?: number;
  /** Events kept for resuming watches; older resourceVersions get 410 Gone. */
  historyLimit?: number;
  /** The port to listen on; 0 (default) picks one, kept across stop()/start(). */
  port?: number;
}

/** Answers a TokenReview: a status, or undefined to fall back to verifying issued tokens. */
export type TokenReviewHandler = (spec: {
  token: string;
  audiences?: string[];
}) => TokenReviewStatus | undefined | Promise<TokenReviewStatus | undefined>;

interface Injected {
  filter: RequestFilter;
  remaining: number;
  status: Status;
}

/** kubectl's short names for the core types we serve (`kubectl get cm`, `ns`, `ev`). */
const SHORT_NAMES: Record<string, string[]> = {
  namespaces: ['ns'],
  configmaps: ['cm'],
  events: ['ev'],
  pods: ['po'],
  serviceaccounts: ['sa'],
};

const DEFAULT_NAMESPACES = ['default', 'kube-system', 'kube-public', 'kube-node-lease'];

/**
 * An OpenAPI v2 document with no definitions, protobuf-encoded (openapi_v2.Document:
 * swagger = 1, info = 2 {title = 1, version = 2}).
 */
const OPENAPI_V2_PROTOBUF = (() => {
  const field = (n: number, bytes: Buffer): Buffer =>
    Buffer.concat([Buffer.from([(n << 3) | 2, bytes.length]), bytes]);
  const text = (n: number, value: string): Buffer => field(n, Buffer.from(value));
  return Buffer.concat([
    text(1, '2.0'),
    field(2, Buffer.concat([text(1, 'fake-apiserver'), text(2, 'v1')])),
  ]);
})();

function matches(r: RequestRecord, f: RequestFilter): boolean {
  return (Object.keys(f) as (keyof RequestFilter)[]).every((k) => f[k] === r[k]);
}

function withTypeMeta(t: ResourceType, version: string, obj: KubeObject): Record<string, unknown> {
  return { kind: t.kind, apiVersion: apiVersionOf(t.group, version), ...obj };
}

/** Parses a resource path: /api/v1/... or /apis/<group>/<version>/... */
function route(path: string): { group: string; version: string; rest: string[] } | undefined {
  const parts = path.split('/').filter(Boolean).map(decodeURIComponent);
  if (parts[0] === 'api' && parts.length >= 2) {
    return { group: '', version: parts[1] as string, rest: parts.slice(2) };
  }
  if (parts[0] === 'apis' && parts.length >= 3) {
    return { group: parts[1] as string, version: parts[2] as string, rest: parts.slice(3) };
  }
  return undefined;
}

/**
 * An in-process kube-apiserver for tests, faithful where clients can tell: HTTPS with its own
 * CA, bearer tokens, the real paths and JSON, a global resourceVersion, optimistic
 * concurrency (409 Conflict), AlreadyExists, NotFound, watches with resume and 410 Gone,
 * bookmarks, TokenReview and service account issuer discovery. Everything is in memory.
 */
export class FakeApiServer {
  readonly store: ObjectStore;
  readonly requests: RequestRecord[] = [];
  private server: Server | undefined;
  private readonly sockets = new Set<Socket>();
  private readonly watches = new Set<ServerResponse>();
  private readonly users: Map<string, string>;
  private injected: Injected[] = [];
  private tokenReviewHandler: TokenReviewHandler | undefined;
  private portNumber: number;
  /** When set, every resource request is checked with it; false → 403 Forbidden. */
  authorize: ((r: RequestRecord) => boolean) | undefined;

  private constructor(
    private readonly tls: ServingTls,
    readonly issuer: ServiceAccountIssuer,
    readonly token: string,
    private readonly options: FakeApiServerOptions,
    private readonly now: () => number,
  ) {
    this.store = new ObjectStore(now, options.historyLimit);
    this.users = new Map([[token, 'castellan-test'], ...Object.entries(options.users ?? {})]);
    this.portNumber = options.port ?? 0;
    const ns = RESOURCE_TYPES.find((t) => t.resource === 'namespaces') as ResourceType;
    for (const name of [...DEFAULT_NAMESPACES, ...(options.namespaces ?? [])]) {
      this.store.create(ns, undefined, namespaceObject(name));
    }
  }

  static async start(options: FakeApiServerOptions = {}): Promise<FakeApiServer> {
    const now = options.now ?? (() => Date.now());
    const [tls, issuer] = await Promise.all([
      makeServingTls(),
      ServiceAccountIssuer.create(
        options.issuer ?? 'https://kubernetes.default.svc.cluster.local',
        now,
      ),
    ]);
    const s = new FakeApiServer(
      tls,
      issuer,
      options.token ?? randomBytes(16).toString('hex'),
      options,
      now,
    );
    await s.start();
    return s;
  }

  /** The CA certificate (PEM) that signs the serving certificate: what clients must trust. */
  get caPem(): string {
    return this.tls.caPem;
  }

  get port(): number {
    return this.portNumber;
  }

  get url(): string {
    return `https://127.0.0.1:${this.portNumber}`;
  }

  get running(): boolean {
    return this.server !== undefined;
  }

  /** Listens (again) on the same port: state survives stop()/start(). */
  async start(): Promise<void> {
    if (this.server) return;
    const server = createServer({ key: this.tls.keyPem, cert: this.tls.certPem }, (req, res) => {
      this.handle(req, res).catch((e: unknown) => {
        if (!res.headersSent) this.sendStatus(res, statusErrors.internal(String(e)).status);
        else res.destroy();
      });
    });
    server.on('connection', (s: Socket) => {
      this.sockets.add(s);
      s.on('close', () => this.sockets.delete(s));
    });
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(this.portNumber, '127.0.0.1', () => {
        server.off('error', reject);
        resolve();
      });
    });
    const addr = server.address();
    if (addr && typeof addr === 'object') this.portNumber = addr.port;
    this.server = server;
  }

  /** Goes away as a crashed API server does: connections and watches are cut. */
  async stop(): Promise<void> {
    const server = this.server;
    if (!server) return;
    this.server = undefined;
    for (const w of this.watches) w.destroy();
    this.watches.clear();
    const closed = new Promise<void>((resolve) => server.close(() => resolve()));
    for (const s of this.sockets) s.destroy();
    server.closeAllConnections();
    await closed;
  }

  // ---- test controls -------------------------------------------------------------------

  /** Requests that match the filter (all fields given must be equal). */
  count(filter: RequestFilter = {}): number {
    return this.requests.filter((r) => matches(r, filter)).length;
  }

  resetRequests(): void {
    this.requests.length = 0;
  }

  /** The next `times` matching requests fail with this HTTP code (a Status body). */
  failNext(filter: RequestFilter, code: number, times = 1): void {
    const status: Status = {
      kind: 'Status',
      apiVersion: 'v1',
      metadata: {},
      status: 'Failure',
      message: `injected failure ${code}`,
      reason: code === 500 ? 'InternalError' : code === 429 ? 'TooManyRequests' : 'Unknown',
      code,
    };
    this.injected.push({ filter, remaining: times, status });
  }

  /** Overrides TokenReview answers (undefined → verify as the real server would). */
  setTokenReviewHandler(h: TokenReviewHandler | undefined): void {
    this.tokenReviewHandler = h;
  }

  /** Resolves `secrets`, `leases.coordination.k8s.io`, `peerauthentications.security.istio.io`. */
  resourceType(name: string): ResourceType {
    const dot = name.indexOf('.');
    const resource = dot < 0 ? name : name.slice(0, dot);
    const group = dot < 0 ? '' : name.slice(dot + 1);
    const t = RESOURCE_TYPES.find((x) => x.resource === resource && x.group === group);
    if (!t) throw new Error(`fake apiserver: unknown resource ${name}`);
    return t;
  }

  /** Reads an object straight from the store (not counted), or undefined. */
  getObject(resource: string, namespace: string | undefined, name: string): KubeObject | undefined {
    return this.store.tryGet(this.resourceType(resource), namespace, name);
  }

  listObjects(resource: string, namespace?: string): KubeObject[] {
    return this.store.list(this.resourceType(resource), namespace, () => true);
  }

  /** Creates or replaces an object straight in the store (not counted); watchers see it. */
  putObject(resource: string, namespace: string | undefined, obj: KubeObject): KubeObject {
    const t = this.resourceType(resource);
    const input = normalizeWrite(t, structuredClone(obj));
    const name = input.metadata.name as string;
    const cur = this.store.tryGet(t, namespace, name);
    if (!cur)
      return this.store.create(t, namespace, {
        ...input,
        metadata: { ...input.metadata, resourceVersion: undefined },
      });
    return this.store.update(t, namespace, name, {
      ...input,
      metadata: { ...input.metadata, resourceVersion: cur.metadata.resourceVersion },
    });
  }

  deleteObject(resource: string, namespace: string | undefined, name: string): void {
    const t = this.resourceType(resource);
    if (t.resource === 'namespaces' && t.group === '') {
      this.store.deleteNamespaceContents(RESOURCE_TYPES, name);
    }
    this.store.delete(t, namespace, name);
  }

  createNamespace(name: string, labels?: Record<string, string>): KubeObject {
    return this.putObject('namespaces', undefined, namespaceObject(name, labels));
  }

  /** A kubeconfig that reaches this server with the given token (default: the admin's). */
  kubeconfigYaml(options: { token?: string; namespace?: string; name?: string } = {}): string {
    const name = options.name ?? 'fake';
    return toYaml({
      apiVersion: 'v1',
      kind: 'Config',
      clusters: [
        {
          name,
          cluster: {
            server: this.url,
            'certificate-authority-data': Buffer.from(this.caPem).toString('base64'),
          },
        },
      ],
      users: [{ name, user: { token: options.token ?? this.token } }],
      contexts: [
        {
          name,
          context: {
            cluster: name,
            user: name,
            ...(options.namespace ? { namespace: options.namespace } : {}),
          },
        },
      ],
      'current-context': name,
    });
  }

  /** Writes kubeconfigYaml() to `file` (0600) and returns the path. */
  writeKubeconfig(file: string, options: { token?: string; namespace?: string } = {}): string {
    writeFileSync(file, this.kubeconfigYaml(options), { mode: 0o600 });
    return file;
  }

  /**
   * Writes what a pod sees in /var/run/secrets/kubernetes.io/serviceaccount (token, ca.crt,
   * namespace) under `dir`, and returns the env a pod gets (KUBERNETES_SERVICE_HOST/PORT).
   */
  writeInClusterFiles(dir: string, namespace = 'istio-system'): Record<string, string> {
    const sa = join(dir, 'var/run/secrets/kubernetes.io/serviceaccount');
    mkdirSync(sa, { recursive: true });
    writeFileSync(join(sa, 'token'), this.token);
    writeFileSync(join(sa, 'ca.crt'), this.caPem);
    writeFileSync(join(sa, 'namespace'), namespace);
    return { KUBERNETES_SERVICE_HOST: '127.0.0.1', KUBERNETES_SERVICE_PORT: String(this.port) };
  }

  // ---- HTTP ------------------------------------------------------------------------------

  private sendJson(res: ServerResponse, code: number, body: unknown): void {
    const text = JSON.stringify(body);
    res.writeHead(code, {
      'Content-Type': 'application/json',
      'Content-Length': Buffer.byteLength(text),
    });
    res.end(text);
  }

  private sendStatus(res: ServerResponse, status: Status): void {
    this.sendJson(res, status.code, status);
  }

  private async readBody(req: IncomingMessage): Promise<unknown> {
    const chunks: Buffer[] = [];
    for await (const c of req) chunks.push(c as Buffer);
    const text = Buffer.concat(chunks).toString('utf8');
    if (text.trim() === '') return undefined;
    try {
      return JSON.parse(text) as unknown;
    } catch {
      throw statusErrors.badRequest(`invalid JSON in request body: ${text.slice(0, 80)}`);
    }
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', 'https://fake');
    const method = (req.method ?? 'GET').toUpperCase();
    const auth = req.headers.authorization;
    const token = auth?.startsWith('Bearer ') ? auth.slice(7).trim() : undefined;
    const user = token !== undefined ? this.users.get(token) : undefined;
    const r = route(url.pathname);
    const record = describe(method, url, r, user);
    this.requests.push(record);
    res.on('finish', () => (record.code = res.statusCode));
    if (record.verb === 'watch') record.code = 200;
    try {
      if (['/healthz', '/livez', '/readyz'].includes(url.pathname)) {
        res.writeHead(200, { 'Content-Type': 'text/plain' });
        res.end('ok');
        return;
      }
      if (user === undefined) throw statusErrors.unauthorized();
      const inj = this.injected.find((i) => i.remaining > 0 && matches(record, i.filter));
      if (inj) {
        inj.remaining -= 1;
        this.injected = this.injected.filter((i) => i.remaining > 0);
        throw new StatusError(inj.status);
      }
      if (url.pathname === '/.well-known/openid-configuration') {
        this.sendJson(res, 200, this.issuer.openidConfiguration());
        return;
      }
      if (url.pathname === '/openid/v1/jwks') {
        res.writeHead(200, { 'Content-Type': 'application/jwk-set+json' });
        res.end(JSON.stringify(this.issuer.jwks()));
        return;
      }
      if (url.pathname === '/openapi/v2' && method === 'GET') {
        // kubectl validates what it sends (replace, apply) against the server's OpenAPI, read as
        // protobuf (gnostic's openapi_v2.Document) from here; a document without definitions
        // makes it skip validation of every kind, as for a kind the server has no schema for.
        // The media type kube-openapi's handler answers with (subTypeProtobuf): the one kubectl
        // asks for, with "@" in it, does not parse as a media type.
        res.writeHead(200, {
          'Content-Type': 'application/com.github.proto-openapi.spec.v2.v1.0+protobuf',
        });
        res.end(OPENAPI_V2_PROTOBUF);
        return;
      }
      if (url.pathname === '/version') {
        this.sendJson(res, 200, { major: '1', minor: '31', gitVersion: 'v1.31.0-fake' });
        return;
      }
      const discovery = method === 'GET' ? this.discovery(url.pathname) : undefined;
      if (discovery) {
        this.sendJson(res, 200, discovery);
        return;
      }
      if (!r) throw statusErrors.noRoute();
      await this.handleResource(req, res, url, method, r, record);
    } catch (e) {
      if (e instanceof StatusError) this.sendStatus(res, e.status);
      else throw e;
    }
  }

  /**
   * Legacy discovery, as kube-apiserver serves it to clients that do not ask for the aggregated
   * form (kubectl falls back to it): /api, /apis, and one APIResourceList per group version.
   */
  private discovery(path: string): unknown {
    const p = path.replace(/\/+$/, '');
    if (p === '/api') {
      return {
        kind: 'APIVersions',
        versions: ['v1'],
        serverAddressByClientCIDRs: [
          { clientCIDR: '0.0.0.0/0', serverAddress: `127.0.0.1:${this.portNumber}` },
        ],
      };
    }
    const groups = [...new Set(RESOURCE_TYPES.map((t) => t.group).filter((g) => g !== ''))];
    if (p === '/apis') {
      return {
        kind: 'APIGroupList',
        apiVersion: 'v1',
        groups: groups.map((name) => {
          const versions = [
            ...new Set(RESOURCE_TYPES.filter((t) => t.group === name).flatMap((t) => t.versions)),
          ].map((version) => ({ groupVersion: `${name}/${version}`, version }));
          return { name, versions, preferredVersion: versions[0] };
        }),
      };
    }
    const m = /^\/api\/(v1)$|^\/apis\/([^/]+)\/([^/]+)$/.exec(p);
    if (!m) return undefined;
    const group = m[2] ?? '';
    const version = (m[1] ?? m[3]) as string;
    const types = RESOURCE_TYPES.filter((t) => t.group === group && t.versions.includes(version));
    if (types.length === 0) return undefined;
    return {
      kind: 'APIResourceList',
      apiVersion: 'v1',
      groupVersion: apiVersionOf(group, version),
      resources: types.map((t) => ({
        name: t.resource,
        singularName: t.kind.toLowerCase(),
        namespaced: t.namespaced,
        kind: t.kind,
        verbs: t.createOnly
          ? ['create']
          : ['create', 'delete', 'deletecollection', 'get', 'list', 'patch', 'update', 'watch'],
        ...(SHORT_NAMES[t.resource] && group === '' ? { shortNames: SHORT_NAMES[t.resource] } : {}),
      })),
    };
  }

  private async handleResource(
    req: IncomingMessage,
    res: ServerResponse,
    url: URL,
    method: string,
    r: { group: string; version: string; rest: string[] },
    record: RequestRecord,
  ): Promise<void> {
    const t = findResourceType(r.group, r.version, record.resource);
    if (!t || (!t.namespaced && record.namespace !== undefined && t.resource !== 'namespaces')) {
      throw statusErrors.noRoute();
    }
    const ns = t.namespaced ? record.namespace : undefined;
    const name = record.name;
    const target = {
      group: t.group,
      resource: t.resource,
      ...(name !== undefined ? { name } : {}),
    };
    if (this.authorize && !this.authorize(record)) {
      throw statusErrors.forbidden(record.user ?? '', record.verb, target, ns);
    }
    const out = (o: KubeObject) => withTypeMeta(t, r.version, o);

    if (t.createOnly) {
      if (method !== 'POST' || name !== undefined) throw statusErrors.methodNotAllowed(method);
      const body = (await this.readBody(req)) as
        { spec?: { token?: string; audiences?: string[] } } | undefined;
      const spec = body?.spec ?? {};
      if (!spec.token)
        throw statusErrors.invalid(
          { group: t.group, resource: t.resource },
          'spec.token: Required value',
        );
      const override = this.tokenReviewHandler
        ? await this.tokenReviewHandler({
            token: spec.token,
            ...(spec.audiences ? { audiences: spec.audiences } : {}),
          })
        : undefined;
      const status = override ?? (await this.issuer.review(spec.token, spec.audiences));
      this.sendJson(res, 201, {
        kind: t.kind,
        apiVersion: apiVersionOf(t.group, r.version),
        metadata: { creationTimestamp: null },
        spec,
        status,
      });
      return;
    }

    switch (record.verb) {
      case 'get': {
        const obj = this.store.get(t, ns, name as string);
        if (wantsTable(req.headers.accept)) {
          this.sendJson(res, 200, this.table(t, r.version, [obj], url));
          return;
        }
        this.sendJson(res, 200, out(obj));
        return;
      }
      case 'list': {
        const items = this.store.list(
          t,
          ns,
          combine(
            parseLabelSelector(url.searchParams.get('labelSelector')),
            parseFieldSelector(url.searchParams.get('fieldSelector')),
          ),
        );
        if (wantsTable(req.headers.accept)) {
          this.sendJson(res, 200, this.table(t, r.version, items, url));
          return;
        }
        this.sendJson(res, 200, {
          kind: `${t.kind}List`,
          apiVersion: apiVersionOf(t.group, r.version),
          metadata: { resourceVersion: String(this.store.resourceVersion) },
          items: items.map((o) => (t.custom ? out(o) : o)),
        });
        return;
      }
      case 'watch':
        this.watch(res, url, t, r.version, ns, name);
        return;
      case 'create': {
        const body = await this.readObject(req, t);
        if (ns !== undefined) {
          this.requireNamespace(ns);
          if (body.metadata.namespace !== undefined && body.metadata.namespace !== ns) {
            throw statusErrors.badRequest(
              'the namespace of the provided object does not match the namespace sent on the request',
            );
          }
        }
        if (t.resource === 'namespaces' && t.group === '') {
          body.spec = { finalizers: ['kubernetes'], ...(body.spec ?? {}) };
          body.status = { phase: 'Active' };
        }
        this.sendJson(res, 201, out(this.store.create(t, ns, body)));
        return;
      }
      case 'update': {
        const body = await this.readObject(req, t);
        if (body.metadata.name !== undefined && body.metadata.name !== name) {
          throw statusErrors.badRequest(
            'the name of the object does not match the name on the URL',
          );
        }
        this.checkImmutable(t, ns, name as string, body);
        this.sendJson(res, 200, out(this.store.update(t, ns, name as string, body)));
        return;
      }
      case 'patch': {
        const type = (req.headers['content-type'] ?? '').split(';')[0]?.trim() ?? '';
        const patch = (await this.readBody(req)) as Json;
        const cur = this.store.get(t, ns, name as string) as unknown as Json;
        let next: Json;
        if (
          type === 'application/merge-patch+json' ||
          type === 'application/strategic-merge-patch+json'
        ) {
          next = mergePatch(cur, patch);
        } else if (type === 'application/json-patch+json') {
          next = jsonPatch(cur, patch);
        } else {
          throw statusErrors.unsupportedMediaType(type);
        }
        const obj = normalizeWrite(t, next as unknown as Partial<KubeObject>);
        this.checkImmutable(t, ns, name as string, obj);
        this.sendJson(res, 200, out(this.store.update(t, ns, name as string, obj)));
        return;
      }
      case 'delete': {
        const body = (await this.readBody(req)) as
          { preconditions?: { resourceVersion?: string; uid?: string } } | undefined;
        if (t.resource === 'namespaces' && t.group === '') {
          this.store.deleteNamespaceContents(RESOURCE_TYPES, name as string);
        }
        const gone = this.store.delete(t, ns, name as string, body?.preconditions ?? {});
        this.sendJson(res, 200, successStatus(target, gone.metadata.uid as string));
        return;
      }
      default:
        throw statusErrors.methodNotAllowed(method);
    }
  }

  private table(t: ResourceType, version: string, objects: KubeObject[], url: URL): unknown {
    return toTable(t, objects, {
      resourceVersion: String(this.store.resourceVersion),
      now: this.now(),
      includeObject: url.searchParams.get('includeObject'),
      version,
    });
  }

  private async readObject(req: IncomingMessage, t: ResourceType): Promise<KubeObject> {
    const body = await this.readBody(req);
    if (typeof body !== 'object' || body === null || Array.isArray(body)) {
      throw statusErrors.badRequest(`a ${t.kind} object is required in the request body`);
    }
    return normalizeWrite(t, body);
  }

  private requireNamespace(ns: string): void {
    const nsType = RESOURCE_TYPES.find((x) => x.resource === 'namespaces') as ResourceType;
    if (!this.store.tryGet(nsType, undefined, ns)) {
      throw statusErrors.notFound({ group: '', resource: 'namespaces', name: ns });
    }
  }

  private checkImmutable(
    t: ResourceType,
    ns: string | undefined,
    name: string,
    next: KubeObject,
  ): void {
    if (t.resource !== 'secrets' || t.group !== '') return;
    const cur = this.store.tryGet(t, ns, name);
    if (cur && next.type !== undefined && cur.type !== next.type) {
      throw statusErrors.invalid(
        { group: '', resource: 'Secret', name },
        'type: Invalid value: field is immutable',
      );
    }
  }

  private watch(
    res: ServerResponse,
    url: URL,
    t: ResourceType,
    version: string,
    ns: string | undefined,
    name: string | undefined,
  ): void {
    const q = url.searchParams;
    const nameMatch = name !== undefined ? parseFieldSelector(`metadata.name=${name}`) : () => true;
    const scope = {
      storageKey: storageKeyOf(t),
      namespace: ns,
      matches: combine(
        combine(
          parseLabelSelector(q.get('labelSelector')),
          parseFieldSelector(q.get('fieldSelector')),
        ),
        nameMatch,
      ),
    };
    const rvParam = q.get('resourceVersion');
    res.writeHead(200, { 'Content-Type': 'application/json', 'Transfer-Encoding': 'chunked' });
    res.flushHeaders();
    const write = (type: string, object: unknown): void => {
      if (!res.writableEnded && !res.destroyed) res.write(JSON.stringify({ type, object }) + '\n');
    };
    const send = (e: StoreEvent): void => write(e.type, withTypeMeta(t, version, e.object));
    let replay: StoreEvent[];
    if (rvParam === null || rvParam === '' || rvParam === '0') {
      replay = this.store.list(t, ns, scope.matches).map((object) => ({
        rv: Number(object.metadata.resourceVersion),
        storageKey: scope.storageKey,
        type: 'ADDED' as const,
        object,
      }));
    } else {
      const from = Number(rvParam);
      try {
        if (!Number.isInteger(from))
          throw statusErrors.badRequest(`invalid resource version "${rvParam}"`);
        replay = this.store.eventsSince(scope, from);
      } catch (e) {
        if (!(e instanceof StatusError)) throw e;
        // As the real server: 200, then one ERROR event carrying the Status, then the end.
        write('ERROR', e.status);
        res.end();
        return;
      }
    }
    for (const e of replay) send(e);
    const unsubscribe = this.store.subscribe(scope, send);
    this.watches.add(res);
    const timers: NodeJS.Timeout[] = [];
    if (q.get('allowWatchBookmarks') === 'true') {
      timers.push(
        setInterval(() => {
          write('BOOKMARK', {
            kind: t.kind,
            apiVersion: apiVersionOf(t.group, version),
            metadata: { resourceVersion: String(this.store.resourceVersion) },
          });
        }, this.options.bookmarkIntervalMs ?? 1000),
      );
    }
    const timeoutSeconds = Number(q.get('timeoutSeconds') ?? NaN);
    const limitMs =
      Number.isFinite(timeoutSeconds) && timeoutSeconds > 0
        ? timeoutSeconds * 1000
        : this.options.watchTimeoutMs;
    if (limitMs !== undefined) timers.push(setTimeout(() => res.end(), limitMs));
    const cleanup = (): void => {
      unsubscribe();
      for (const tm of timers) clearTimeout(tm);
      this.watches.delete(res);
    };
    res.on('close', cleanup);
    res.on('finish', cleanup);
  }

  /** Ends every open watch from the server side (clients must re-watch from their rv). */
  endWatches(): void {
    for (const w of this.watches) w.end();
  }

  /** The number of watch streams open right now. */
  get openWatches(): number {
    return this.watches.size;
  }
}

function combine(a: Predicate, b: Predicate): Predicate {
  return (o) => a(o) && b(o);
}

function namespaceObject(name: string, labels?: Record<string, string>): KubeObject {
  return {
    metadata: {
      name,
      labels: { 'kubernetes.io/metadata.name': name, ...(labels ?? {}) },
    },
    spec: { finalizers: ['kubernetes'] },
    status: { phase: 'Active' },
  };
}

/**
 * What the real server does to every write of a type: Secret stringData → data, defaults. A
 * written object is a client's JSON (or a patch's result): its metadata may be missing.
 */
function normalizeWrite(t: ResourceType, written: Partial<KubeObject>): KubeObject {
  const obj: KubeObject = { ...written, metadata: { ...(written.metadata ?? {}) } };
  if (t.group === '' && t.resource === 'secrets') {
    const stringData = obj.stringData as Record<string, string> | undefined;
    if (stringData) {
      const data = { ...((obj.data as Record<string, string> | undefined) ?? {}) };
      for (const [k, v] of Object.entries(stringData)) data[k] = Buffer.from(v).toString('base64');
      obj.data = data;
      delete obj.stringData;
    }
    if (obj.type === undefined) obj.type = 'Opaque';
  }
  return obj;
}

function describe(
  method: string,
  url: URL,
  r: { group: string; version: string; rest: string[] } | undefined,
  user: string | undefined,
): RequestRecord {
  const base = { method, path: url.pathname, query: url.searchParams, user };
  if (!r || r.rest.length === 0) {
    return {
      ...base,
      verb: r ? 'discovery' : 'other',
      group: r?.group ?? '',
      resource: '',
      namespace: undefined,
      name: undefined,
    };
  }
  let namespace: string | undefined;
  let resource: string;
  let name: string | undefined;
  const rest = r.rest;
  if (rest[0] === 'namespaces' && rest.length >= 3) {
    namespace = rest[1];
    resource = rest[2] as string;
    name = rest[3];
  } else {
    resource = rest[0] as string;
    name = rest[1];
  }
  const watch = ['true', '1'].includes(url.searchParams.get('watch') ?? '');
  const verb: Verb =
    method === 'GET'
      ? name === undefined
        ? watch
          ? 'watch'
          : 'list'
        : watch
          ? 'watch'
          : 'get'
      : method === 'POST'
        ? 'create'
        : method === 'PUT'
          ? 'update'
          : method === 'PATCH'
            ? 'patch'
            : method === 'DELETE'
              ? 'delete'
              : 'other';
  return { ...base, verb, group: r.group, resource, namespace, name };
}
