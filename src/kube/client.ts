import { request as httpsRequest, type RequestOptions } from 'node:https';
import {
  ApiException,
  AuthenticationV1Api,
  CoordinationV1Api,
  CoreV1Api,
  KubeConfig,
  type V1Secret,
} from '@kubernetes/client-node';
import { formatHostPort } from '../address.js';
import { CastellanError } from '../errors.js';

/** The API clients Castellan uses, all built from one KubeConfig. */
export interface KubeClients {
  readonly kubeConfig: KubeConfig;
  readonly core: CoreV1Api;
  readonly coordination: CoordinationV1Api;
  readonly authentication: AuthenticationV1Api;
  /** The API server URL, for logs. */
  readonly server: string;
}

/** The pod's service account files, as the kubelet mounts them. */
const SERVICE_ACCOUNT_DIR = '/var/run/secrets/kubernetes.io/serviceaccount';

/**
 * Where the cluster's credentials come from: `--kubeconfig PATH`, or automatically the pod's
 * service account (KUBERNETES_SERVICE_HOST/PORT and /var/run/secrets/kubernetes.io/serviceaccount).
 */
export function loadKubeConfig(options: {
  kubeconfigPath?: string | undefined;
  /** The process environment: a pod's has KUBERNETES_SERVICE_HOST and _PORT. */
  env: Readonly<Record<string, string | undefined>>;
  /** Where the pod's /var/run/secrets/... live: `/` in a pod, a temporary folder in tests. */
  inClusterRoot?: string | undefined;
}): KubeConfig {
  const kc = new KubeConfig();
  if (options.kubeconfigPath !== undefined) {
    try {
      kc.loadFromFile(options.kubeconfigPath);
    } catch (e) {
      // A file that cannot be read (missing, a folder, no permission) is a flag pointing
      // nowhere, as for --remote-kubeconfig; only content that does not parse is malformed.
      const unreadable = (e as NodeJS.ErrnoException).syscall !== undefined;
      throw new CastellanError(
        unreadable ? 'invalid-argument' : 'malformed',
        `${unreadable ? 'cannot read' : 'cannot load'} kubeconfig: ${(e as Error).message}`,
        { subject: options.kubeconfigPath, cause: e },
      );
    }
  } else if (options.env['KUBERNETES_SERVICE_HOST'] && options.env['KUBERNETES_SERVICE_PORT']) {
    loadInCluster(
      kc,
      options.env['KUBERNETES_SERVICE_HOST'],
      options.env['KUBERNETES_SERVICE_PORT'],
      options.inClusterRoot ?? '',
    );
  } else {
    throw new CastellanError(
      'invalid-argument',
      'not running in a pod (KUBERNETES_SERVICE_HOST or KUBERNETES_SERVICE_PORT is unset): give --kubeconfig PATH',
    );
  }
  requireCluster(kc, options.kubeconfigPath ?? 'in-cluster config');
  return kc;
}

/**
 * The in-cluster config as client-go's rest.InClusterConfig builds it (both variables set, or
 * not in a pod; always https): the service host and port, the mounted CA, and the mounted
 * token, which client-node's `tokenFile` provider re-reads as the kubelet rotates it. Not
 * client-node's loadFromCluster: it reads the two variables from the process environment itself.
 */
function loadInCluster(kc: KubeConfig, host: string, port: string, root: string): void {
  const portNumber = Number(port);
  if (!/^\d{1,5}$/.test(port) || portNumber < 1 || portNumber > 65535) {
    throw new CastellanError('invalid-argument', `not a port: "${port}"`, {
      subject: 'KUBERNETES_SERVICE_PORT',
    });
  }
  const dir = `${root}${SERVICE_ACCOUNT_DIR}`;
  kc.loadFromClusterAndUser(
    {
      name: 'inCluster',
      server: `https://${formatHostPort({ host, port: portNumber })}`,
      caFile: `${dir}/ca.crt`,
      skipTLSVerify: false,
    },
    {
      name: 'inClusterUser',
      authProvider: { name: 'tokenFile', config: { tokenFile: `${dir}/token` } },
    },
  );
}

