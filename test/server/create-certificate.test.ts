// The CreateCertificate handler, one row per branch, called directly with fakes: a fake
// authenticator, a fake issuer (parseCsr / sign), a fake CaState, the real CaMetrics on a
// ManualClock and the real AuditLog over a logger whose lines are captured. No network: the TLS +
// openssl layer is test/server/ca-server.test.ts.
//
// The expectations follow Istio's security/pkg/server/ca/server.go (Server.CreateCertificate) and
// security/pkg/server/ca/monitoring.go (monitoringMetrics): every call counts in
// citadel_server_csr_count; any authentication failure is UNAUTHENTICATED "request authenticate
// failure" and counts in citadel_server_authentication_failure_count; a signing failure counts in
// citadel_server_csr_sign_err_count{error} with the label of security/pkg/pki/error/error.go
// (ErrorType: CA_NOT_READY, CSR_ERROR, TTL_ERROR, CERT_GEN_ERROR); success counts in
// citadel_server_success_cert_issuance_count. Where Castellan differs, on purpose:
// - a CSR over 64 KiB is refused before authentication (Istio sets no CSR limit of its own);
// - no CA loaded is UNAVAILABLE, not Istio's INTERNAL (HTTPErrorCode of CANotReady): gRPC's
//   code for a transient condition a client may retry (docs/serve.md);
// - the TTL is checked before the CSR is parsed (Istio's IstioCA.Sign parses first);
// - a CSR that does not parse also counts in citadel_server_csr_parsing_err_count: Istio declares
//   it (monitoring.go, CSRError) and dashboards alert on it, but its CreateCertificate does not
//   increment it;
// - internal failures are INTERNAL with a generic text, not Istio's "CSR signing error (<reason>)".
//
// To add a branch (e.g. impersonation): add a row; `request` and the fakes' behaviour are per row.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Metadata, status, type ServerUnaryCall, type StatusObject } from '@grpc/grpc-js';
import type { IstioCertificateRequest, IstioCertificateResponse } from '../../src/api/istioca.js';
import type { AuthRequest, Caller } from '../../src/authn/authenticator.js';
import type { CaSnapshot, CaState } from '../../src/ca/key-cert-bundle.js';
import { asCastellanError, CastellanError } from '../../src/errors.js';
import { createLogger } from '../../src/log.js';
import { AuditLog } from '../../src/server/audit.js';
import {
  createCertificateHandler,
  CsrRejected,
  MAX_CSR_BYTES,
  type IssuedLeaf,
  type LeafIssuer,
} from '../../src/server/create-certificate.js';
import { CaMetrics } from '../../src/server/metrics.js';
import { INTERNAL_MESSAGE, UNAUTHENTICATED_MESSAGE } from '../../src/server/status-map.js';
import { logLinesDestination } from '../support/log-lines.js';
import { ManualClock } from '../support/manual-clock.js';

const HOUR = 3_600_000;
const START = Date.UTC(2026, 0, 1);
const TTL = { defaultTtlMs: 24 * HOUR, maxTtlMs: 90 * 24 * HOUR };
const PEER = '10.1.2.3:40000';
const TOKEN = 'secret-token-never-logged';
/** The TLS peer leaf grpc-js hands out, and our CA chain that stands in for its intermediates. */
const PEER_LEAF = Uint8Array.of(0x30, 1, 1);
const CA_CHAIN = Uint8Array.of(0x30, 2, 2);
const CALLER: Caller = {
  authenticator: 'jwt',
  namespace: 'default',
  serviceAccount: 'sleep',
  subject: 'system:serviceaccount:default:sleep',
};
const SPIFFE_ID = 'spiffe://cluster.local/ns/default/sa/sleep';
const CSR_PEM = '-----BEGIN CERTIFICATE REQUEST-----\nfake\n-----END CERTIFICATE REQUEST-----\n';

/** What the fake parser returns: the handler only carries it from parseCsr to sign. */
interface FakeCsr {
  readonly pem: string;
}

/** The steps a call reached, in order. */
type Step = 'authenticate' | 'parseCsr' | 'sign';

