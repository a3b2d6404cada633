// SoftHSM2 (Debian's softhsm2, a real PKCS#11 module) in a temp dir: its own config
// (SOFTHSM2_CONF), tokens initialised with softhsm2-util, a PIN file. scripts/setup-test-deps.sh
// installs it; a machine without it fails these tests rather than skipping them.
import { execFileSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export const SOFTHSM_MODULE = '/usr/lib/softhsm/libsofthsm2.so';
export const USER_PIN = '7391-5524';
const SO_PIN = '88112266';

export interface SoftHsm {
  readonly dir: string;
  /** The config file: SOFTHSM2_CONF for every process that loads the module. */
  readonly conf: string;
  readonly tokenDir: string;
  /** Holds USER_PIN. */
  readonly pinFile: string;
  /** process.env with SOFTHSM2_CONF pointing here, for child processes. */
  readonly env: NodeJS.ProcessEnv;
  /** Initialises a token with USER_PIN. */
  addToken(label: string): void;
  /** A key URI in this HSM: `pkcs11:token=…;object=…;type=private?module-path=…&pin-source=file:…`. */
  uri(token: string, object: string, query?: string): string;
  /** Moves the token directory away (SoftHSM2's "token removed"), and back. */
  takeTokensAway(): void;
  putTokensBack(): void;
  remove(): void;
}

/**
 * A fresh SoftHSM2 in a temp dir. With `thisProcess`, SOFTHSM2_CONF is also set in this
 * process's environment, for the module loaded in-process (SoftHSM2 reads it at C_Initialize).
 */
export function makeSoftHsm(options: { thisProcess?: boolean } = {}): SoftHsm {
  if (!existsSync(SOFTHSM_MODULE)) {
    throw new Error(`${SOFTHSM_MODULE} is missing: run bash scripts/setup-test-deps.sh`);
  }
  const dir = mkdtempSync(join(tmpdir(), 'castellan-softhsm-'));
  const tokenDir = join(dir, 'tokens');
  mkdirSync(tokenDir);
  const conf = join(dir, 'softhsm2.conf');
  writeFileSync(
    conf,
    `directories.tokendir = ${tokenDir}\nobjectstore.backend = file\nlog.level = ERROR\nslots.removable = false\n`,
  );
  const pinFile = join(dir, 'pin');
  // With a trailing newline, as `echo PIN > file` and Secrets mounted from such files have it.
  writeFileSync(pinFile, `${USER_PIN}\n`, { mode: 0o600 });
  const env = { ...process.env, SOFTHSM2_CONF: conf };
  if (options.thisProcess) process.env['SOFTHSM2_CONF'] = conf;
  return {
    dir,
    conf,
    tokenDir,
    pinFile,
    env,
    addToken(label) {
      execFileSync(
        'softhsm2-util',
        ['--init-token', '--free', '--label', label, '--pin', USER_PIN, '--so-pin', SO_PIN],
        { env, stdio: 'pipe' },
      );
    },
    uri(token, object, query = '') {
      return `pkcs11:token=${token};object=${object};type=private?module-path=${SOFTHSM_MODULE}&pin-source=file:${pinFile}${query}`;
    },
    takeTokensAway() {
      renameSync(tokenDir, `${tokenDir}.away`);
    },
    putTokensBack() {
      renameSync(`${tokenDir}.away`, tokenDir);
    },
    remove() {
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/**
 * The private key objects of a token as OpenSC's pkcs11-tool lists them (a PKCS#11 client we
 * did not write): label → its "Access:" line (e.g. "sensitive, always sensitive, never
 * extractable, local").
 */
export function privateKeyAccess(hsm: SoftHsm, token: string): Map<string, string> {
  return new Map([...privateKeyObjects(hsm, token)].map(([label, o]) => [label, o.access]));
}

/** As privateKeyAccess, with each key's "Usage:" line too (e.g. "sign"). */
export function privateKeyObjects(
  hsm: SoftHsm,
  token: string,
): Map<string, { access: string; usage: string }> {
  const out = execFileSync(
    'pkcs11-tool',
    [
      '--module',
      SOFTHSM_MODULE,
      '--token-label',
      token,
      '--login',
      '--pin',
      USER_PIN,
      '--list-objects',
      '--type',
      'privkey',
    ],
    { env: hsm.env, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] },
  );
  const keys = new Map<string, { access: string; usage: string }>();
  for (const block of out.split(/\n(?=Private Key Object)/)) {
    const label = /label:\s*(.*)/.exec(block)?.[1]?.trim();
    const access = /Access:\s*(.*)/.exec(block)?.[1]?.trim();
    const usage = /Usage:\s*(.*)/.exec(block)?.[1]?.trim() ?? '';
    if (label !== undefined && access !== undefined) keys.set(label, { access, usage });
  }
  return keys;
}