/** A kubeconfig held as text: a remote cluster's, from a file or an `istio/multiCluster` Secret. */
export function kubeConfigFromString(yaml: string, subject: string): KubeConfig {
  const kc = new KubeConfig();
  try {
    kc.loadFromString(yaml);
  } catch (e) {
    throw new CastellanError('malformed', `not a kubeconfig: ${(e as Error).message}`, {
      subject,
      cause: e,
    });
  }
  requireCluster(kc, subject);
  return kc;
}

function requireCluster(kc: KubeConfig, subject: string): void {
  if (!kc.getCurrentCluster()) {
    // A kubeconfig problem, not a CA one: the same kind as a kubeconfig that does not parse.
    throw new CastellanError('malformed', 'the kubeconfig has no current cluster', { subject });
  }
}

export function makeClients(kc: KubeConfig): KubeClients {
  return {
    kubeConfig: kc,
    core: kc.makeApiClient(CoreV1Api),
    coordination: kc.makeApiClient(CoordinationV1Api),
    authentication: kc.makeApiClient(AuthenticationV1Api),
    server: kc.getCurrentCluster()?.server ?? '',
  };
}

/** A Secret's `data`, each value decoded from base64 as UTF-8 text, by key. */
export function decodeSecretData(secret: V1Secret): Map<string, string> {
  const files = new Map<string, string>();
  for (const [k, v] of Object.entries(secret.data ?? {})) {
    files.set(k, Buffer.from(v, 'base64').toString('utf8'));
  }
  return files;
}

/** True when an API call failed with this HTTP status (404, 409, ...). */
export function isApiStatus(e: unknown, code: number): boolean {
  return e instanceof ApiException && e.code === code;
}

/** What `read` resolves to, or undefined when the object does not exist (404). */
export async function ifExists<T>(read: () => Promise<T>): Promise<T | undefined> {
  try {
    return await read();
  } catch (e) {
    if (isApiStatus(e, 404)) return undefined;
    throw e;
  }
}

/** A short description of an API failure for logs: code and the Status message. */
export function describeApiError(e: unknown): string {
  if (e instanceof ApiException) {
    const body: unknown = typeof e.body === 'string' ? safeJson(e.body) : e.body;
    const message =
      typeof body === 'object' && body !== null && 'message' in body ? String(body.message) : '';
    return `HTTP ${e.code}${message ? `: ${message}` : ''}`;
  }
  return e instanceof Error ? e.message : String(e);
}

function safeJson(s: string): unknown {
  try {
    return JSON.parse(s) as unknown;
  } catch {
    return s;
  }
}

/**
 * GET of a non-resource path (`/.well-known/openid-configuration`, `/openid/v1/jwks`) with the
 * kubeconfig's TLS settings and credentials, parsed as JSON.
 */
export async function getJson(kc: KubeConfig, path: string, timeoutMs = 10_000): Promise<unknown> {
  const cluster = kc.getCurrentCluster();
  if (!cluster) throw new CastellanError('internal', 'no current cluster');
  const url = new URL(path, cluster.server);
  const opts: RequestOptions = { method: 'GET', headers: {} };
  await kc.applyToHTTPSOptions(opts);
  return new Promise((resolve, reject) => {
    const req = httpsRequest(url, { ...opts, timeout: timeoutMs }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => {
        const text = Buffer.concat(chunks).toString('utf8');
        if ((res.statusCode ?? 0) !== 200) {
          reject(new CastellanError('unavailable', `GET ${path}: HTTP ${res.statusCode}`));
          return;
        }
        try {
          resolve(JSON.parse(text) as unknown);
        } catch (e) {
          reject(new CastellanError('malformed', `GET ${path}: not JSON`, { cause: e }));
        }
      });
      res.on('error', reject);
    });
    req.on('timeout', () =>
      req.destroy(new CastellanError('unavailable', `GET ${path}: timed out`)),
    );
    req.on('error', (e) =>
      reject(
        e instanceof CastellanError
          ? e
          : new CastellanError('unavailable', `GET ${path}: ${e.message}`, { cause: e }),
      ),
    );
    req.end();
  });
}
