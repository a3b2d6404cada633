// Keys and certificates made with the real `openssl` CLI in a test's temp dir, for the cases
// Istio's sample certificates do not cover (an in-test root, a TLS server, odd extensions).
import { execFileSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';

/** The key a certificate is made for: ECDSA P-256 (the default) or RSA 2048. */
export type OpensslKeyType = 'ec-p256' | 'rsa-2048';

const NEWKEY: Record<OpensslKeyType, string[]> = {
  'ec-p256': ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256'],
  'rsa-2048': ['-newkey', 'rsa:2048'],
};

/** Runs openssl in `dir`; a failure throws with openssl's stderr in the message. */
function opensslIn(dir: string, args: readonly string[]): void {
  execFileSync('openssl', args, { cwd: dir, stdio: ['ignore', 'ignore', 'pipe'] });
}

export interface SelfSignedOptions {
  /** openssl -subj, e.g. '/O=test/CN=root'. */
  readonly subject: string;
  /** openssl -addext values, e.g. 'basicConstraints=critical,CA:TRUE'. */
  readonly extensions?: readonly string[];
  readonly days?: number;
  readonly keyType?: OpensslKeyType;
}

/** A new key and a self-signed certificate for it: writes `<name>.key` and `<name>.pem` in dir. */
export function opensslSelfSigned(dir: string, name: string, o: SelfSignedOptions): void {
  opensslIn(dir, [
    'req',
    '-x509',
    ...NEWKEY[o.keyType ?? 'ec-p256'],
    '-nodes',
    '-keyout',
    `${name}.key`,
    '-subj',
    o.subject,
    '-days',
    String(o.days ?? 30),
    ...(o.extensions ?? []).flatMap((e) => ['-addext', e]),
    '-out',
    `${name}.pem`,
  ]);
}

export interface SignedOptions {
  /** openssl -subj of the new certificate. */
  readonly subject: string;
  /** The issuer: `<signer>.pem` and `<signer>.key` in dir (e.g. made by opensslSelfSigned). */
  readonly signer: string;
  /** The extensions, as the text of an openssl extension file (one `name=value` per line). */
  readonly extensions: string;
  readonly serial: number;
  readonly days?: number;
}

/**
 * A new P-256 key and a certificate for it signed by `signer`: writes `<name>.key`,
 * `<name>.csr`, `<name>.ext` and `<name>.pem` in dir.
 */
export function opensslSigned(dir: string, name: string, o: SignedOptions): void {
  writeFileSync(join(dir, `${name}.ext`), o.extensions);
  opensslIn(dir, [
    'req',
    '-new',
    ...NEWKEY['ec-p256'],
    '-nodes',
    '-keyout',
    `${name}.key`,
    '-subj',
    o.subject,
    '-out',
    `${name}.csr`,
  ]);
  opensslIn(dir, [
    'x509',
    '-req',
    '-in',
    `${name}.csr`,
    '-CA',
    `${o.signer}.pem`,
    '-CAkey',
    `${o.signer}.key`,
    '-set_serial',
    String(o.serial),
    '-days',
    String(o.days ?? 30),
    '-extfile',
    `${name}.ext`,
    '-out',
    `${name}.pem`,
  ]);
}
