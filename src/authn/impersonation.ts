// Ambient mode: a node proxy (ztunnel) authenticates with its own service account token and asks
// for the certificate of a workload on its node, named in the request's metadata. The decision
// is istiod's, from security/pkg/server/ca/server.go (CreateCertificate) and
// security/pkg/server/ca/node_auth.go (ClusterNodeAuthorizer.authenticateImpersonation); the
// Kubernetes facts it needs (pods by name, pods by service account and node) come from src/kube
// through the PodDirectory port below.
import { CastellanError } from '../errors.js';
import { formatSpiffeId, makeSpiffeId, parseSpiffeId, type SpiffeId } from '../pki/spiffe.js';
import type { Caller } from './authenticator.js';

/**
 * The `IstioCertificateRequest.metadata` field naming the identity a node proxy asks for: Istio's
 * `security.ImpersonatedIdentity`, which ztunnel sets (src/identity/caclient.rs).
 */
export const IMPERSONATED_IDENTITY_FIELD = 'ImpersonatedIdentity';

/** A service account allowed to impersonate: Istio's `CA_TRUSTED_NODE_ACCOUNTS` entries. */
export interface NodeAccount {
  readonly namespace: string;
  readonly serviceAccount: string;
}

/** How an account is written in flags, the environment and logs: `namespace/name`. */
export const formatNodeAccount = (a: NodeAccount): string => `${a.namespace}/${a.serviceAccount}`;

/**
 * Parses trusted node accounts, each `namespace/serviceaccount` (istiod's format for
 * CA_TRUSTED_NODE_ACCOUNTS, split on commas by the caller). Istio logs and skips a malformed
 * entry; a CA that silently trusts fewer accounts than configured hides the mistake until ambient
 * pods fail, so here any malformed entry is refused, naming `subject` (the flag or variable).
 * Whitespace around an entry is dropped; duplicates are kept once.
 */
export function parseTrustedNodeAccounts(
  entries: readonly string[],
  subject: string,
): NodeAccount[] {
  const out: NodeAccount[] = [];
  for (const raw of entries) {
    const entry = raw.trim();
    const parts = entry.split('/');
    if (parts.length !== 2 || parts[0] === '' || parts[1] === '') {
      throw new CastellanError(
        'invalid-argument',
        `"${raw}" is not namespace/serviceaccount (e.g. istio-system/ztunnel)`,
        { subject },
      );
    }
    let account: NodeAccount;
    try {
      // The trust domain plays no part here: any valid one serves to check the two names.
      const id = makeSpiffeId('cluster.local', parts[0] as string, parts[1] as string);
      account = { namespace: id.namespace, serviceAccount: id.serviceAccount };
    } catch (e) {
      throw new CastellanError('invalid-argument', `"${raw}": ${(e as Error).message}`, {
        subject,
      });
    }
    if (!out.some((a) => formatNodeAccount(a) === formatNodeAccount(account))) out.push(account);
  }
  return out;
}

/** Bounds what a client-chosen string may add to a log line. */
function quoted(value: string): string {
  const s = JSON.stringify(value);
  return s.length > 200 ? `${s.slice(0, 200)}…"` : s;
}

/**
 * The identity a request asks to impersonate, from the decoded `google.protobuf.Struct`
 * metadata (proto-loader: `{fields: {ImpersonatedIdentity: {kind: 'stringValue', stringValue}}}`),
 * or undefined when it asks for none. As istiod (`GetStringValue() != ""`), an empty string asks
 * for none. Unlike istiod, a value of another kind is not read as "none": the request named a
 * workload in a way we cannot read, and answering with the caller's own identity would answer
 * a different question — it is refused (CastellanError 'impersonation-refused').
 */
export function requestedImpersonation(metadata: unknown): string | undefined {
  if (typeof metadata !== 'object' || metadata === null) return undefined;
  const fields = (metadata as { fields?: unknown }).fields;
  if (typeof fields !== 'object' || fields === null) return undefined;
  const value: unknown = (fields as Record<string, unknown>)[IMPERSONATED_IDENTITY_FIELD];
  if (value === undefined || value === null) return undefined;
  const v = value as { kind?: unknown; stringValue?: unknown };
  if (v.kind === 'stringValue' && typeof v.stringValue === 'string') {
    return v.stringValue === '' ? undefined : v.stringValue;
  }
  throw new CastellanError(
    'impersonation-refused',
    `metadata ${IMPERSONATED_IDENTITY_FIELD} is a ${typeof v.kind === 'string' ? v.kind : 'value without a kind'}, not a string`,
  );
}

/** What the pod index knows of one pod (src/kube/pod-index.ts). */
export interface PodFacts {
  readonly uid: string;
  readonly serviceAccount: string;
  /** Empty while the pod is not scheduled. */
  readonly nodeName: string;
}

/** One cluster's pods, as an informer keeps them (never an API call per request). */
export interface ClusterPods {
  /** The pod `namespace/name`, or undefined when the cluster has none of that name. */
  pod(namespace: string, name: string): PodFacts | undefined;
  /** Whether a pod of this service account, not in phase Failed, is scheduled on this node. */
  runsOnNode(namespace: string, serviceAccount: string, nodeName: string): boolean;
}

