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
