// Ambient mode: ztunnel's burst. A node that starts with 200 pods makes 200 CreateCertificate
// calls with one token — its own — each naming another workload in metadata.ImpersonatedIdentity
// (istio/ztunnel src/identity/caclient.rs). Measured on the real path: a spawned `castellan serve
// --kube --trusted-node-account istio-system/ztunnel` (bench/server.ts starts it the same way as
// the other end-to-end cases) against the in-process fake API server holding the node's pods, so
// every call goes through TLS, gRPC, TokenReview (cached: one review for the burst), the node
// authorizer's pod index and signing. An in-process setup of the impersonation step alone would
// leave out exactly the costs the burst stresses beside signing (authentication per call, one
// connection carrying 200 calls).
//
// Cases, on the same server and the same single TLS connection (ztunnel holds one channel to
// its CA), each round firing 200 calls at once and waiting for all of them:
// - `ambient burst: 1 token, 200 identities on 1 node`;
// - `ambient single identity: 1 token, its own identity`: the same calls without the metadata,
//   the figure to compare the burst with.
// The client is @grpc/grpc-js in this process (h2load sends one fixed body, and the burst needs
// 200 different ones), so it shares the machine's cores with the server: `gen cpu` says how
// much it took. Every call must succeed with exactly the identity asked for, or the case fails.
//
// `jwt authenticate, a new token per call, cache on|off`: what the verified-token cache
// (src/authn/token-cache.ts) costs for tokens seen only once — SHA-256 of the token and a map
// insert — against fast-jwt's RS256 verification it sits in front of; in authentications/s.
import { X509Certificate } from 'node:crypto';
import { stopOnInterrupt, temporaryDir } from './interrupt.js';
import { join } from 'node:path';
import * as grpc from '@grpc/grpc-js';
import { createLocalJWKSet, exportJWK, generateKeyPair, SignJWT } from 'jose';
import { istioCaPackageDefinition } from '../src/api/istioca.js';
import { SELF_SIGNED_SECRET } from '../src/kube/self-signed-secret.js';
import { JwtAuthenticator } from '../src/authn/jwt-authenticator.js';
import { systemClock } from '../src/clock.js';
import { createKeyAndCsr } from '../src/pki/csr-builder.js';
import { FakeApiServer } from '../test/support/fake-apiserver/index.js';
import { binPath } from '../test/support/paths.js';
import { startServe, waitForReady } from '../test/server/support/serve-process.js';
import { serverCpuSeconds, serverPids, serverRssMb } from './server.js';
import { drive, rssMb, type BenchCase, type BenchOptions, type Measurement } from './types.js';

const NS = 'istio-system';
const NODE = 'node-1';
const PODS = 200;
const TD = 'cluster.local';
const READY_TIMEOUT_MS = 30_000;

type Call = (
  request: Record<string, unknown>,
  metadata: grpc.Metadata,
  callback: (err: grpc.ServiceError | null, response?: { certChain: string[] }) => void,
) => void;

interface AmbientServer {
  call: Call;
  token: string;
  pid: number;
  readyMs: number;
  close(): Promise<void>;
}

