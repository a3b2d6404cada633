import type { IncomingMessage, ServerResponse } from 'node:http';
import type { TLSSocket } from 'node:tls';
import {
  loadPackageDefinition,
  type GrpcObject,
  type ServerWritableStream,
  type ServiceDefinition,
} from '@grpc/grpc-js';
import { loadProto } from '../api/protos.js';
import type { AuthRequest, Authenticator, Caller } from '../authn/authenticator.js';
import { asCastellanError, CastellanError } from '../errors.js';
import { serializeBundle, type PolicyBundle } from '../policy/policy-bundle.js';
import { grpcAuthRequest, tlsAuthRequest } from './auth-request.js';
import { BUNDLE_TEXTS, toGrpcFailure, toHttpFailure } from './status-map.js';
import { undecodableReason, withUndecodableRequestsMarked } from '../api/istioca.js';

/** Where bundles come from: PolicyCompiler satisfies this. */
export interface BundleSource {
  bundle(namespace: string, name: string): PolicyBundle | undefined;
  onBundle(listener: (bundle: PolicyBundle) => void): () => void;
}

export interface PolicyBundleServingOptions {
  readonly source: BundleSource;
  /** Verifies the workload certificate (ClientCertAuthenticator). */
  readonly authenticator: Authenticator;
  /**
   * Our CA chain (CaSnapshot.bundle.certChain, DER), standing in for the intermediates grpc-js
   * does not hand out: `getAuthContext()` gives the peer leaf alone, and a leaf issued under an
   * intermediate CA never verifies to the root without it (every Watch would be UNAUTHENTICATED).
   * Required for that reason; return [] when the CA signs with its root.
   */
  readonly intermediates: () => readonly Uint8Array[];
}

/**
 * A workload receives only its own bundle: the namespace and service account of its verified
 * certificate must be those of the pod it asks for. (Pods sharing a service account in one
 * namespace share an identity, and so may read each other's bundles — as in Istio, the
 * identity is the service account.)
 */
async function authorizedBundle(
  options: PolicyBundleServingOptions,
  request: AuthRequest,
  namespace: string,
  pod: string,
): Promise<PolicyBundle> {
  let caller: Caller | null;
  try {
    caller = await options.authenticator.authenticate(request);
  } catch (e) {
    throw asCastellanError(e, 'unauthenticated');
  }
  if (!caller) throw new CastellanError('unauthenticated', 'a workload certificate is required');
  const bundle = options.source.bundle(namespace, pod);
  if (
    !bundle ||
    caller.namespace !== bundle.workload.namespace ||
    caller.serviceAccount !== bundle.workload.serviceAccount
  ) {
    // The same answer for "not yours" and "not there": existence is not disclosed.
    throw new CastellanError(
      'permission-denied',
      `${caller.subject} may not read the bundle of ${namespace}/${pod}`,
    );
  }
  return bundle;
}

/** Bundles are immutable: each is serialized once, however often it is read or watched. */
const serialized = new WeakMap<PolicyBundle, string>();

function bundleJson(bundle: PolicyBundle): string {
  let json = serialized.get(bundle);
  if (json === undefined) {
    json = serializeBundle(bundle);
    serialized.set(bundle, json);
  }
  return json;
}

/**
 * Whether an If-None-Match header matches `etag` (RFC 9110 §13.1.2): `*` matches any current
 * bundle; otherwise a comma-separated list of entity tags, compared weakly (a `W/` prefix on
 * either side is ignored). The quoted opaque tags are picked out whole, as a comma may sit
 * inside one, and any `W/` before them is left behind.
 */
