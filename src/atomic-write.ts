import { randomBytes } from 'node:crypto';
import { rm, rename, writeFile } from 'node:fs/promises';

/**
 * Writes through a temporary file and a rename, so a crash never leaves half a file. The
 * temporary name is this write's own (pid and random bytes): two writers of one path, in one
 * process or two, never write into each other's temporary file, and the last rename wins whole.
 * A failed write removes its temporary file.
 */
export async function writeFileAtomic(path: string, text: string, mode = 0o644): Promise<void> {
  const tmp = `${path}.${process.pid}.${randomBytes(8).toString('hex')}.tmp`;
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
