// `npm run bench`: certificate issuance throughput and latency beside the machine's limit.
//
//   node dist/bench/main.js [--json] [--quick] [--only <substr>]
//
// The limit of each case is `openssl speed -multi <cores>` for the CA's key, measured in the same
// run, so the ratio means "how close to raw signing we get". Every case is bounded in count and
// time, uses loopback only, and leaves nothing running.
//
// Cases: in-process issuance (bench/in-process.ts); end to end against a spawned `castellan
// serve` (bench/e2e.ts: start to /ready, then CreateCertificate over gRPC + TLS + JWT driven by
// h2load — the primary figures — and by @grpc/grpc-js clients for comparison); ambient mode's
// burst, one ztunnel token for 200 identities on a node, against `serve --kube` and the fake API
// server (bench/ambient.ts); the policy engine at scale (bench/policy.ts); leaf signing with the
// CA key in SoftHSM2 beside the key in process (bench/hsm.ts, Debian's softhsm2); the peer,
// cfssl (a Go CA) signing the same CSR under the same h2load (bench/cfssl.ts): a case naming a
// `peer` runs with it and prints certs/s over the peer's (`vs peer`). The h2load cases need
// `h2load` (Debian nghttp2-client) and the peer `cfssl` (golang-cfssl): `npm run bench` runs
// scripts/setup-bench-deps.sh first.
//
// A case that throws is reported on one line (stderr) and the others still run; the exit code
// is then 1.
//
// Extension point: `cases` below is a plain list; a new case is one more BenchCase whose run()
// returns a Measurement.
import 'reflect-metadata';
import { execFileSync } from 'node:child_process';
import { availableParallelism } from 'node:os';
import { Command } from 'commander';
import { ambientCases } from './ambient.js';
import { cfsslCases } from './cfssl.js';
import { e2eCases } from './e2e.js';
import { hsmCases } from './hsm.js';
import { inProcessCases } from './in-process.js';
import { policyBenchCase } from './policy.js';
import type { BenchCase, BenchOptions, LimitKey, Measurement } from './types.js';

const cases: BenchCase[] = [
  ...inProcessCases(),
  ...hsmCases(),
  ...e2eCases(),
  ...cfsslCases(),
  ...ambientCases(),
  policyBenchCase(),
];

/** openssl speed's two-core (all-core) signing rate, from its machine-readable output. */
function opensslSignRate(alg: LimitKey, seconds: number): number | null {
  try {
    const out = execFileSync(
      'openssl',
      ['speed', '-mr', '-multi', String(availableParallelism()), '-seconds', String(seconds), alg],
      { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'], timeout: (seconds + 20) * 1000 },
    );
    // The summed line of -multi: "+F2:<i>:<bits>:<sign/s>:<verify/s>" (F4 for ECDSA), without
    // the "Got: … from <child>" prefix the per-child lines carry.
    const line = out.split('\n').find((l) => /^\+F\d+:/.test(l));
    const sign = line?.split(':')[3];
    return sign !== undefined ? Number(sign) : null;
  } catch {
    return null;
  }
}

interface Row extends Measurement {
  case: string;
  limit_per_s: number | null;
  ratio: number | null;
  /** certs/s over the peer case's (bench/cfssl.ts) in the same run. */
  peer_ratio: number | null;
  target: string;
}

function fmt(n: number | null, digits = 0): string {
  return n === null ? '-' : n.toFixed(digits);
}

function printTable(rows: Row[]): void {
  const header = [
    'case',
    'certs/s',
    'p50 ms',
    'p99 ms',
    'limit/s',
    'ratio',
    'vs peer',
    'rss MB',
    'ready ms',
    'srv cpu',
    'µs/cert',
    'loop µs',
    'thread µs',
    'gen cpu',
    'procs',
    'loop p99/max',
    'target',
  ];
  const body = rows.map((r) => [
    r.case,
    fmt(r.certs_per_s),
    fmt(r.p50_ms, 2),
    fmt(r.p99_ms, 2),
    fmt(r.limit_per_s),
    r.ratio === null ? '-' : `${(r.ratio * 100).toFixed(0)}%`,
    r.peer_ratio === null ? '-' : `${r.peer_ratio.toFixed(2)}x`,
    fmt(r.rss_mb),
    fmt(r.ready_ms ?? null),
    fmt(r.server_cpu ?? null, 2),
    fmt(r.cpu_us_per_cert ?? null),
    fmt(r.loop_us_per_cert ?? null),
    fmt(r.crypto_us_per_cert ?? null),
    fmt(r.client_cpu ?? null, 2),
    fmt(r.processes ?? null),
    r.loop_p99_ms === undefined ? '-' : `${fmt(r.loop_p99_ms, 1)}/${fmt(r.loop_max_ms ?? null, 1)}`,
    r.target,
  ]);
  const widths = header.map((h, i) => Math.max(h.length, ...body.map((b) => b[i]!.length)));
  const line = (cells: string[]): string =>
    cells
      .map((c, i) =>
        i === 0 || i === header.length - 1 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!),
      )
      .join('  ');
  console.log(line(header));
  console.log(widths.map((w) => '-'.repeat(w)).join('  '));
  for (const b of body) console.log(line(b));
}

