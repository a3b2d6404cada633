import { randomUUID, randomBytes } from 'node:crypto';
import { storageKeyOf, type ResourceType } from './resources.js';
import { statusErrors } from './status.js';
import type { Predicate, Selectable } from './selectors.js';

export interface ObjectMeta {
  name?: string;
  generateName?: string;
  namespace?: string;
  uid?: string;
  resourceVersion?: string;
  creationTimestamp?: string;
  generation?: number;
  labels?: Record<string, string>;
  annotations?: Record<string, string>;
  [key: string]: unknown;
}

/** A stored object: everything but kind/apiVersion, which depend on the version asked for. */
export interface KubeObject extends Selectable {
  metadata: ObjectMeta;
  [key: string]: unknown;
}

export type WatchEventType = 'ADDED' | 'MODIFIED' | 'DELETED';

export interface StoreEvent {
  readonly rv: number;
  readonly storageKey: string;
  readonly type: WatchEventType;
  readonly object: KubeObject;
}

export interface WatchScope {
  readonly storageKey: string;
  readonly namespace: string | undefined;
  readonly matches: Predicate;
}

interface Subscriber extends WatchScope {
  send(event: StoreEvent): void;
}

/** A copy of `input` as stored: this metadata, no kind or apiVersion (added when served). */
function stored(input: KubeObject, metadata: ObjectMeta): KubeObject {
  const { kind: _kind, apiVersion: _apiVersion, ...rest } = structuredClone(input);
  return { ...rest, metadata };
}

function inScope(scope: WatchScope, storageKey: string, obj: KubeObject): boolean {
  return (
    scope.storageKey === storageKey &&
    (scope.namespace === undefined || obj.metadata.namespace === scope.namespace) &&
    scope.matches(obj)
  );
}

/**
 * etcd as the API server sees it: one global, increasing resourceVersion stamped on every
 * write; a bounded event history so watches can resume from a resourceVersion; compaction,
 * after which resuming from an older resourceVersion is refused with 410 Gone.
 */
export class ObjectStore {
  private rv: number;
  private readonly objects = new Map<string, Map<string, KubeObject>>();
  private history: StoreEvent[] = [];
  /** Resuming a watch needs every event after the requested rv: rv < compactedRv → 410. */
  private compactedRv: number;
  private readonly subscribers = new Set<Subscriber>();

  constructor(
    private readonly now: () => number,
    private readonly historyLimit = 10_000,
    startRv = 1000,
  ) {
    this.rv = startRv;
    this.compactedRv = startRv;
  }

  get resourceVersion(): number {
    return this.rv;
  }

  private bucket(storageKey: string): Map<string, KubeObject> {
    let b = this.objects.get(storageKey);
    if (!b) {
      b = new Map();
      this.objects.set(storageKey, b);
    }
    return b;
  }

  private record(storageKey: string, type: WatchEventType, object: KubeObject): void {
    const event: StoreEvent = { rv: this.rv, storageKey, type, object: structuredClone(object) };
    this.history.push(event);
    if (this.history.length > this.historyLimit) {
      const dropped = this.history.splice(0, this.history.length - this.historyLimit);
      this.compactedRv = (dropped[dropped.length - 1] as StoreEvent).rv;
    }
    for (const s of this.subscribers) if (inScope(s, storageKey, object)) s.send(event);
  }

  /** Forgets all history: every watch resuming from the current or an older rv gets 410. */
  compact(): void {
    this.history = [];
    this.compactedRv = this.rv;
  }

  get(t: ResourceType, namespace: string | undefined, name: string): KubeObject {
    const o = this.bucket(storageKeyOf(t)).get(`${namespace ?? ''}/${name}`);
    if (!o) throw statusErrors.notFound({ group: t.group, resource: t.resource, name });
    return structuredClone(o);
  }

  tryGet(t: ResourceType, namespace: string | undefined, name: string): KubeObject | undefined {
    const o = this.bucket(storageKeyOf(t)).get(`${namespace ?? ''}/${name}`);
    return o ? structuredClone(o) : undefined;
  }

  list(t: ResourceType, namespace: string | undefined, matches: Predicate): KubeObject[] {
    return [...this.bucket(storageKeyOf(t)).values()]
      .filter((o) => (namespace === undefined || o.metadata.namespace === namespace) && matches(o))
      .sort((a, b) =>
        `${a.metadata.namespace ?? ''}/${a.metadata.name}`.localeCompare(
          `${b.metadata.namespace ?? ''}/${b.metadata.name}`,
        ),
      )
      .map((o) => structuredClone(o));
  }