function ifNoneMatchHits(header: string | undefined, etag: string): boolean {
  if (header === undefined) return false;
  if (header.trim() === '*') return true;
  const opaque = etag.replace(/^W\//, '');
  for (const [tag] of header.matchAll(/"[^"]*"/g)) if (tag === opaque) return true;
  return false;
}

const ROUTE = /^\/v1\/bundles\/([a-z0-9]([-a-z0-9]*[a-z0-9])?)\/([a-z0-9]([-.a-z0-9]*[a-z0-9])?)$/;

/**
 * `GET /v1/bundles/<namespace>/<pod>` on an HTTPS server that requests client certificates.
 * Returns false when the path is not a bundle route (so the caller can try other routes).
 */
export function handleBundleHttp(
  options: PolicyBundleServingOptions,
  req: IncomingMessage,
  res: ServerResponse,
): boolean {
  const url = new URL(req.url ?? '/', 'https://localhost');
  const m = ROUTE.exec(url.pathname);
  if (!m) return false;
  if (req.method !== 'GET') {
    res.writeHead(405, { allow: 'GET' }).end();
    return true;
  }
  const request = tlsAuthRequest(req.socket as TLSSocket, options.intermediates());
  authorizedBundle(options, request, m[1] as string, m[3] as string).then(
    (bundle) => {
      const etag = `"${bundle.hash}"`;
      // Checked after authorization, so a 304 tells no more than a 200 would.
      if (ifNoneMatchHits(req.headers['if-none-match'], etag)) {
        res.writeHead(304, { etag }).end();
        return;
      }
      res.writeHead(200, { 'content-type': 'application/json', etag }).end(bundleJson(bundle));
    },
    (e: unknown) => {
      const failure = toHttpFailure(e, BUNDLE_TEXTS);
      res.writeHead(failure.statusCode, { 'content-type': 'text/plain' }).end(failure.body);
    },
  );
  return true;
}

interface WatchRequest {
  namespace: string;
  pod: string;
}

function update(bundle: PolicyBundle): Record<string, string> {
  return {
    namespace: bundle.workload.namespace,
    pod: bundle.workload.name,
    hash: bundle.hash,
    bundleJson: bundleJson(bundle),
  };
}

/** The castellan.v1.PolicyBundleService definition and its implementation, for Server.addService. */
export function policyBundleService(options: PolicyBundleServingOptions): {
  service: ServiceDefinition;
  implementation: {
    Watch: (call: ServerWritableStream<WatchRequest, Record<string, string>>) => void;
  };
} {
  const pkg = loadPackageDefinition(loadProto('policy.proto'));
  const def = ((pkg['castellan'] as GrpcObject)['v1'] as GrpcObject)['PolicyBundleService'] as {
    service: ServiceDefinition;
  };
  const Watch = (call: ServerWritableStream<WatchRequest, Record<string, string>>): void => {
    const undecodable = undecodableReason(call.request);
    if (undecodable !== undefined) {
      // The caller's fault, as for CreateCertificate: INVALID_ARGUMENT, not grpc-js's INTERNAL.
      call.emit(
        'error',
        toGrpcFailure(
          new CastellanError('malformed', `the request could not be decoded: ${undecodable}`, {
            subject: 'request',
          }),
          BUNDLE_TEXTS,
        ),
      );
      return;
    }
    const { namespace, pod } = call.request;
    // Certificate only: the caller's metadata (a token) is not forwarded.
    const request = grpcAuthRequest(call, options.intermediates(), { forwardMetadata: false });
    authorizedBundle(options, request, namespace, pod).then(
      (bundle) => {
        if (call.cancelled) return;
        let last = bundle.hash;
        // A client that does not read (its windows closed) gets the newest bundle once it reads
        // again, not every one made meanwhile: what waits for it is one bundle, not a backlog.
        let blocked = false;
        let newest: PolicyBundle | undefined;
        const send = (b: PolicyBundle): void => {
          last = b.hash;
          if (!call.write(update(b))) blocked = true;
        };
        call.on('drain', () => {
          blocked = false;
          const b = newest;
          newest = undefined;
          if (b && b.hash !== last) send(b);
        });
        send(bundle);
        const stop = options.source.onBundle((b) => {
          if (b.workload.namespace !== namespace || b.workload.name !== pod) return;
          if (blocked) newest = b;
          else if (b.hash !== last) send(b);
        });
        call.on('cancelled', stop);
        call.on('close', stop);
      },
      (e: unknown) => {
        // grpc-js turns an 'error' event on a server stream into the call's status.
        call.emit('error', toGrpcFailure(e, BUNDLE_TEXTS));
      },
    );
  };
  return { service: withUndecodableRequestsMarked(def.service), implementation: { Watch } };
}