/** The fake API server with a node of 200 pods (and its ztunnel), and serve --kube against it. */
async function startAmbient(): Promise<AmbientServer> {
  const temp = temporaryDir('castellan-bench-ambient-');
  const dir = temp.path;
  const api = await FakeApiServer.start({ namespaces: [NS, 'app'] });
  let serve: Awaited<ReturnType<typeof startServe>> | undefined;
  let client: grpc.Client | undefined;
  const close = async (): Promise<void> => {
    client?.close();
    await serve?.stop();
    await api.stop();
    temp.remove();
  };
  try {
    const pod = (ns: string, name: string, serviceAccount: string) =>
      api.putObject('pods', ns, {
        metadata: { name },
        spec: { serviceAccountName: serviceAccount, nodeName: NODE, containers: [] },
        status: { phase: 'Running' },
      });
    const ztunnel = pod(NS, 'ztunnel-1', 'ztunnel');
    for (let i = 0; i < PODS; i++) pod('app', `w-${i}`, `sa-${i}`);
    const token = await api.issuer.issueToken({
      namespace: NS,
      serviceAccount: 'ztunnel',
      audiences: ['istio-ca'],
      pod: { name: 'ztunnel-1', uid: ztunnel.metadata.uid as string },
    });
    const t0 = performance.now();
    serve = await startServe(
      [
        '--kube',
        '--kubeconfig',
        api.writeKubeconfig(join(dir, 'kubeconfig')),
        '--data-dir',
        join(dir, 'data'),
        '--trusted-node-account',
        `${NS}/ztunnel`,
        '--log-level',
        'error',
        // 200 calls at once from one ztunnel: the single-identity case is over any per-identity
        // budget by design (docs/reliability.md); the bench measures issuance, not admission.
        '--rate-limit',
        'off',
      ],
      undefined,
      { entry: binPath, timeoutMs: READY_TIMEOUT_MS },
    );
    stopOnInterrupt(serve.child);
    if (!(await waitForReady(serve, READY_TIMEOUT_MS - (performance.now() - t0)))) {
      throw new Error(`castellan serve --kube did not get ready: ${serve.stderr().slice(-4000)}`);
    }
    const readyMs = performance.now() - t0;
    const secret = api.getObject('secrets', NS, SELF_SIGNED_SECRET);
    const root = Buffer.from((secret?.data as Record<string, string>)['root-cert.pem']!, 'base64');
    const pkg = grpc.loadPackageDefinition(istioCaPackageDefinition()) as unknown as {
      istio: { v1: { auth: { IstioCertificateService: grpc.ServiceClientConstructor } } };
    };
    const stub = new pkg.istio.v1.auth.IstioCertificateService(
      `127.0.0.1:${serve.grpcPort}`,
      grpc.credentials.createSsl(root),
      {
        'grpc.use_local_subchannel_pool': 1,
        'grpc.ssl_target_name_override': 'localhost',
        'grpc.default_authority': 'localhost',
      },
    );
    client = stub;
    const call = (stub['CreateCertificate'] as Call).bind(stub);
    return { call, token, pid: serve.child.pid!, readyMs, close };
  } catch (e) {
    await close();
    throw e;
  }
}

let csrPem: Promise<string> | undefined;
/** One CSR for every call: the server keeps nothing about CSRs, each call checks and signs anew. */
function benchCsr(): Promise<string> {
  csrPem ??= createKeyAndCsr('ec-p256', { sans: [`spiffe://${TD}/ns/app/sa/sa-0`] }).then(
    (k) => k.csrPem,
  );
  return csrPem;
}

const identity = (i: number): string => `spiffe://${TD}/ns/app/sa/sa-${i}`;

/** The URI SAN of a leaf, as the client (ztunnel) checks it. */
function leafUri(pem: string): string | undefined {
  return /URI:([^,\s]+)/.exec(new X509Certificate(pem).subjectAltName ?? '')?.[1];
}

/**
 * Rounds of PODS calls fired at once on the one connection, until the case's time or count runs
 * out; every call must come back with the identity it asked for.
 */
async function burst(
  server: AmbientServer,
  impersonate: boolean,
  options: BenchOptions,
): Promise<Measurement> {
  const csr = await benchCsr();
  const metadata = new grpc.Metadata();
  metadata.set('authorization', `Bearer ${server.token}`);
  metadata.set('clusterid', 'Kubernetes');
  const own = `spiffe://${TD}/ns/${NS}/sa/ztunnel`;
  const once = (i: number): Promise<void> =>
    new Promise((resolve, reject) => {
      const n = i % PODS;
      const request = {
        csr,
        validityDuration: 86_400,
        ...(impersonate
          ? { metadata: { fields: { ImpersonatedIdentity: { stringValue: identity(n) } } } }
          : {}),
      };
      server.call(request, metadata, (err, res) => {
        if (err) {
          reject(new Error(`call ${i}: ${err.code} ${err.details}`));
          return;
        }
        const want = impersonate ? identity(n) : own;
        const got = leafUri(res?.certChain[0] ?? '');
        if (got !== want) {
          reject(new Error(`call ${i}: got ${got}, asked for ${want}`));
          return;
        }
        resolve();
      });
    });
  // Warm-up: one burst, so the connection, the TokenReview cache and the JIT are warm.
  await Promise.all(Array.from({ length: PODS }, (_, i) => once(i)));
  const cpu0 = serverCpuSeconds(server.pid);
  const own0 = process.cpuUsage();
  // PODS in flight at once, each worker taking the next call as one finishes: the burst's shape,
  // sustained for the case's time.
  const r = await drive(once, PODS, options);
  const ownCpu = process.cpuUsage(own0);
  return {
    certs_per_s: r.count / r.seconds,
    p50_ms: r.p50,
    p99_ms: r.p99,
    rss_mb: serverRssMb(server.pid),
    ready_ms: server.readyMs,
    processes: serverPids(server.pid).length,
    server_cpu: (serverCpuSeconds(server.pid) - cpu0) / r.seconds,
    client_cpu: (ownCpu.user + ownCpu.system) / 1e6 / r.seconds,
  };
}

