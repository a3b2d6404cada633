// In-process leaf issuance from CSRs: CSR parse + proof-of-possession check + leaf signing,
// the reference path (@peculiar/x509) against the fast path (src/pki/fast), no network.
import { generateKeyPairSync, type KeyObject } from 'node:crypto';
import { parseCsr, type CheckedCsr } from '../src/pki/csr.js';
import { createKeyAndCsr } from '../src/pki/csr-builder.js';
import { issueCertificate } from '../src/pki/issue.js';
import type { LeafSigner } from '../src/pki/leaf-signer.js';
import { createReferenceLeafSigner } from '../src/pki/reference-leaf-signer.js';
import { randomSerial } from '../src/pki/serial.js';
import { createFastLeafSigner } from '../src/pki/fast/fast-leaf-signer.js';
import { parseCsrFast } from '../src/pki/fast/fast-csr.js';
import { drive, rssMb, type BenchCase, type LimitKey } from './types.js';

type CaKey = 'p256' | 'rsa2048' | 'rsa4096';
const CA_KEYS: Record<CaKey, { limit: LimitKey; generate: () => KeyObject }> = {
  p256: {
    limit: 'ecdsap256',
    generate: () => generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey,
  },
  rsa2048: {
    limit: 'rsa2048',
    generate: () => generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey,
  },
  rsa4096: {
    limit: 'rsa4096',
    generate: () => generateKeyPairSync('rsa', { modulusLength: 4096 }).privateKey,
  },
};

/** The e2e targets of issue 7, shown beside the in-process figures for orientation. */
const TARGETS: Record<CaKey, string> = {
  p256: 'e2e @64: >= 3500/s, p99 <= 25 ms',
  rsa2048: 'e2e: >= 70% of limit',
  rsa4096: 'e2e: >= 90% of limit',
};

const cas = new Map<
  CaKey,
  Promise<{ cert: Awaited<ReturnType<typeof issueCertificate>>; key: KeyObject }>
>();
function ca(
  kind: CaKey,
): Promise<{ cert: Awaited<ReturnType<typeof issueCertificate>>; key: KeyObject }> {
  let p = cas.get(kind);
  if (!p) {
    const key = CA_KEYS[kind].generate();
    const now = Date.now();
    p = issueCertificate({
      profile: { kind: 'root', subject: [['O', `castellan bench ${kind}`]] },
      publicKey: key,
      selfKey: key,
      notBefore: new Date(now - 60_000),
      notAfter: new Date(now + 365 * 86_400_000),
    }).then((cert) => ({ cert, key }));
    cas.set(kind, p);
  }
  return p;
}

/** Sidecar-like CSRs (P-256 keys, a SPIFFE SAN), made once and reused round-robin. */
let csrPool: Promise<string[]> | undefined;
function csrs(): Promise<string[]> {
  csrPool ??= Promise.all(
    Array.from({ length: 64 }, (_, i) =>
      createKeyAndCsr('ec-p256', { sans: [`spiffe://cluster.local/ns/bench/sa/sa-${i}`] }).then(
        (k) => k.csrPem,
      ),
    ),
  );
  return csrPool;
}

function issuanceCase(kind: CaKey, path: 'reference' | 'fast', concurrency: number): BenchCase {
  return {
    name: `in-process ${path} ${kind} c=${concurrency}`,
    limit: CA_KEYS[kind].limit,
    target: TARGETS[kind],
    async run(options) {
      const { cert, key } = await ca(kind);
      const signer: LeafSigner =
        path === 'fast'
          ? createFastLeafSigner(new Uint8Array(cert.rawData), key)
          : createReferenceLeafSigner(cert, key);
      const parse: (pem: string) => CheckedCsr = path === 'fast' ? parseCsrFast : parseCsr;
      const pool = await csrs();
      const notAfterCap = cert.notAfter.getTime();
      const r = await drive(
        async (i) => {
          const csr = parse(pool[i % pool.length]!);
          const now = Date.now();
          return signer.sign({
            spki: csr.spki,
            sans: [`spiffe://cluster.local/ns/bench/sa/sa-${i % pool.length}`],
            serial: randomSerial(),
            notBefore: new Date(now - 120_000),
            notAfter: new Date(Math.min(now + 86_400_000, notAfterCap)),
          });
        },
        concurrency,
        options,
      );
      return { certs_per_s: r.count / r.seconds, p50_ms: r.p50, p99_ms: r.p99, rss_mb: rssMb() };
    },
  };
}

export function inProcessCases(): BenchCase[] {
  const out: BenchCase[] = [];
  for (const kind of ['p256', 'rsa2048', 'rsa4096'] as const) {
    for (const path of ['reference', 'fast'] as const) {
      for (const c of [1, 16, 64]) out.push(issuanceCase(kind, path, c));
    }
  }
  return out;
}
