// Atomic file writes: a temporary file and a rename, the temporary name unique to each write.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { writeFileAtomic } from '../src/atomic-write.js';

const tmp = (): string => mkdtempSync(join(tmpdir(), 'castellan-atomic-'));

test('writes the file with its mode and leaves nothing else behind', async () => {
  const dir = tmp();
  const path = join(dir, 'key.pem');
  await writeFileAtomic(path, 'secret\n', 0o600);
  assert.equal(readFileSync(path, 'utf8'), 'secret\n');
  assert.equal(statSync(path).mode & 0o777, 0o600);
  await writeFileAtomic(path, 'replaced\n');
  assert.equal(readFileSync(path, 'utf8'), 'replaced\n');
  assert.deepEqual(readdirSync(dir), ['key.pem']);
});

test('concurrent writers of one path each succeed, and the file is one of them whole', async () => {
  const dir = tmp();
  const path = join(dir, 'root-cert.pem');
  const texts = Array.from({ length: 20 }, (_, i) => `${String(i).repeat(100_000)}\n`);
  await Promise.all(texts.map((t) => writeFileAtomic(path, t)));
  assert.ok(texts.includes(readFileSync(path, 'utf8')), 'the content of exactly one writer');
  assert.deepEqual(readdirSync(dir), ['root-cert.pem'], 'no temporary file left');
});

test('a failed write removes its temporary file', async () => {
  const dir = tmp();
  // A folder with something in it cannot be replaced by a file: the rename fails.
  const path = join(dir, 'taken');
  mkdirSync(path);
  writeFileSync(join(path, 'inside'), 'x');
  await assert.rejects(writeFileAtomic(path, 'text'));
  assert.deepEqual(readdirSync(dir), ['taken']);
});
