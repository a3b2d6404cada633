import { InvalidArgumentError, Option } from 'commander';
import { formatDuration, parseDuration } from '../duration.js';
import { parseHostPort } from '../address.js';

/** A commander argument parser for durations (24h, 90m, 1h30m, plain seconds) → milliseconds. */
export function durationArg(value: string): number {
  try {
    return parseDuration(value);
  } catch (e) {
    throw new InvalidArgumentError(e instanceof Error ? e.message : String(e));
  }
}

/**
 * A duration option (parsed by durationArg) whose help shows its default as the flag takes it:
 * `(default: 1m)`, never the milliseconds it holds (a bare number on the command line is
 * seconds). `fallback` is the default as written (`'7d'`) or in milliseconds (shown as
 * formatDuration writes it, `60000` → `1m`); without it the option has no default.
 */
export function durationOption(
  flags: string,
  description: string,
  fallback?: string | number,
): Option {
  const option = new Option(flags, description).argParser(durationArg);
  if (fallback === undefined) return option;
  const text = typeof fallback === 'number' ? formatDuration(fallback) : fallback;
  const ms = durationArg(text);
  if (typeof fallback === 'number' && ms !== fallback) {
    throw new Error(`${flags}: default ${fallback} ms is not shown exactly as "${text}"`);
  }
  return option.default(ms, text);
}

/** A commander argument parser for HOST:PORT addresses (the same syntax serve accepts). */
export function hostPortArg(value: string): string {
  try {
    parseHostPort(value);
  } catch {
    throw new InvalidArgumentError(`"${value}" is not HOST:PORT (e.g. 127.0.0.1:15012)`);
  }
  return value;
}

/** Collects a repeatable option into an array. */
export function collect(value: string, previous: string[] | undefined): string[] {
  return [...(previous ?? []), value];
}
