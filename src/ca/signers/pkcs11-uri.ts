import { readFile } from 'node:fs/promises';
import { isAbsolute } from 'node:path';
import { fileURLToPath } from 'node:url';
import { CastellanError } from '../../errors.js';

/**
 * A PKCS#11 URI (RFC 7512) naming a CA's private key: which module to load, which token, which
 * object, and where the PIN comes from. No npm package parses RFC 7512 (p11-kit's C parser is
 * the reference, p11_kit_uri_parse), so this is a small parser of its grammar (§2.3) with
 * tests (test/ca/signers/pkcs11-uri.test.ts).
 *
 * Castellan's reading of it:
 *  - `module-path` is required: the module is loaded by path (`module-name` would need p11-kit's
 *    search path, which Castellan does not have).
 *  - the key is a private key: `type=private`, or no `type`; `object` (CKA_LABEL) and/or `id`
 *    (CKA_ID, bytes) select it, and at least one of them is required.
 *  - the token is selected by `token`, `manufacturer`, `serial`, `model`, `slot-id`,
 *    `slot-description`, `slot-manufacturer` (any that are given must all match).
 *  - the PIN comes from `pin-source=file:/path` (RFC 7512 §2.3: a URI to read it from) or
 *    `pin-source=env:NAME` (Castellan's own form: an environment variable); never `pin-value`,
 *    which would put the PIN in `ps`, logs and Secrets. No pin-source: no login (for tokens that
 *    need none).
 */
export interface Pkcs11Uri {
  /** The URI as given, without any pin-value: what errors and logs name. */
  readonly text: string;
  readonly modulePath: string;
  readonly token?: string | undefined;
  readonly manufacturer?: string | undefined;
  readonly serial?: string | undefined;
  readonly model?: string | undefined;
  readonly slotId?: number | undefined;
  readonly slotDescription?: string | undefined;
  readonly slotManufacturer?: string | undefined;
  /** CKA_LABEL. */
  readonly object?: string | undefined;
  /** CKA_ID, as bytes. */
  readonly id?: Uint8Array | undefined;
  readonly pinSource?: PinSource | undefined;
}

export type PinSource =
  | { readonly kind: 'file'; readonly path: string }
  | { readonly kind: 'env'; readonly name: string };

const PATH_ATTRIBUTES = new Set([
  'token',
  'manufacturer',
  'serial',
  'model',
  'library-manufacturer',
  'library-description',
  'library-version',
  'object',
  'type',
  'id',
  'slot-description',
  'slot-manufacturer',
  'slot-id',
]);
const QUERY_ATTRIBUTES = new Set(['pin-source', 'pin-value', 'module-name', 'module-path']);
/** Standard attributes this reading does not use: refused by name rather than ignored. */
const UNUSED = new Set(['library-manufacturer', 'library-description', 'library-version']);