function peerRatio(m: Measurement, peer: Row | undefined): number | null {
  return peer && peer.certs_per_s > 0 ? m.certs_per_s / peer.certs_per_s : null;
}

async function main(argv: string[]): Promise<void> {
  const program = new Command('bench')
    .option('--json', 'one JSON object per line instead of a table')
    .option('--quick', 'a short smoke run (figures are rough)')
    .option('--only <substr>', 'only cases whose name contains this (or is exactly this)')
    .option(
      '--seconds <s>',
      'seconds of load per case (default 4, --quick 0.5); a server under sustained load keeps growing its memory for 10–15 s',
    )
    .parse(argv, { from: 'user' });
  const flags = program.opts<{
    json?: boolean;
    quick?: boolean;
    only?: string;
    seconds?: string;
  }>();
  const seconds = flags.seconds === undefined ? (flags.quick ? 0.5 : 4) : Number(flags.seconds);
  if (!(seconds > 0 && seconds <= 600)) {
    program.error(`error: --seconds: "${flags.seconds}" is not a number of seconds from 0 to 600`);
  }
  const options: BenchOptions = {
    quick: flags.quick === true,
    seconds,
    maxCount: flags.quick ? 2_000 : 100_000,
  };
  // A name given whole selects that case alone; otherwise every case containing it.
  const exact = cases.some((c) => c.name === flags.only);
  const matched = new Set(
    cases.filter(
      (c) => !flags.only || (exact ? c.name === flags.only : c.name.includes(flags.only)),
    ),
  );
  // A case's peer runs with it (first: its figure is what the case's ratio is taken against).
  for (const c of [...matched]) {
    const peer = cases.find((p) => p.name === c.peer);
    if (peer) matched.add(peer);
  }
  const selected = [
    ...cases.filter(
      (c) => matched.has(c) && cases.some((o) => matched.has(o) && o.peer === c.name),
    ),
    ...cases.filter(
      (c) => matched.has(c) && !cases.some((o) => matched.has(o) && o.peer === c.name),
    ),
  ];
  if (selected.length === 0) {
    console.error(`bench: no case matches "${flags.only}"`);
    process.exitCode = 2;
    return;
  }
  const limits = new Map<LimitKey, number | null>();
  for (const key of new Set(selected.flatMap((c) => (c.limit ? [c.limit] : [])))) {
    if (!flags.json) console.error(`measuring openssl speed ${key} …`);
    limits.set(key, opensslSignRate(key, flags.quick ? 1 : 3));
  }
  const rows: Row[] = [];
  for (const c of selected) {
    if (!flags.json) console.error(`running ${c.name} …`);
    let m: Measurement;
    try {
      m = await c.run(options);
    } catch (e) {
      // One line, and the other cases still run (each cleans up after itself).
      console.error(`bench: ${c.name}: FAILED: ${e instanceof Error ? e.message : String(e)}`);
      process.exitCode = 1;
      continue;
    }
    const limit = c.limit ? (limits.get(c.limit) ?? null) : null;
    const row: Row = {
      case: c.name,
      ...m,
      limit_per_s: limit,
      ratio: limit ? m.certs_per_s / limit : null,
      peer_ratio: peerRatio(
        m,
        rows.find((r) => r.case === c.peer),
      ),
      target: c.target,
    };
    rows.push(row);
    if (flags.json) {
      const { target: _target, ...json } = row;
      console.log(JSON.stringify(json));
    }
  }
  if (!flags.json && rows.length) printTable(rows);
}

main(process.argv.slice(2)).catch((e: unknown) => {
  console.error(e);
  process.exitCode = 1;
});
