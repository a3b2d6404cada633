// A command line commander refuses (a value outside .choices(), an unknown option, a missing
// value or option, an extra argument) ends as our own bad values do (docs/serve.md): a line
// starting `castellan: ` on stderr and exit code 2, before anything starts. Help exits 0.
import { after, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { binPath } from '../support/paths.js';
import { castellanInProcess } from '../support/cli-in-process.js';

const dirs: string[] = [];
after(() => dirs.forEach((d) => rmSync(d, { recursive: true, force: true })));

/** `castellan <args>` as installed (bin/castellan.js), in an empty folder: serve's default data dir. */
function castellan(args: readonly string[]): {
  code: number | null;
  stdout: string;
  stderr: string;
  cwd: string;
} {
  const cwd = mkdtempSync(join(tmpdir(), 'castellan-usage-'));
  dirs.push(cwd);
  const r = spawnSync(process.execPath, [binPath, ...args], {
    cwd,
    encoding: 'utf8',
    timeout: 60_000,
  });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr, cwd };
}

test('the real command: commander refusals exit 2 with a castellan: line, nothing started', () => {
  const cases: [readonly string[], RegExp][] = [
    [
      ['serve', '--log-level', 'verbose'],
      /^castellan: option '--log-level <level>' argument 'verbose' is invalid\. Allowed choices are /,
    ],
    [
      ['serve', '--ca-key-type', 'ec-p521'],
      /^castellan: option '--ca-key-type <type>' argument 'ec-p521' is invalid\./,
    ],
    [['serve', '--frobnicate'], /^castellan: unknown option '--frobnicate'/],
    [['serve', '--log-level'], /^castellan: option '--log-level <level>' argument missing/],
  ];
  for (const [args, message] of cases) {
    const r = castellan(args);
    assert.equal(r.code, 2, `${args.join(' ')}: ${r.stderr}`);
    assert.match(r.stderr, message, args.join(' '));
    assert.doesNotMatch(r.stderr, /^error: /m, args.join(' '));
    assert.equal(r.stdout, '', args.join(' '));
    assert.deepEqual(readdirSync(r.cwd), [], `${args.join(' ')}: nothing was created`);
  }
});

test('the real command: --help exits 0, on stdout', () => {
  for (const args of [['--help'], ['serve', '--help'], ['ca', 'root', '--help']]) {
    const r = castellan(args);
    assert.equal(r.code, 0, `${args.join(' ')}: ${r.stderr}`);
    assert.match(r.stdout, /^Usage: castellan /, args.join(' '));
    assert.equal(r.stderr, '', args.join(' '));
  }
});

test('every command: commander refusals exit 2; help exits 0', async () => {
  const cases: [readonly string[], RegExp][] = [
    [['tokn'], /^castellan: unknown command 'tokn'/],
    [
      ['token', '--namespace', 'ns'],
      /^castellan: required option '--service-account <sa>' not specified/,
    ],
    [
      ['token', '--namespace', 'ns', '--service-account', 'sa', '--frobnicate'],
      /^castellan: unknown option '--frobnicate'/,
    ],
    [
      ['token', '--namespace', 'ns', '--service-account', 'sa', '--ttl', 'soon'],
      /^castellan: option '--ttl <duration>' argument 'soon' is invalid\. invalid duration "soon"/,
    ],
    [
      ['agent', '--log-level', 'verbose'],
      /^castellan: option '--log-level <level>' argument 'verbose' is invalid/,
    ],
    [['agent', '--retry-max'], /^castellan: option '--retry-max <duration>' argument missing/],
    [
      ['request', '--key-type', 'dsa'],
      /^castellan: option '--key-type <type>' argument 'dsa' is invalid/,
    ],
    [['ca', 'root', '--out', 'x', 'extra'], /^castellan: too many arguments for 'root'/],
    [
      ['ca', 'crl', '--next-update', '1000x'],
      /^castellan: option '--next-update <duration>' argument '1000x' is invalid/,
    ],
    [['ca', 'frobnicate'], /^castellan: unknown command 'frobnicate'/],
    [['policy', '--frobnicate'], /^castellan: unknown option '--frobnicate'/],
  ];
  for (const [args, message] of cases) {
    const r = await castellanInProcess(args);
    assert.equal(r.code, 2, `${args.join(' ')}: ${r.stderr}`);
    assert.match(r.stderr, message, args.join(' '));
  }
  for (const args of [
    ['--help'],
    ['help', 'agent'],
    ['ca', '--help'],
    ['ca', 'help', 'crl'],
    ['token', '--help'],
  ]) {
    const r = await castellanInProcess(args);
    assert.equal(r.code, 0, `${args.join(' ')}: ${r.stderr}`);
    assert.match(r.stdout, /^Usage: castellan /, args.join(' '));
  }
});