/**
 * The pods of each cluster a caller may come from. Resolves to a synced index; rejects with
 * CastellanError('impersonation-refused') for an unknown cluster or an index not synced in time.
 */
export interface PodDirectory {
  /** `clusterId` as the `clusterid` metadata sent it; undefined or empty is the local cluster. */
  cluster(clusterId: string | undefined): Promise<ClusterPods>;
}

/** A granted impersonation: the identity to issue and the facts behind it, for the audit line. */
export interface ImpersonationGrant {
  /** `spiffe://<td>/ns/<ns>/sa/<sa>`: what goes in the certificate. */
  readonly spiffeId: string;
  /** The node the caller's pod and a pod of the requested identity run on. */
  readonly node: string;
}

/** The impersonation step of CreateCertificate (src/server/create-certificate.ts). */
export interface Impersonation {
  /**
   * Grants `requested` to an authenticated `caller`, or rejects with
   * CastellanError('impersonation-refused', precise reason). `clusterId` is the request's
   * `clusterid` metadata.
   */
  authorize(
    caller: Caller,
    requested: string,
    clusterId: string | undefined,
  ): Promise<ImpersonationGrant>;
}

export interface NodeAuthorizerOptions {
  /** Ours: only identities in it are issued. A function is asked on every request. */
  readonly trustDomain: string | (() => string);
  /** Non-empty: without trusted accounts there is no node authorizer (as istiod). */
  readonly trustedNodeAccounts: readonly NodeAccount[];
  readonly pods: PodDirectory;
}

const refused = (reason: string): CastellanError =>
  new CastellanError('impersonation-refused', reason);

/**
 * istiod's node authorization (node_auth.go, ClusterNodeAuthorizer.authenticateImpersonation), in
 * its order: the caller's service account is a trusted node account; the requested identity
 * parses as a SPIFFE ID; the caller's pod (name and UID from its bound token) exists with that UID
 * and that service account; a pod of the requested service account is scheduled on the caller's
 * pod's node. Stricter than istiod in two places, both refusals: the requested identity must be
 * in our trust domain (istiod's spiffe.ParseIdentity accepts any, and would sign a foreign
 * trust domain's identity), and its names must be valid Kubernetes names.
 */
export class NodeAuthorizer implements Impersonation {
  private readonly trusted: ReadonlySet<string>;

  constructor(private readonly options: NodeAuthorizerOptions) {
    if (options.trustedNodeAccounts.length === 0) {
      throw new CastellanError(
        'invalid-argument',
        'a node authorizer needs at least one trusted node account',
      );
    }
    this.trusted = new Set(options.trustedNodeAccounts.map(formatNodeAccount));
  }

  async authorize(
    caller: Caller,
    requested: string,
    clusterId: string | undefined,
  ): Promise<ImpersonationGrant> {
    const account = formatNodeAccount(caller);
    if (!this.trusted.has(account)) {
      throw refused(`caller ${account} is not a trusted node account (allowed to impersonate)`);
    }
    let id: SpiffeId;
    try {
      id = parseSpiffeId(requested);
    } catch (e) {
      throw refused(
        `impersonated identity ${quoted(requested)} is not valid: ${(e as Error).message}`,
      );
    }
    const td = this.options.trustDomain;
    const trustDomain = typeof td === 'function' ? td() : td;
    if (id.trustDomain !== trustDomain) {
      throw refused(
        `impersonated identity ${quoted(requested)} is not in trust domain "${trustDomain}"`,
      );
    }
    if (caller.podName === undefined || caller.podUid === undefined) {
      throw refused(
        `caller ${account} authenticated by ${caller.authenticator} names no pod (a pod-bound service account token is needed)`,
      );
    }
    const pods = await this.options.pods.cluster(clusterId);
    const where = clusterId ? ` in cluster "${clusterId}"` : '';
    const podKey = `${caller.namespace}/${caller.podName}`;
    const pod = pods.pod(caller.namespace, caller.podName);
    if (!pod) throw refused(`caller pod ${podKey} not found${where}`);
    if (pod.uid !== caller.podUid) {
      // A pod re-created under the same name while the caller still holds the old pod's token:
      // istiod expects the client to retry with a fresh token.
      throw refused(
        `caller pod ${podKey} found${where}, but its UID ${pod.uid} is not the token's ${caller.podUid}`,
      );
    }
    if (pod.serviceAccount !== caller.serviceAccount) {
      throw refused(
        `caller pod ${podKey} runs as service account ${pod.serviceAccount}, not the token's ${caller.serviceAccount}`,
      );
    }
    if (pod.nodeName === '') throw refused(`caller pod ${podKey} is not scheduled on a node`);
    if (!pods.runsOnNode(id.namespace, id.serviceAccount, pod.nodeName)) {
      throw refused(
        `no pod of service account ${id.namespace}/${id.serviceAccount} runs on node "${pod.nodeName}"${where}`,
      );
    }
    return { spiffeId: formatSpiffeId(id), node: pod.nodeName };
  }
}

/** Where impersonation is not available: every request for it is refused with `reason`. */
export function impersonationUnavailable(reason: string): Impersonation {
  return { authorize: () => Promise.reject(refused(reason)) };
}