interface Row {
  readonly name: string;
  /** Overrides of a well-formed request (a CSR, the default TTL). */
  readonly request?: Partial<IstioCertificateRequest>;
  /** Default: resolves to CALLER. */
  readonly authenticate?: () => Promise<Caller>;
  /** Default: a CA is loaded. */
  readonly noCa?: true;
  /** Default: returns the CSR. */
  readonly parseCsr?: () => Promise<FakeCsr>;
  /** Default: signs (see issuedLeaf). */
  readonly sign?: () => Promise<IssuedLeaf>;
  readonly want: {
    readonly code: status;
    /** What the client sees; for OK, the response's chain. */
    readonly details?: string;
    readonly steps: readonly Step[];
    /** Counters that moved, besides citadel_server_csr_count and the duration histogram. */
    readonly counters: Readonly<Record<string, number>>;
    readonly audit: {
      /** The start of the audit reason: the error kind, then the precise message. */
      readonly reason?: string;
      /** Present once the caller is authenticated. */
      readonly authenticated: boolean;
    };
    /** For OK: the SANs and TTL the issuer was asked to sign. */
    readonly signed?: { readonly sans: readonly string[]; readonly ttlMs: number };
  };
}

const reject = (e: Error) => (): Promise<never> => Promise.reject(e);
const SIGN_ERR = 'citadel_server_csr_sign_err_count';
const AUTHN_ERR = 'citadel_server_authentication_failure_count';
const PARSE_ERR = 'citadel_server_csr_parsing_err_count';

