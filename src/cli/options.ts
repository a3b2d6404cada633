import { InvalidArgumentError } from 'commander';
import { parseDuration } from '../duration.js';
import { parseHostPort } from '../address.js';

/** A commander argument parser for durations (24h, 90m, 1h30m, plain seconds) → milliseconds. */
export function durationArg(value: string): number {
  try {
    return parseDuration(value);
  } catch (e) {
    throw new InvalidArgumentError(e instanceof Error ? e.message : String(e));
  }
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