  create(t: ResourceType, namespace: string | undefined, input: KubeObject): KubeObject {
    const meta = { ...input.metadata };
    if (!meta.name && meta.generateName) {
      meta.name = meta.generateName + randomBytes(4).toString('hex').slice(0, 5);
    }
    if (!meta.name) {
      throw statusErrors.invalid(
        { group: t.group, resource: t.resource },
        'metadata.name: Required value: name or generateName is required',
      );
    }
    if (meta.resourceVersion) {
      throw statusErrors.badRequest('resourceVersion should not be set on objects to be created');
    }
    const key = `${namespace ?? ''}/${meta.name}`;
    const b = this.bucket(storageKeyOf(t));
    if (b.has(key)) {
      throw statusErrors.alreadyExists({ group: t.group, resource: t.resource, name: meta.name });
    }
    this.rv += 1;
    const obj = stored(input, {
      ...meta,
      ...(namespace !== undefined ? { namespace } : {}),
      uid: randomUUID(),
      resourceVersion: String(this.rv),
      creationTimestamp: new Date(this.now()).toISOString().replace(/\.\d+Z$/, 'Z'),
    });
    b.set(key, obj);
    this.record(storageKeyOf(t), 'ADDED', obj);
    return structuredClone(obj);
  }

  /** Replaces an object. A resourceVersion in the input must equal the stored one (409 otherwise). */
  update(
    t: ResourceType,
    namespace: string | undefined,
    name: string,
    input: KubeObject,
  ): KubeObject {
    const target = { group: t.group, resource: t.resource, name };
    const b = this.bucket(storageKeyOf(t));
    const key = `${namespace ?? ''}/${name}`;
    const cur = b.get(key);
    if (!cur) throw statusErrors.notFound(target);
    const rv = input.metadata.resourceVersion;
    if (rv !== undefined && rv !== '' && rv !== cur.metadata.resourceVersion) {
      throw statusErrors.conflict(target);
    }
    if (input.metadata.uid && input.metadata.uid !== cur.metadata.uid) {
      throw statusErrors.preconditionFailed(
        target,
        `Precondition failed: UID in precondition: ${input.metadata.uid}, UID in object meta: ${cur.metadata.uid}`,
      );
    }
    const obj = stored(input, {
      ...input.metadata,
      name,
      ...(namespace !== undefined ? { namespace } : {}),
      uid: cur.metadata.uid,
      creationTimestamp: cur.metadata.creationTimestamp,
      resourceVersion: cur.metadata.resourceVersion,
    });
    // A no-op update does not bump the resourceVersion, as with the real server.
    if (JSON.stringify(obj) === JSON.stringify(cur)) return structuredClone(cur);
    this.rv += 1;
    obj.metadata.resourceVersion = String(this.rv);
    b.set(key, obj);
    this.record(storageKeyOf(t), 'MODIFIED', obj);
    return structuredClone(obj);
  }

  delete(
    t: ResourceType,
    namespace: string | undefined,
    name: string,
    preconditions: { resourceVersion?: string; uid?: string } = {},
  ): KubeObject {
    const target = { group: t.group, resource: t.resource, name };
    const b = this.bucket(storageKeyOf(t));
    const key = `${namespace ?? ''}/${name}`;
    const cur = b.get(key);
    if (!cur) throw statusErrors.notFound(target);
    if (
      preconditions.resourceVersion &&
      preconditions.resourceVersion !== cur.metadata.resourceVersion
    ) {
      throw statusErrors.preconditionFailed(
        target,
        `Precondition failed: ResourceVersion in precondition: ${preconditions.resourceVersion}, ResourceVersion in object meta: ${cur.metadata.resourceVersion}`,
      );
    }
    if (preconditions.uid && preconditions.uid !== cur.metadata.uid) {
      throw statusErrors.preconditionFailed(
        target,
        `Precondition failed: UID in precondition: ${preconditions.uid}, UID in object meta: ${cur.metadata.uid}`,
      );
    }
    b.delete(key);
    this.rv += 1;
    const gone: KubeObject = {
      ...cur,
      metadata: { ...cur.metadata, resourceVersion: String(this.rv) },
    };
    this.record(storageKeyOf(t), 'DELETED', gone);
    return structuredClone(gone);
  }

  /** Deletes every object of every namespaced type in a namespace (namespace deletion). */
  deleteNamespaceContents(types: readonly ResourceType[], namespace: string): void {
    for (const t of types) {
      if (!t.namespaced || t.createOnly) continue;
      for (const o of this.list(t, namespace, () => true)) {
        this.delete(t, namespace, o.metadata.name as string);
      }
    }
  }

  /**
   * Events a watch from `fromRv` must replay, or a 410 StatusError when history no longer
   * reaches back that far.
   */
  eventsSince(scope: WatchScope, fromRv: number): StoreEvent[] {
    if (fromRv < this.compactedRv) throw statusErrors.expired(fromRv, this.compactedRv + 1);
    return this.history
      .filter((e) => e.rv > fromRv && inScope(scope, e.storageKey, e.object))
      .map((e) => ({ ...e, object: structuredClone(e.object) }));
  }

  subscribe(scope: WatchScope, send: (e: StoreEvent) => void): () => void {
    const s: Subscriber = { ...scope, send };
    this.subscribers.add(s);
    return () => this.subscribers.delete(s);
  }
}