function burstCase(impersonate: boolean): BenchCase {
  return {
    name: impersonate
      ? `ambient burst: 1 token, ${PODS} identities on 1 node (serve --kube, c=${PODS})`
      : `ambient single identity: 1 token, its own identity (serve --kube, c=${PODS})`,
    limit: 'ecdsap256',
    target: '-',
    async run(options): Promise<Measurement> {
      const server = await startAmbient();
      try {
        return await burst(server, impersonate, options);
      } finally {
        await server.close();
      }
    },
  };
}

/** Per-call latencies of one variant, and the time its calls took in all. */
interface Sample {
  latencies: number[];
  seconds: number;
}

function measurementOf(sample: Sample): Measurement {
  const l = [...sample.latencies].sort((a, b) => a - b);
  const q = (p: number): number => l[Math.min(l.length - 1, Math.floor(p * l.length))] ?? 0;
  return {
    certs_per_s: l.length / sample.seconds,
    p50_ms: q(0.5),
    p99_ms: q(0.99),
    rss_mb: rssMb(),
  };
}

/**
 * JwtAuthenticator on a new RS256 token every call (none is ever seen twice), with the
 * verified-token cache and without, measured in one run: blocks of 250 calls alternate between
 * the two, so the machine's neighbours weigh on both alike. Tokens are signed before timing.
 */
async function measureTokenCache(
  options: BenchOptions,
): Promise<{ off: Measurement; on: Measurement }> {
  const { privateKey, publicKey } = await generateKeyPair('RS256');
  const jwk = { ...(await exportJWK(publicKey)), kid: 'k1', alg: 'RS256' };
  const issuer = 'https://kubernetes.default.svc.cluster.local';
  const block = 250;
  const count = options.quick ? 4_000 : 40_000;
  const now = Math.floor(Date.now() / 1000);
  const tokens = await Promise.all(
    Array.from({ length: count + 2 * block }, (_, i) =>
      new SignJWT({ 'kubernetes.io': { namespace: 'app', pod: { name: `p-${i}`, uid: `u-${i}` } } })
        .setProtectedHeader({ alg: 'RS256', kid: 'k1' })
        .setIssuer(issuer)
        .setSubject(`system:serviceaccount:app:sa-${i}`)
        .setAudience('istio-ca')
        .setIssuedAt(now)
        .setExpirationTime(now + 3600)
        .sign(privateKey),
    ),
  );
  const keys = createLocalJWKSet({ keys: [jwk] });
  const variants = {
    off: new JwtAuthenticator({ issuer, keys, clock: systemClock, cache: false }),
    on: new JwtAuthenticator({ issuer, keys, clock: systemClock }),
  };
  const request = (token: string) => ({
    metadata: { authorization: [`Bearer ${token}`] },
    peerCertificates: [],
    peerAddress: 'bench',
  });
  const samples: Record<'off' | 'on', Sample> = {
    off: { latencies: [], seconds: 0 },
    on: { latencies: [], seconds: 0 },
  };
  let next = 0;
  const run = async (variant: 'off' | 'on', record: boolean): Promise<void> => {
    const t0 = performance.now();
    for (let i = 0; i < block; i++) {
      const token = tokens[next++]!;
      const c0 = performance.now();
      if (!(await variants[variant].authenticate(request(token)))) throw new Error('refused');
      if (record) samples[variant].latencies.push(performance.now() - c0);
    }
    if (record) samples[variant].seconds += (performance.now() - t0) / 1000;
  };
  // Warm-up (key import, JIT), then alternate until the tokens or the time run out.
  await run('off', false);
  await run('on', false);
  const deadline = performance.now() + options.seconds * 2 * 1000;
  while (next + 2 * block <= tokens.length && performance.now() < deadline) {
    await run('off', true);
    await run('on', true);
  }
  if (variants.on.cacheStats()!.hits > 0) throw new Error('a token was seen twice');
  return { off: measurementOf(samples.off), on: measurementOf(samples.on) };
}

function tokenCacheCases(): BenchCase[] {
  let shared: Promise<{ off: Measurement; on: Measurement }> | undefined;
  const variant = (v: 'off' | 'on'): BenchCase => ({
    name: `in-process jwt authenticate, a new RS256 token per call, cache ${v} (authentications/s)`,
    target: v === 'on' ? 'within a few µs per token of cache off' : '-',
    // Both rows come from one interleaved run (whichever row runs first starts it).
    run: async (options) => (await (shared ??= measureTokenCache(options)))[v],
  });
  return [variant('off'), variant('on')];
}

export function ambientCases(): BenchCase[] {
  return [burstCase(true), burstCase(false), ...tokenCacheCases()];
}
