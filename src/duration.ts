import { CastellanError } from './errors.js';

const UNIT_MS: Record<string, number> = {
  ms: 1,
  s: 1000,
  m: 60_000,
  h: 3_600_000,
  d: 86_400_000,
};

/**
 * Parses a duration as operators write them: Go-style `24h`, `90m`, `1h30m`, `2160h`,
 * `500ms`, `7d`, or plain seconds (`3600`). Returns milliseconds. Refuses anything else,
 * zero and negative values included, with a message that quotes the input.
 */
export function parseDuration(text: string, what = 'duration'): number {
  const s = text.trim();
  if (/^\d+$/.test(s)) {
    const ms = Number(s) * 1000;
    if (ms > 0 && Number.isSafeInteger(ms)) return ms;
  } else if (/^(\d+(\.\d+)?(ms|s|m|h|d))+$/.test(s)) {
    let total = 0;
    for (const m of s.matchAll(/(\d+(?:\.\d+)?)(ms|s|m|h|d)/g)) {
      total += Number(m[1]) * (UNIT_MS[m[2] as string] as number);
    }
    if (total > 0 && Number.isFinite(total)) return Math.round(total);
  }
  throw new CastellanError(
    'invalid-argument',
    `invalid ${what} "${text}": use a positive duration such as 24h, 90m, 1h30m or plain seconds`,
  );
}

/** Formats milliseconds the way parseDuration reads them (largest units first). */
export function formatDuration(ms: number): string {
  if (ms <= 0) return '0s';
  const parts: string[] = [];
  let rest = Math.round(ms);
  for (const [unit, size] of [
    ['h', 3_600_000],
    ['m', 60_000],
    ['s', 1000],
  ] as const) {
    const n = Math.floor(rest / size);
    if (n > 0) parts.push(`${n}${unit}`);
    rest -= n * size;
  }
  if (rest > 0) parts.push(`${rest}ms`);
  return parts.join('');
}

/** Go's time.ParseDuration units, in nanoseconds (`µs` and `μs` are both micro signs). */
const GO_UNIT_NS: Record<string, bigint> = {
  ns: 1n,
  us: 1_000n,
  µs: 1_000n,
  μs: 1_000n,
  ms: 1_000_000n,
  s: 1_000_000_000n,
  m: 60_000_000_000n,
  h: 3_600_000_000_000n,
};
/** A Go time.Duration is an int64 of nanoseconds. */
const GO_MAX_NS = (1n << 63n) - 1n;

/**
 * Parses a duration exactly as Go's time.ParseDuration does (the parser istiod's environment
 * variables go through, pkg/env/var.go): an optional sign, then one or more decimal numbers each
 * with a unit (ns, us/µs, ms, s, m, h), e.g. `24h`, `1h30m`, `1.5h`, `-10m`; `0` alone needs no
 * unit. Unlike parseDuration there is no `d` unit and no plain seconds, since Go refuses both,
 * and zero and negative values are returned as they are (some variables give them a meaning).
 * Returns milliseconds (fractions kept: Go counts nanoseconds). Anything else throws
 * CastellanError('invalid-argument') quoting the input, in Go's own words.
 */
export function parseGoDuration(text: string): number {
  const fail = (why: string): never => {
    throw new CastellanError(
      'invalid-argument',
      `${why}: Go durations are written like 24h, 90m, 1h30m, 1.5h or 500ms`,
    );
  };
  const invalid = (): never => fail(`invalid duration ${JSON.stringify(text)}`);
  let s = text;
  let negative = false;
  if (s.startsWith('-') || s.startsWith('+')) {
    negative = s[0] === '-';
    s = s.slice(1);
  }
  if (s === '0') return 0;
  if (s === '') invalid();
  let total = 0n;
  while (s !== '') {
    // A number: digits, optionally a fraction; at least one digit on either side of the dot.
    const m = /^(\d*)(?:\.(\d*))?/.exec(s) as RegExpExecArray;
    const whole = m[1] as string;
    const fraction = m[2];
    if (whole === '' && (fraction === undefined || fraction === '')) invalid();
    s = s.slice(m[0].length);
    const unitText = (/^[^\d.]*/.exec(s) as RegExpExecArray)[0];
    if (unitText === '') fail(`missing unit in duration ${JSON.stringify(text)}`);
    const unit = GO_UNIT_NS[unitText];
    if (unit === undefined) {
      fail(`unknown unit ${JSON.stringify(unitText)} in duration ${JSON.stringify(text)}`);
    }
    s = s.slice(unitText.length);
    let value = BigInt(whole === '' ? '0' : whole) * (unit as bigint);
    if (fraction) value += goFractionNs(fraction, unit as bigint);
    total += value;
    if (total > GO_MAX_NS + 1n) invalid();
  }
  if (!negative && total > GO_MAX_NS) invalid();
  const ms = Number(total) / 1e6;
  return negative ? -ms : ms;
}

/**
 * The nanoseconds a fraction adds, computed as Go computes them (leadingFraction, then
 * `uint64(float64(f) * (float64(unit) / scale))`): digits past int64's precision are dropped and
 * the product is taken in floating point, then truncated — so `0.3333333333333333333h` is
 * exactly 20m, as in Go.
 */
function goFractionNs(digits: string, unit: bigint): bigint {
  let f = 0n;
  let scale = 1;
  for (const d of digits) {
    const next = f * 10n + BigInt(d);
    if (next > GO_MAX_NS) break;
    f = next;
    scale *= 10;
  }
  return BigInt(Math.trunc(Number(f) * (Number(unit) / scale)));
}