const ROWS: readonly Row[] = [
  {
    name: 'CSR larger than 64 KiB: INVALID_ARGUMENT before authentication, CSR_ERROR',
    request: { csr: 'x'.repeat(MAX_CSR_BYTES + 1) },
    want: {
      code: status.INVALID_ARGUMENT,
      details: `csr: the CSR is larger than ${MAX_CSR_BYTES} bytes`,
      steps: [],
      counters: { [`${SIGN_ERR}{error="CSR_ERROR"}`]: 1 },
      audit: { reason: 'too-large: csr: the CSR is larger than', authenticated: false },
    },
  },
  {
    name: 'CSR larger than 64 KiB in UTF-8 bytes, not in characters',
    request: { csr: 'é'.repeat(MAX_CSR_BYTES / 2 + 1) },
    want: {
      code: status.INVALID_ARGUMENT,
      details: `csr: the CSR is larger than ${MAX_CSR_BYTES} bytes`,
      steps: [],
      counters: { [`${SIGN_ERR}{error="CSR_ERROR"}`]: 1 },
      audit: { reason: 'too-large: ', authenticated: false },
    },
  },
  {
    name: 'authenticator rejects (unauthenticated): opaque UNAUTHENTICATED, reason in the audit',
    authenticate: reject(new CastellanError('unauthenticated', 'jwt: token expired at 10:00')),
    want: {
      code: status.UNAUTHENTICATED,
      details: UNAUTHENTICATED_MESSAGE,
      steps: ['authenticate'],
      counters: { [AUTHN_ERR]: 1 },
      audit: { reason: 'unauthenticated: jwt: token expired at 10:00', authenticated: false },
    },
  },
  {
    name: 'authenticator fails with another kind (an outage): still UNAUTHENTICATED, opaque',
    authenticate: reject(new CastellanError('unavailable', 'token-review: API server down')),
    want: {
      code: status.UNAUTHENTICATED,
      details: UNAUTHENTICATED_MESSAGE,
      steps: ['authenticate'],
      counters: { [AUTHN_ERR]: 1 },
      audit: { reason: 'unauthenticated: token-review: API server down', authenticated: false },
    },
  },
  {
    name: 'authenticator throws a plain Error (a bug): still UNAUTHENTICATED, opaque',
    authenticate: reject(new TypeError("cannot read properties of undefined (reading 'sub')")),
    want: {
      code: status.UNAUTHENTICATED,
      details: UNAUTHENTICATED_MESSAGE,
      steps: ['authenticate'],
      counters: { [AUTHN_ERR]: 1 },
      audit: { reason: 'unauthenticated: cannot read properties', authenticated: false },
    },
  },
  {
    name: 'no CA loaded: UNAVAILABLE, CA_NOT_READY',
    noCa: true,
    want: {
      code: status.UNAVAILABLE,
      details: 'the CA is not ready to sign certificates',
      steps: ['authenticate'],
      counters: { [`${SIGN_ERR}{error="CA_NOT_READY"}`]: 1 },
      audit: { reason: 'unavailable: no CA is loaded yet', authenticated: true },
    },
  },
  {
    name: 'TTL above the maximum: INVALID_ARGUMENT naming the field, TTL_ERROR',
    request: { validityDuration: TTL.maxTtlMs / 1000 + 1 },
    want: {
      code: status.INVALID_ARGUMENT,
      details: `validity_duration: requested TTL ${TTL.maxTtlMs / 1000 + 1}s is greater than the max allowed TTL ${TTL.maxTtlMs / 1000}s`,
      steps: ['authenticate'],
      counters: { [`${SIGN_ERR}{error="TTL_ERROR"}`]: 1 },
      audit: { reason: 'invalid-argument: validity_duration: requested TTL', authenticated: true },
    },
  },
  {
    name: 'CSR malformed: INVALID_ARGUMENT in its own words, CSR_ERROR',
    parseCsr: reject(new CastellanError('malformed', 'not a PEM CSR', { subject: 'csr' })),
    want: {
      code: status.INVALID_ARGUMENT,
      details: 'csr: not a PEM CSR',
      steps: ['authenticate', 'parseCsr'],
      counters: { [PARSE_ERR]: 1, [`${SIGN_ERR}{error="CSR_ERROR"}`]: 1 },
      audit: { reason: 'malformed: csr: not a PEM CSR', authenticated: true },
    },
  },
  {
    name: 'CSR self-signature does not verify: INVALID_ARGUMENT, CSR_ERROR',
    parseCsr: reject(
      new CastellanError('bad-signature', 'the CSR signature does not verify', { subject: 'csr' }),
    ),
    want: {
      code: status.INVALID_ARGUMENT,
      details: 'csr: the CSR signature does not verify',
      steps: ['authenticate', 'parseCsr'],
      counters: { [PARSE_ERR]: 1, [`${SIGN_ERR}{error="CSR_ERROR"}`]: 1 },
      audit: { reason: 'bad-signature: csr: the CSR signature', authenticated: true },
    },
  },
  {
    name: 'CSR parser throws something not ours: taken as malformed input, CSR_ERROR',
    parseCsr: reject(new RangeError('offset out of range')),
    want: {
      code: status.INVALID_ARGUMENT,
      details: 'offset out of range',
      steps: ['authenticate', 'parseCsr'],
      counters: { [PARSE_ERR]: 1, [`${SIGN_ERR}{error="CSR_ERROR"}`]: 1 },
      audit: { reason: 'malformed: offset out of range', authenticated: true },
    },
  },
  {
    name: 'CSR check fails on our side (its thread died): opaque INTERNAL, CERT_GEN_ERROR',
    parseCsr: reject(new CastellanError('internal', 'the CSR check thread stopped (exit code 1)')),
    want: {
      code: status.INTERNAL,
      details: INTERNAL_MESSAGE,
      steps: ['authenticate', 'parseCsr'],
      counters: { [PARSE_ERR]: 1, [`${SIGN_ERR}{error="CERT_GEN_ERROR"}`]: 1 },
      audit: { reason: 'internal: the CSR check thread stopped', authenticated: true },
    },
  },
  {
    name: 'signing fails (internal): opaque INTERNAL, CERT_GEN_ERROR',
    sign: reject(new CastellanError('internal', 'sign: key handle closed')),
    want: {
      code: status.INTERNAL,
      details: INTERNAL_MESSAGE,
      steps: ['authenticate', 'parseCsr', 'sign'],
      counters: { [`${SIGN_ERR}{error="CERT_GEN_ERROR"}`]: 1 },
      audit: { reason: 'internal: sign: key handle closed', authenticated: true },
    },
  },
  {
    name: 'signing fails with a plain Error: opaque INTERNAL, CERT_GEN_ERROR',
    sign: reject(new Error('/etc/cacerts/ca-key.pem: EIO')),
    want: {
      code: status.INTERNAL,
      details: INTERNAL_MESSAGE,
      steps: ['authenticate', 'parseCsr', 'sign'],
      counters: { [`${SIGN_ERR}{error="CERT_GEN_ERROR"}`]: 1 },
      audit: { reason: 'internal: /etc/cacerts/ca-key.pem: EIO', authenticated: true },
    },
  },
  {
    name: 'signing fails (unavailable: the CA went away): UNAVAILABLE, CA_NOT_READY',
    sign: reject(new CastellanError('unavailable', 'the signing key was unloaded')),
    want: {
      code: status.UNAVAILABLE,
      details: 'the CA is not ready to sign certificates',
      steps: ['authenticate', 'parseCsr', 'sign'],
      counters: { [`${SIGN_ERR}{error="CA_NOT_READY"}`]: 1 },
      audit: { reason: 'unavailable: the signing key was unloaded', authenticated: true },
    },
  },
  {
    name: "issued: the caller's identity, the default TTL",
    want: {
      code: status.OK,
      steps: ['authenticate', 'parseCsr', 'sign'],
      counters: { citadel_server_success_cert_issuance_count: 1 },
      audit: { authenticated: true },
      signed: { sans: [SPIFFE_ID], ttlMs: TTL.defaultTtlMs },
    },
  },
  {
    name: 'issued: a requested TTL at the maximum is honoured',
    request: { validityDuration: TTL.maxTtlMs / 1000 },
    want: {
      code: status.OK,
      steps: ['authenticate', 'parseCsr', 'sign'],
      counters: { citadel_server_success_cert_issuance_count: 1 },
      audit: { authenticated: true },
      signed: { sans: [SPIFFE_ID], ttlMs: TTL.maxTtlMs },
    },
  },
];

