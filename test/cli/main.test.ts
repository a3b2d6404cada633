// src/cli/main.ts loads only the command it runs (its module, when argv names one); the full
// help and a mistyped name load them all, so both still see every command.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { castellanInProcess } from '../support/cli-in-process.js';

test('the full help lists every command; a mistyped one is refused with a suggestion', async () => {
  const help = await castellanInProcess(['--help']);
  assert.equal(help.code, 0);
  for (const name of ['ca', 'serve', 'token', 'request', 'agent', 'policy']) {
    assert.match(help.stdout, new RegExp(`^  ${name}\\b`, 'm'), name);
  }
  const typo = await castellanInProcess(['tokn']);
  assert.equal(typo.code, 2);
  assert.match(typo.stderr, /unknown command 'tokn'\n\(Did you mean token\?\)/);
});