/** RFC 7512 §2.3: pk11-pchar and pk11-qchar, besides pct-encoded. */
const PATH_CHAR = /^[A-Za-z0-9\-._~:[\]@!$'()*+,=&]$/;
const QUERY_CHAR = /^[A-Za-z0-9\-._~:[\]@!$'()*+,=/?|;]$/;

function bad(uri: string, message: string): CastellanError {
  return new CastellanError('invalid-argument', message, { subject: uri });
}

/** Percent-decodes one attribute value to bytes; any character outside `allowed` is refused. */
function decode(value: string, allowed: RegExp, uri: string, name: string): Uint8Array {
  const out: number[] = [];
  for (let i = 0; i < value.length; i++) {
    const c = value[i] as string;
    if (c === '%') {
      const hex = value.slice(i + 1, i + 3);
      if (!/^[0-9A-Fa-f]{2}$/.test(hex)) {
        throw bad(uri, `${name}: "%${hex}" is not a percent-encoded byte`);
      }
      out.push(parseInt(hex, 16));
      i += 2;
    } else if (allowed.test(c)) {
      out.push(...Buffer.from(c, 'utf8'));
    } else {
      throw bad(uri, `${name}: "${c}" must be percent-encoded (RFC 7512 §2.3)`);
    }
  }
  return Uint8Array.from(out);
}

function text(bytes: Uint8Array, uri: string, name: string): string {
  try {
    return new TextDecoder('utf-8', { fatal: true }).decode(bytes);
  } catch {
    throw bad(uri, `${name} is not UTF-8`);
  }
}

/** The URI with any pin-value's value hidden: the only form errors may show. */
export function redactPkcs11Uri(uri: string): string {
  return uri.replace(/([?&]pin-value=)[^&]*/g, '$1(hidden)');
}

/**
 * Parses a PKCS#11 URI into Castellan's reading of it (above). Every refusal is
 * `invalid-argument` naming the URI with any pin-value hidden.
 */
export function parsePkcs11Uri(input: string): Pkcs11Uri {
  const shown = redactPkcs11Uri(input.trim());
  const uri = input.trim();
  if (!/^pkcs11:/i.test(uri)) throw bad(shown, 'a PKCS#11 URI starts with "pkcs11:"');
  const rest = uri.slice('pkcs11:'.length);
  const q = rest.indexOf('?');
  const path = q < 0 ? rest : rest.slice(0, q);
  const query = q < 0 ? '' : rest.slice(q + 1);
  const attrs = new Map<string, Uint8Array>();
  const take = (part: string, separator: string, known: Set<string>, chars: RegExp): void => {
    if (part === '') return;
    for (const attr of part.split(separator)) {
      const eq = attr.indexOf('=');
      const name = eq < 0 ? attr : attr.slice(0, eq);
      if (eq < 0) throw bad(shown, `"${name}" has no value (name=value)`);
      if (!known.has(name) && !name.startsWith('x-')) {
        throw bad(
          shown,
          `unknown attribute "${name}" in the ${known === QUERY_ATTRIBUTES ? 'query' : 'path'} (RFC 7512 §2.3)`,
        );
      }
      if (attrs.has(name)) throw bad(shown, `"${name}" is given twice`);
      attrs.set(name, decode(attr.slice(eq + 1), chars, shown, name));
    }
  };
  take(path, ';', PATH_ATTRIBUTES, PATH_CHAR);
  take(query, '&', QUERY_ATTRIBUTES, QUERY_CHAR);

  for (const name of attrs.keys()) {
    if (UNUSED.has(name) || name.startsWith('x-')) {
      throw bad(shown, `"${name}" is not supported here: select the token by token, serial, etc.`);
    }
  }
  if (attrs.has('pin-value')) {
    throw bad(
      shown,
      'pin-value puts the PIN where ps, logs and Secrets show it: use pin-source=file:/path or pin-source=env:NAME',
    );
  }
  if (attrs.has('module-name') && !attrs.has('module-path')) {
    throw bad(shown, 'module-name is not searched for: give module-path=/path/to/module.so');
  }
  const str = (name: string): string | undefined => {
    const v = attrs.get(name);
    return v === undefined ? undefined : text(v, shown, name);
  };
  const modulePath = str('module-path');
  if (!modulePath) throw bad(shown, 'module-path=/path/to/the/pkcs11/module.so is required');
  if (!isAbsolute(modulePath)) throw bad(shown, `module-path "${modulePath}" must be absolute`);
  const type = str('type');
  if (type !== undefined && type !== 'private') {
    throw bad(shown, `type=${type}: the CA key is a private key (type=private)`);
  }
  const object = str('object');
  const id = attrs.get('id');
  if (object === undefined && id === undefined) {
    throw bad(shown, 'name the key: object=<label> and/or id=<%xx bytes>');
  }
  const slotIdText = str('slot-id');
  if (slotIdText !== undefined && !/^\d+$/.test(slotIdText)) {
    throw bad(shown, `slot-id "${slotIdText}" is not a number`);
  }
  return {
    text: shown,
    modulePath,
    token: str('token'),
    manufacturer: str('manufacturer'),
    serial: str('serial'),
    model: str('model'),
    slotId: slotIdText === undefined ? undefined : Number(slotIdText),
    slotDescription: str('slot-description'),
    slotManufacturer: str('slot-manufacturer'),
    object,
    id,
    pinSource: pinSourceOf(str('pin-source'), shown),
  };
}

function pinSourceOf(value: string | undefined, shown: string): PinSource | undefined {
  if (value === undefined) return undefined;
  if (value.startsWith('env:')) {
    const name = value.slice('env:'.length);
    if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(name)) {
      throw bad(shown, `pin-source=env:${name}: not an environment variable name`);
    }
    return { kind: 'env', name };
  }
  if (value.startsWith('file:')) {
    let path: string;
    try {
      // file:/path (RFC 7512's example) and file:///path both.
      path = value.startsWith('file://') ? fileURLToPath(value) : value.slice('file:'.length);
    } catch (e) {
      throw bad(shown, `pin-source: ${(e as Error).message}`);
    }
    if (!isAbsolute(path)) throw bad(shown, `pin-source file "${path}" must be absolute`);
    return { kind: 'file', path };
  }
  throw bad(shown, `pin-source "${value}": use file:/path or env:NAME`);
}

/**
 * Reads the PIN a URI points at: the file's contents without one trailing newline (as `echo`
 * or a Kubernetes Secret writes it), or the environment variable. `env` is a parameter (time,
 * crypto and environment are). Errors name the URI and where the PIN was looked for, never it.
 */
export async function readPin(
  uri: Pkcs11Uri,
  env: Readonly<Record<string, string | undefined>>,
): Promise<string | undefined> {
  const source = uri.pinSource;
  if (!source) return undefined;
  let pin: string | undefined;
  if (source.kind === 'env') {
    pin = env[source.name];
    if (pin === undefined || pin === '') {
      throw bad(uri.text, `the PIN's environment variable ${source.name} is not set`);
    }
    return pin;
  }
  try {
    pin = await readFile(source.path, 'utf8');
  } catch (e) {
    throw bad(uri.text, `cannot read the PIN file ${source.path}: ${(e as Error).message}`);
  }
  pin = pin.replace(/\r?\n$/, '');
  if (pin === '') throw bad(uri.text, `the PIN file ${source.path} is empty`);
  return pin;
}
