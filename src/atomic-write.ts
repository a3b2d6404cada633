import { randomBytes } from 'node:crypto';
import { open, readdir, rm, rename, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { CastellanError } from './errors.js';

/**
 * The temporary name of one write of `path`: `<path>.<pid>.<16 hex>.tmp`. Every temporary file
 * this project writes is named so, which is how a later start recognises (and removes) the ones
 * a killed process left behind.
 */
export function temporaryPathFor(path: string): string {
  return `${path}.${process.pid}.${randomBytes(8).toString('hex')}.tmp`;
}

const TEMPORARY_NAME = /^(.+)\.(\d+)\.[0-9a-f]{16}\.tmp$/;

/** Whether a process of this id runs on this host (signal 0 checks without sending anything). */
export function processIsAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    // EPERM: it exists, under another user.
    return (e as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/**
 * Removes the temporary files (temporaryPathFor) and directories in `dir` whose writer is no
 * longer running: what a process killed mid-write left behind (a copy of a key among them, so
 * they must not pile up). A writer still running — another process sharing the folder — keeps
 * its own. Returns the names removed; a folder that does not exist has none.
 */
export async function removeStaleTemporaries(
  dir: string,
  isAlive: (pid: number) => boolean = processIsAlive,
): Promise<string[]> {
  let names: string[];
  try {
    names = await readdir(dir);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return [];
    // A data dir that is a file, or unreadable: said as such, not as an unexpected error.
    const why = (e as NodeJS.ErrnoException).code ?? (e as Error).message;
    throw new CastellanError('internal', `not a readable folder (${why})`, {
      subject: dir,
      cause: e,
    });
  }
  const removed: string[] = [];
  for (const name of names) {
    const pid = TEMPORARY_NAME.exec(name)?.[2];
    if (pid === undefined || isAlive(Number(pid))) continue;
    await rm(join(dir, name), { recursive: true, force: true });
    removed.push(name);
  }
  return removed;
}

/**
 * Writes through a temporary file and a rename, so a crash never leaves half a file. The
 * temporary name is this write's own (pid and random bytes): two writers of one path, in one
 * process or two, never write into each other's temporary file, and the last rename wins whole.
 * A failed write removes its temporary file.
 */
export async function writeFileAtomic(path: string, text: string, mode = 0o644): Promise<void> {
  const tmp = temporaryPathFor(path);
  try {
    // `wx`: never write into a file that is already there, whoever made it.
    await writeFile(tmp, text, { mode, flag: 'wx' });
    await rename(tmp, path);
  } catch (e) {
    // EEXIST means the name was taken and the file is not ours to remove.
    if ((e as NodeJS.ErrnoException).code !== 'EEXIST') {
      await rm(tmp, { force: true }).catch(() => undefined);
    }
    throw e;
  }
}

/**
 * Creates `path` (never an existing file) with exactly `mode` — the umask must not loosen or
 * tighten what we promise — and syncs it: once this resolves, a power loss keeps the content.
 */
export async function writeFileDurably(path: string, data: string, mode: number): Promise<void> {
  const handle = await open(path, 'wx', mode);
  try {
    await handle.writeFile(data);
    await handle.chmod(mode);
    await handle.sync();
  } finally {
    await handle.close();
  }
}

/** Makes the renames and creations in a folder durable (a power loss keeps them). */
export async function syncFolder(dir: string): Promise<void> {
  const handle = await open(dir, 'r');
  try {
    await handle.sync();
  } finally {
    await handle.close();
  }
}
