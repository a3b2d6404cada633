// Every duration option's `--help` shows its default as the flag takes it: `(default: 1m)`, not
// the milliseconds it holds (a bare number on the command line is seconds, so copying `60000`
// would ask for 1000 times the default). The displayed text, given back to the same flag, must
// give the default again.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import type { Command, Option } from 'commander';
import { buildProgram } from '../../src/cli/main.js';
import { durationArg } from '../../src/cli/options.js';
import { parseDuration } from '../../src/duration.js';
import { castellanInProcess } from '../support/cli-in-process.js';

/** Every command under the program, as the words that name it (`['ca', 'root']`). */
function commandPaths(command: Command, path: string[] = []): string[][] {
  return command.commands.flatMap((c) => {
    const p = [...path, c.name()];
    return [p, ...commandPaths(c, p)];
  });
}

function find(program: Command, path: readonly string[]): Command {
  let command = program;
  for (const name of path) {
    const next = command.commands.find((c) => c.name() === name);
    assert.ok(next, `command ${path.join(' ')}`);
    command = next;
  }
  return command;
}

/** The option's entry in `--help`, its wrapped lines joined. */
function helpEntry(help: string, option: Option): string {
  const lines = help.split('\n');
  const start = lines.findIndex((l) => l.startsWith(`  ${option.flags} `));
  assert.ok(start >= 0, `${option.flags} is in the help:\n${help}`);
  const entry = [lines[start] as string];
  for (const line of lines.slice(start + 1)) {
    if (!/^ {4,}\S/.test(line)) break;
    entry.push(line);
  }
  return entry.join(' ').replace(/\s+/g, ' ').trim();
}

/** The default `--help` shows after the description: `(default: 1m)`, `(choices: …, default: "x")`. */
function shownDefault(entry: string): string | undefined {
  const extra = /\(([^()]*)\)$/.exec(entry)?.[1];
  const shown = extra !== undefined ? /(?:^|, )default: (.*)$/.exec(extra)?.[1] : undefined;
  if (shown === undefined) return undefined;
  return shown.startsWith('"') ? (JSON.parse(shown) as string) : shown;
}

const DURATION_TEXT = /^(\d+(\.\d+)?(ms|s|m|h|d))+$/;

/** A duration option: durationArg parses it, it is named <duration>, or its default reads as one. */
function isDuration(option: Option): boolean {
  return (
    option.parseArg === durationArg ||
    /<(duration|d)>/.test(option.flags) ||
    (typeof option.defaultValue === 'string' && DURATION_TEXT.test(option.defaultValue))
  );
}

const ms = (value: unknown): number =>
  typeof value === 'number' ? value : parseDuration(String(value));

test('duration defaults in --help are written as the flag takes them and give the default back', async () => {
  const all = await buildProgram([]);
  let checked = 0;
  const wrong: string[] = [];
  for (const path of commandPaths(all)) {
    const help = await castellanInProcess([...path, '--help']);
    assert.equal(help.code, 0, `${path.join(' ')} --help: ${help.stderr}`);
    for (const option of find(all, path).options) {
      if (!isDuration(option) || option.defaultValue === undefined) continue;
      const where = `castellan ${path.join(' ')} ${option.flags}`;
      const shown = shownDefault(helpEntry(help.stdout, option));
      assert.ok(shown !== undefined, `${where}: no default in --help`);
      checked++;
      // (a) Not a bare number: that is seconds on the command line, and the default is held in ms.
      if (/^\d+$/.test(shown)) {
        wrong.push(`${where}: default shown as a bare number (${shown})`);
        continue;
      }
      // (b) Given back to the same flag of a fresh program, the shown text is the default.
      const fresh = find(await buildProgram(path), path);
      fresh.parseOptions([option.long as string, shown]);
      const given = fresh.getOptionValue(option.attributeName()) as unknown;
      const back = ms(given);
      if (back !== ms(option.defaultValue)) {
        wrong.push(
          `${where}: "${shown}" gives ${back} ms, the default is ${ms(option.defaultValue)} ms`,
        );
      }
      assert.equal(
        parseDuration(shown),
        back,
        `${where}: "${shown}" reads as parseDuration reads it`,
      );
    }
  }
  assert.deepEqual(wrong, []);
  // agent (3), ca root, ca intermediate, ca check, ca crl, token, and serve's own: all were seen.
  assert.ok(checked >= 9, `only ${checked} duration defaults found`);
});

test('the defaults shown are the ones docs/agent.md gives', async () => {
  const help = await castellanInProcess(['agent', '--help']);
  const text = help.stdout.replace(/\s+/g, ' ');
  assert.match(text, /--retry-initial <duration> .*?\(default: 1s\)/);
  assert.match(text, /--retry-max <duration> .*?\(default: 1m\)/);
  assert.match(text, /--error-backoff <duration> .*?\(default: 5m\)/);
  const root = (await castellanInProcess(['ca', 'root', '--help'])).stdout;
  assert.match(root.replace(/\s+/g, ' '), /--ttl <duration> validity \(default: 87600h\)/);
});