/** What the handler reads of a grpc-js unary call. */
function fakeCall(
  request: IstioCertificateRequest,
): ServerUnaryCall<IstioCertificateRequest, IstioCertificateResponse> {
  const metadata = new Metadata();
  metadata.add('authorization', `Bearer ${TOKEN}`);
  const call = {
    request,
    metadata,
    getPeer: () => PEER,
    getAuthContext: () => ({
      transportSecurityType: 'ssl',
      sslPeerCertificate: { raw: Buffer.from(PEER_LEAF) },
    }),
  };
  return call as unknown as ServerUnaryCall<IstioCertificateRequest, IstioCertificateResponse>;
}

/**
 * The counters and histogram counts that are not zero, as a scrape of /metrics shows them,
 * keyed `name{labels}`.
 */
async function movedCounters(metrics: CaMetrics): Promise<Record<string, number>> {
  const types = new Map<string, string>();
  const out: Record<string, number> = {};
  for (const line of (await metrics.registry.metrics()).split('\n')) {
    const type = /^# TYPE (\S+) (\S+)$/.exec(line);
    if (type) types.set(type[1]!, type[2]!);
    const sample = /^(([a-z_]+)(\{[^}]*\})?) (\S+)$/.exec(line);
    if (!sample || Number(sample[4]) === 0) continue;
    const name = sample[2]!;
    const counted =
      types.get(name) === 'counter' ||
      (name.endsWith('_count') && types.get(name.slice(0, -'_count'.length)) === 'histogram');
    if (counted) out[sample[1]!] = Number(sample[4]);
  }
  return out;
}

interface Outcome {
  readonly error: Partial<StatusObject> | null;
  readonly response: IstioCertificateResponse | null | undefined;
  readonly steps: Step[];
  readonly authRequests: AuthRequest[];
  readonly signed: { sans: readonly string[]; ttlMs: number }[];
  readonly metrics: CaMetrics;
  readonly logLines: string[];
}

/**
 * `oneHop`: the issuer also has LeafIssuer.issue, doing both steps at once as the crypto thread
 * does (src/server/issuers.ts), a CSR defect rejecting as CsrRejected: every row must end the
 * same (status, counters, audit) as through parseCsr then sign.
 */
