// Leaf signing with the CA key inside SoftHSM2 (a real PKCS#11 module, Debian's softhsm2),
// beside the same signing with the key in process: the fast leaf template, one C_Sign per
// certificate on a pool of sessions. Also the event loop's delay during the run (p99 and max),
// which shows whether signing blocks it. Each case makes its own token in a temp dir and removes
// it afterwards.
import { execFileSync } from 'node:child_process';
import { generateKeyPairSync } from 'node:crypto';
import { mkdirSync, writeFileSync } from 'node:fs';
import { temporaryDir } from './interrupt.js';
import { join } from 'node:path';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { generatePkcs11Key } from '../src/ca/signers/pkcs11-keygen.js';
import { openPkcs11Signer } from '../src/ca/signers/pkcs11-signer.js';
import { systemClock } from '../src/clock.js';
import { createFastLeafSigner } from '../src/pki/fast/fast-leaf-signer.js';
import { issueCertificate } from '../src/pki/issue.js';
import type { CaKeyType } from '../src/pki/key-type.js';
import { spkiOf } from '../src/pki/keys.js';
import { randomSerial } from '../src/pki/serial.js';
import { keyObjectSigner, type CaSigner } from '../src/pki/signer.js';
import { drive, rssMb, type BenchCase, type LimitKey, type Measurement } from './types.js';

const MODULE = '/usr/lib/softhsm/libsofthsm2.so';
const PIN = '2468-1357';
const KINDS: Record<'p256' | 'rsa2048', { keyType: CaKeyType; limit: LimitKey }> = {
  p256: { keyType: 'ec-p256', limit: 'ecdsap256' },
  rsa2048: { keyType: 'rsa-2048', limit: 'rsa2048' },
};

/** A SoftHSM2 token in a temp dir with one key of `keyType`; the URI and a cleanup. */
async function softHsmKey(
  keyType: CaKeyType,
): Promise<{ uri: string; spki: Uint8Array; remove: () => void }> {
  const temp = temporaryDir('castellan-bench-hsm-');
  const dir = temp.path;
  const tokens = join(dir, 'tokens');
  mkdirSync(tokens);
  const conf = join(dir, 'softhsm2.conf');
  writeFileSync(conf, `directories.tokendir = ${tokens}\nobjectstore.backend = file\n`);
  writeFileSync(join(dir, 'pin'), PIN, { mode: 0o600 });
  // SoftHSM2 reads its configuration at C_Initialize, in this process.
  process.env['SOFTHSM2_CONF'] = conf;
  try {
    execFileSync(
      'softhsm2-util',
      ['--init-token', '--free', '--label', 'bench', '--pin', PIN, '--so-pin', '12345678'],
      { stdio: 'pipe' },
    );
  } catch (e) {
    temp.remove();
    throw new Error(
      `softhsm2-util failed (install Debian's softhsm2: bash scripts/setup-bench-deps.sh): ${(e as Error).message}`,
    );
  }
  const uri = `pkcs11:token=bench;object=ca?module-path=${MODULE}&pin-source=file:${join(dir, 'pin')}`;
  const spki = await generatePkcs11Key({ uri, keyType, env: process.env });
  return { uri, spki, remove: () => temp.remove() };
}

function leafSpki(): Uint8Array {
  return spkiOf(generateKeyPairSync('ec', { namedCurve: 'P-256' }).publicKey);
}

/** Drives fast-template leaf signing through `signer`; the event loop's delay alongside. */
async function measure(
  signer: CaSigner,
  publicKey: Uint8Array,
  concurrency: number,
  options: Parameters<BenchCase['run']>[0],
): Promise<Measurement> {
  const now = Date.now();
  const cert = await issueCertificate({
    profile: { kind: 'root', subject: [['O', 'castellan bench hsm']] },
    publicKey,
    selfKey: signer,
    notBefore: new Date(now - 60_000),
    notAfter: new Date(now + 86_400_000),
  });
  const leafSigner = createFastLeafSigner(new Uint8Array(cert.rawData), signer);
  const spkis = Array.from({ length: 16 }, leafSpki);
  const loop = monitorEventLoopDelay({ resolution: 1 });
  loop.enable();
  const r = await drive(
    (i) => {
      const t = Date.now();
      return leafSigner.sign({
        spki: spkis[i % spkis.length]!,
        sans: [`spiffe://cluster.local/ns/bench/sa/sa-${i % 16}`],
        serial: randomSerial(),
        notBefore: new Date(t - 120_000),
        notAfter: new Date(t + 3_600_000),
      });
    },
    concurrency,
    options,
  );
  loop.disable();
  return {
    certs_per_s: r.count / r.seconds,
    p50_ms: r.p50,
    p99_ms: r.p99,
    rss_mb: rssMb(),
    loop_p99_ms: loop.percentile(99) / 1e6,
    loop_max_ms: loop.max / 1e6,
  };
}

function hsmCase(kind: 'p256' | 'rsa2048', where: 'in-process' | 'softhsm2', c: number): BenchCase {
  const { keyType, limit } = KINDS[kind];
  return {
    name: `sign ${where} ${kind} c=${c}`,
    limit,
    target: where === 'softhsm2' ? 'compare with the in-process row' : 'fast leaf, key in memory',
    async run(options) {
      if (where === 'in-process') {
        const key =
          kind === 'p256'
            ? generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey
            : generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey;
        return measure(keyObjectSigner(key), spkiOf(key), c, options);
      }
      const hsm = await softHsmKey(keyType);
      try {
        const signer = await openPkcs11Signer({
          uri: hsm.uri,
          env: process.env,
          clock: systemClock,
        });
        try {
          return await measure(signer, hsm.spki, c, options);
        } finally {
          await signer.close();
        }
      } finally {
        hsm.remove();
      }
    },
  };
}

export function hsmCases(): BenchCase[] {
  const out: BenchCase[] = [];
  for (const kind of ['p256', 'rsa2048'] as const) {
    for (const c of [1, 16, 64]) {
      out.push(hsmCase(kind, 'in-process', c), hsmCase(kind, 'softhsm2', c));
    }
  }
  return out;
}