async function run(row: Row, oneHop: boolean): Promise<Outcome> {
  const clock = new ManualClock(START);
  const metrics = new CaMetrics(clock);
  const { destination, lines: logLines } = logLinesDestination();
  const logger = createLogger({
    destination,
  });
  const snapshot = {
    bundle: { certChain: [{ rawData: CA_CHAIN.slice().buffer }] },
    generation: 1,
  } as unknown as CaSnapshot;
  const caState: CaState = {
    current: () => (row.noCa ? undefined : snapshot),
    onChange: () => () => undefined,
  };
  const steps: Step[] = [];
  const authRequests: AuthRequest[] = [];
  const signed: { sans: readonly string[]; ttlMs: number }[] = [];
  const issuer: LeafIssuer<FakeCsr> = {
    parseCsr: (pem) => {
      steps.push('parseCsr');
      return row.parseCsr ? row.parseCsr() : { pem };
    },
    sign: (s, csr, sans, ttlMs) => {
      steps.push('sign');
      assert.equal(s, snapshot, 'signs with the current snapshot');
      assert.equal(csr.pem, CSR_PEM, 'signs the parsed CSR');
      signed.push({ sans, ttlMs });
      if (row.sign) return row.sign();
      return Promise.resolve({
        certChainPem: ['LEAF\n', 'CA\n'],
        serialHex: '0a1b2c',
        notAfter: new Date(clock.now() + ttlMs),
      });
    },
  };
  if (oneHop) {
    issuer.issue = async (s, pem, sans, ttlMs) => {
      let csr: FakeCsr;
      try {
        csr = await issuer.parseCsr(pem);
      } catch (e) {
        throw new CsrRejected(asCastellanError(e, 'malformed'));
      }
      return issuer.sign(s, csr, sans, ttlMs);
    };
  }
  const handler = createCertificateHandler<FakeCsr>({
    trustDomain: 'cluster.local',
    caState,
    authenticate: (request) => {
      steps.push('authenticate');
      authRequests.push(request);
      return row.authenticate ? row.authenticate() : Promise.resolve(CALLER);
    },
    issuer,
    ttl: TTL,
    clock,
    metrics,
    audit: new AuditLog(logger),
  });
  const request: IstioCertificateRequest = { csr: CSR_PEM, validityDuration: 0, ...row.request };
  const { error, response } = await new Promise<Pick<Outcome, 'error' | 'response'>>((resolve) =>
    handler(fakeCall(request), (e, value) => resolve({ error: e, response: value })),
  );
  return { error, response, steps, authRequests, signed, metrics, logLines };
}

for (const [row, oneHop] of ROWS.flatMap((r) => [[r, false] as const, [r, true] as const])) {
  test(`CreateCertificate${oneHop ? ' (one hop)' : ''}: ${row.name}`, async () => {
    const { want } = row;
    const out = await run(row, oneHop);

    // What the client sees.
    if (want.code === status.OK) {
      assert.equal(out.error, null);
      assert.deepEqual(out.response, { certChain: ['LEAF\n', 'CA\n'] });
      assert.deepEqual(out.signed, [want.signed]);
    } else {
      assert.deepEqual(out.error, { code: want.code, details: want.details });
      assert.equal(out.response, undefined);
    }
    assert.deepEqual(out.steps, want.steps, 'the steps the call reached');

    // The authenticators saw the transport, never the CSR: the bearer token, the peer leaf and
    // our CA chain standing in for its intermediates (none while no CA is loaded).
    for (const seen of out.authRequests) {
      assert.deepEqual(seen, {
        metadata: { authorization: [`Bearer ${TOKEN}`] },
        peerCertificates: row.noCa ? [PEER_LEAF] : [PEER_LEAF, CA_CHAIN],
        peerAddress: PEER,
      });
    }

    // The metrics that moved, and only those.
    const outcome = want.code === status.OK ? 'issued' : 'refused';
    assert.deepEqual(await movedCounters(out.metrics), {
      citadel_server_csr_count: 1,
      [`castellan_csr_duration_seconds_count{outcome="${outcome}"}`]: 1,
      ...want.counters,
    });

    // Exactly one audit line, and the token in none.
    assert.ok(
      out.logLines.every((l) => !l.includes(TOKEN)),
      'no log line carries the token',
    );
    const audit = out.logLines
      .map((l) => JSON.parse(l) as Record<string, unknown>)
      .filter((l) => l['audit'] === 'csr');
    assert.equal(audit.length, 1, out.logLines.join('\n'));
    const line = audit[0]!;
    assert.equal(line['outcome'], outcome);
    assert.equal(line['code'], status[want.code]);
    assert.equal(line['peer'], PEER);
    assert.equal(line['requestedTtlSeconds'], row.request?.validityDuration ?? 0);
    assert.equal(line['spiffeId'], want.audit.authenticated ? SPIFFE_ID : undefined);
    assert.equal(line['authenticator'], want.audit.authenticated ? 'jwt' : undefined);
    assert.equal(line['subject'], want.audit.authenticated ? CALLER.subject : undefined);
    if (want.code === status.OK) {
      assert.equal(line['reason'], undefined);
      assert.equal(line['serial'], '0a1b2c');
      assert.equal(line['notAfter'], new Date(START + want.signed!.ttlMs).toISOString());
    } else {
      const reason = String(line['reason']);
      assert.ok(reason.startsWith(want.audit.reason!), `reason ${JSON.stringify(reason)}`);
      assert.equal(line['serial'], undefined);
    }
  });
}
