import { createHash, createPublicKey, type KeyObject } from 'node:crypto';
import type { Clock } from '../../clock.js';
import { CastellanError, isCastellanError } from '../../errors.js';
import { silentLogger, type Logger } from '../../log.js';
import type { CaKeyType } from '../../pki/key-type.js';
import type { CaSignatureAlgorithm } from '../../pki/profiles.js';
import {
  checkAlgorithm,
  ecdsaRawToDer,
  signsForPublicKey,
  type CaSigner,
} from '../../pki/signer.js';
import {
  describe,
  LOST_STATE,
  Pkcs11Module,
  returnCode,
  type Attribute,
  type Handle,
  type Pkcs11,
  type Pkcs11Api,
} from './pkcs11-module.js';
import { parsePkcs11Uri, readPin, type Pkcs11Uri } from './pkcs11-uri.js';

export interface Pkcs11SignerOptions {
  /** RFC 7512 URI of the private key (pkcs11-uri.ts). */
  readonly uri: string | Pkcs11Uri;
  /** Where `pin-source=env:NAME` is looked up. */
  readonly env: Readonly<Record<string, string | undefined>>;
  readonly clock: Clock;
  /**
   * Sessions that sign at once. Default 4: C_Sign runs on libuv's thread pool, 4 threads unless
   * UV_THREADPOOL_SIZE says otherwise, so more sessions would only queue there. Capped by the
   * token's own maximum (CK_TOKEN_INFO.ulMaxSessionCount) when it has one.
   */
  readonly sessions?: number | undefined;
  /**
   * After a failed attempt to reopen the token, requests fail at once with `unavailable` for
   * this long before the next attempt, so a missing token is not re-initialized per request.
   */
  readonly retryAfterMs?: number | undefined;
  readonly logger?: Logger | undefined;
}

/** The private key object's protection, as the token reports it. */
export interface Pkcs11KeyAttributes {
  readonly label: string;
  readonly id: string;
  readonly sensitive: boolean;
  readonly extractable: boolean;
  readonly alwaysSensitive: boolean;
  readonly neverExtractable: boolean;
}

export interface Pkcs11Signer extends CaSigner {
  readonly uri: Pkcs11Uri;
  /** Reads CKA_SENSITIVE, CKA_EXTRACTABLE and friends of the key object. */
  keyAttributes(): Promise<Pkcs11KeyAttributes>;
  /** Lets the signatures in flight finish, then closes the sessions; later signs fail. */
  close(): Promise<void>;
}

export const DEFAULT_PKCS11_SESSIONS = 4;
export const DEFAULT_PKCS11_RETRY_MS = 1000;

/** DER prefixes of PKCS#1 v1.5's DigestInfo (RFC 8017 §9.2, note 1), before the hash. */
const DIGEST_INFO: Record<'sha256' | 'sha384', Buffer> = {
  sha256: Buffer.from('3031300d060960864801650304020105000420', 'hex'),
  sha384: Buffer.from('3041300d060960864801650304020205000430', 'hex'),
};
/** CKA_EC_PARAMS of the curves a CA key may use: the named curve's OID, DER. */
const EC_PARAMS: Record<string, CaKeyType> = {
  '06082a8648ce3d030107': 'ec-p256',
  '06052b81040022': 'ec-p384',
};
export const EC_PARAMS_OF: Record<'ec-p256' | 'ec-p384', Buffer> = {
  'ec-p256': Buffer.from('06082a8648ce3d030107', 'hex'),
  'ec-p384': Buffer.from('06052b81040022', 'hex'),
};

interface Connection {
  readonly epoch: number;
  readonly key: Handle;
  readonly sessions: Handle[];
  readonly idle: Handle[];
  readonly waiting: { resolve: (session: Handle) => void; reject: (e: Error) => void }[];
  /** Called when every session is back: a broken connection's sessions are closed then. */
  readonly drained: (() => void)[];
  broken: boolean;
}

/**
 * Opens a signer for a private key inside a PKCS#11 token. The key never leaves the token: each
 * signature is one C_SignInit + C_Sign (the digest is computed here, CKM_ECDSA and CKM_RSA_PKCS
 * over a DigestInfo: the mechanisms every HSM offers). C_Sign runs asynchronously on libuv's
 * thread pool, through a pool of sessions (one operation per session at a time, as PKCS#11
 * requires), so the event loop stays free and the token's parallelism is used.
 *
 * Faults: a return code that means the device, session or key went away (LOST_STATE) fails the
 * requests it hit with `unavailable` and marks the sessions broken; the next request reopens
 * them (log in, find the key), re-initializing the module when that is not enough, at most once
 * per `retryAfterMs`; until it succeeds, requests fail with `unavailable`. Nothing is thrown
 * outside a request's own promise.
 *
 * Opening checks everything it can and fails with a clear error naming the URI (never a PIN):
 * the module loads, a token matches, the PIN is accepted, exactly one private key matches, it
 * may sign, and it is a CA key type.
 */
export async function openPkcs11Signer(o: Pkcs11SignerOptions): Promise<Pkcs11Signer> {
  const uri = typeof o.uri === 'string' ? parsePkcs11Uri(o.uri) : o.uri;
  const pin = await readPin(uri, o.env);
  const module = await Pkcs11Module.acquire(uri.modulePath, uri.text);
  try {
    const signer = new TokenKeySigner(uri, pin, module, o);
    await signer.open();
    return signer;
  } catch (e) {
    module.release();
    throw e;
  }
}

class TokenKeySigner implements Pkcs11Signer {
  readonly uri: Pkcs11Uri;
  readonly description: string;
  keyType: CaKeyType = 'ec-p256';
  private readonly lib: Pkcs11;
  private readonly api: Pkcs11Api;
  private readonly sessionCount: number;
  private readonly retryAfterMs: number;
  private readonly logger: Logger;
  private connection: Connection | undefined;
  private recovering: Promise<Connection> | undefined;
  private lastFailure: { at: number; error: CastellanError } | undefined;
  private inFlight = 0;
  /** The public key a probe verified with (confirmed()): a reconnection must find the same. */
  private publicKey: KeyObject | undefined;
  private idleWaiters: (() => void)[] = [];
  private closed = false;

  constructor(
    uri: Pkcs11Uri,
    private readonly pin: string | undefined,
    private readonly module: Pkcs11Module,
    private readonly o: Pkcs11SignerOptions,
  ) {
    this.uri = uri;
    this.description = uri.text;
    this.lib = module.lib;
    this.api = module.api;
    this.sessionCount = Math.max(1, Math.floor(o.sessions ?? DEFAULT_PKCS11_SESSIONS));
    this.retryAfterMs = o.retryAfterMs ?? DEFAULT_PKCS11_RETRY_MS;
    this.logger = o.logger ?? silentLogger;
  }

  /** First connection: errors keep their kinds (a wrong PIN is not "try again later"). */
  async open(): Promise<void> {
    await this.module.ensureInitialized(this.description);
    this.connection = await this.module.run(() => this.connect());
  }

  async sign(data: Uint8Array, algorithm: CaSignatureAlgorithm): Promise<Uint8Array> {
    checkAlgorithm(this, algorithm);
    if (this.closed) throw this.unavailable('the signer was closed');
    this.inFlight++;
    try {
      return await this.signOn(await this.usable(), data, algorithm);
    } finally {
      this.inFlight--;
      if (this.inFlight === 0) for (const w of this.idleWaiters.splice(0)) w();
    }
  }

  confirmed(spki: Uint8Array): void {
    this.publicKey ??= createPublicKey({ key: Buffer.from(spki), format: 'der', type: 'spki' });
  }

  /** One signature on one of the connection's sessions. */
  private async signOn(
    connection: Connection,
    data: Uint8Array,
    algorithm: CaSignatureAlgorithm,
  ): Promise<Uint8Array> {
    const digest = createHash(algorithm.hash).update(data).digest();
    const ecdsa = algorithm.family === 'ecdsa';
    const mechanism = { mechanism: ecdsa ? this.api.CKM_ECDSA : this.api.CKM_RSA_PKCS };
    const input = ecdsa ? digest : Buffer.concat([DIGEST_INFO[algorithm.hash], digest]);
    const session = await this.acquire(connection);
    let signature: Buffer;
    try {
      signature = await this.module.run(async () => {
        if (connection.broken || connection.epoch !== this.module.epoch) {
          throw this.unavailable('the token was reopened while this request waited');
        }
        this.lib.C_SignInit(session, mechanism, connection.key);
        return this.lib.C_SignAsync(session, input, Buffer.alloc(1024));
      });
    } catch (e) {
      throw this.failed(connection, e);
    } finally {
      this.release(connection, session);
    }
    return ecdsa
      ? ecdsaRawToDer(new Uint8Array(signature), algorithm.namedCurve as 'P-256' | 'P-384')
      : new Uint8Array(signature);
  }

  /**
   * After a reconnection: the key found under the same URI must still be the one the
   * certificate was verified with (a token re-created with a new key under the same label
   * would otherwise sign certificates nobody can verify).
   */
  private async checkSameKey(c: Connection): Promise<void> {
    const publicKey = this.publicKey;
    if (!publicKey) return;
    const signs = (data: Uint8Array, algorithm: CaSignatureAlgorithm): Promise<Uint8Array> =>
      this.signOn(c, data, algorithm);
    if (!(await signsForPublicKey(signs, this.keyType, this.description, publicKey))) {
      await this.closeConnection(c);
      throw this.unavailable(
        'the key found under this URI after reopening is not the one the CA certificate holds',
      );
    }
  }

  async keyAttributes(): Promise<Pkcs11KeyAttributes> {
    const connection = await this.usable();
    const session = await this.acquire(connection);
    try {
      return await this.module.run(() => {
        const a = this.api;
        const values = this.lib.C_GetAttributeValue(session, connection.key, [
          { type: a.CKA_LABEL },
          { type: a.CKA_ID },
          { type: a.CKA_SENSITIVE },
          { type: a.CKA_EXTRACTABLE },
          { type: a.CKA_ALWAYS_SENSITIVE },
          { type: a.CKA_NEVER_EXTRACTABLE },
        ]);
        const v = (i: number): Buffer =>
          (values[i]?.value as Buffer | undefined) ?? Buffer.alloc(0);
        const flag = (i: number): boolean => v(i)[0] === 1;
        return {
          label: v(0).toString('utf8'),
          id: v(1).toString('hex'),
          sensitive: flag(2),
          extractable: flag(3),
          alwaysSensitive: flag(4),
          neverExtractable: flag(5),
        };
      });
    } catch (e) {
      throw this.failed(connection, e);
    } finally {
      this.release(connection, session);
    }
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    if (this.inFlight > 0) await new Promise<void>((r) => this.idleWaiters.push(r));
    const c = this.connection;
    this.connection = undefined;
    if (c) await this.closeConnection(c);
    this.module.release();
  }

  /** The current connection, or a new one (at most one attempt per retryAfterMs). */
  private async usable(): Promise<Connection> {
    const c = this.connection;
    if (c && !c.broken && c.epoch === this.module.epoch) return c;
    if (this.recovering) return this.recovering;
    const last = this.lastFailure;
    if (last && this.o.clock.now() - last.at < this.retryAfterMs) throw last.error;
    this.recovering = this.recover().finally(() => {
      this.recovering = undefined;
    });
    return this.recovering;
  }

  /**
   * Reopens: sessions, login, key. When that fails (SoftHSM2, after its token directory came
   * back, still finds no key until re-initialized; a network HSM's module after a lost
   * connection likewise), the module is re-initialized and it is tried once more.
   */
  private async recover(): Promise<Connection> {
    const old = this.connection;
    this.connection = undefined;
    if (old) await this.closeConnection(old);
    try {
      let c: Connection;
      try {
        await this.module.ensureInitialized(this.description);
        c = await this.module.run(() => this.connect());
      } catch (first) {
        this.logger.warn(
          { keyUri: this.description, error: describe(first) },
          'PKCS#11: reopening the session failed; re-initializing the module',
        );
        await this.module.reinitialize(this.description);
        c = await this.module.run(() => this.connect());
      }
      if (this.closed) {
        await this.closeConnection(c);
        throw this.unavailable('the signer was closed');
      }
      await this.checkSameKey(c);
      this.connection = c;
      this.lastFailure = undefined;
      this.logger.info({ keyUri: this.description }, 'PKCS#11: key reachable again');
      return c;
    } catch (e) {
      const error = isCastellanError(e, 'unavailable')
        ? e
        : this.unavailable(`the token cannot be reopened: ${errorText(e)}`, e);
      this.lastFailure = { at: this.o.clock.now(), error };
      throw error;
    }
  }

  /** Finds the token, opens the sessions, logs in, finds the key and reads its type. */
  private connect(): Connection {
    const lib = this.lib;
    const a = this.api;
    const epoch = this.module.epoch;
    const slot = findSlot(lib, a, this.uri);
    const info = lib.C_GetTokenInfo(slot);
    const loginRequired = (info.flags & a.CKF_LOGIN_REQUIRED) !== 0;
    if (loginRequired && this.pin === undefined) {
      throw new CastellanError(
        'invalid-argument',
        `token "${info.label.trim()}" requires a PIN: add pin-source=file:/path or pin-source=env:NAME to the URI's query`,
        { subject: this.description },
      );
    }
    const max = info.maxSessionCount;
    const count = max > 0 && max < 1e6 ? Math.min(this.sessionCount, max) : this.sessionCount;
    const sessions: Handle[] = [];
    try {
      for (let i = 0; i < count; i++) sessions.push(lib.C_OpenSession(slot, a.CKF_SERIAL_SESSION));
      const label = info.label.trim();
      if (loginRequired) login(lib, a, sessions[0] as Handle, this.uri, this.pin, label);
      const key = this.findKey(sessions[0] as Handle, label);
      this.keyType = this.readKeyType(sessions[0] as Handle, key);
      return { epoch, key, sessions, idle: [...sessions], waiting: [], drained: [], broken: false };
    } catch (e) {
      for (const s of sessions) closeQuietly(lib, s);
      throw e;
    }
  }

  /** Exactly one private key matches the URI. */
  private findKey(session: Handle, label: string): Handle {
    const found = findPrivateKeys(this.lib, this.api, session, this.uri, 2);
    if (found.length !== 1) {
      throw new CastellanError(
        // None: the token may be coming back (SoftHSM2 lists no objects until re-initialized).
        found.length === 0 ? 'unavailable' : 'invalid-argument',
        found.length === 0
          ? `no private key with ${keyName(this.uri)} in token "${label}"`
          : `several private keys match ${keyName(this.uri)} in token "${label}": add id= to choose one`,
        { subject: this.description },
      );
    }
    return found[0] as Handle;
  }

  private readKeyType(session: Handle, key: Handle): CaKeyType {
    const a = this.api;
    const [type, sign] = this.lib.C_GetAttributeValue(session, key, [
      { type: a.CKA_KEY_TYPE },
      { type: a.CKA_SIGN },
    ]);
    if ((sign?.value as Buffer | undefined)?.[0] !== 1) {
      throw new CastellanError('invalid-argument', 'the key may not sign (CKA_SIGN is false)', {
        subject: this.description,
      });
    }
    const keyType = (type?.value as Buffer).readUIntLE(
      0,
      Math.min(6, (type?.value as Buffer).length),
    );
    if (keyType === a.CKK_EC) {
      const [params] = this.lib.C_GetAttributeValue(session, key, [{ type: a.CKA_EC_PARAMS }]);
      const hex = ((params?.value as Buffer | undefined) ?? Buffer.alloc(0)).toString('hex');
      const t = EC_PARAMS[hex];
      if (!t) {
        throw new CastellanError('unsupported', `ECDSA curve ${hex}: use P-256 or P-384`, {
          subject: this.description,
        });
      }
      return t;
    }
    if (keyType === a.CKK_RSA) {
      const [modulus] = this.lib.C_GetAttributeValue(session, key, [{ type: a.CKA_MODULUS }]);
      const bits = ((modulus?.value as Buffer | undefined)?.length ?? 0) * 8;
      if (bits === 2048 || bits === 3072 || bits === 4096) return `rsa-${bits}`;
      throw new CastellanError(
        bits < 2048 ? 'weak-key' : 'unsupported',
        `RSA key of ${bits} bits: use 2048, 3072 or 4096`,
        { subject: this.description },
      );
    }
    throw new CastellanError('unsupported', `key type ${keyType}: use an EC or RSA key`, {
      subject: this.description,
    });
  }

  private acquire(c: Connection): Promise<Handle> {
    if (c.broken) return Promise.reject(this.unavailable('the token is being reopened'));
    const s = c.idle.pop();
    if (s) return Promise.resolve(s);
    return new Promise((resolve, reject) => c.waiting.push({ resolve, reject }));
  }

  /** Hands the session to the next waiter, or back to the pool. */
  private release(c: Connection, session: Handle): void {
    const next = c.broken ? undefined : c.waiting.shift();
    if (next) {
      next.resolve(session);
      return;
    }
    c.idle.push(session);
    if (c.idle.length === c.sessions.length) for (const d of c.drained.splice(0)) d();
  }

  /** Marks a connection broken: requests waiting for one of its sessions fail now. */
  private breakConnection(c: Connection, reason: CastellanError): void {
    c.broken = true;
    for (const w of c.waiting.splice(0)) w.reject(reason);
  }

  /** Closes a connection's sessions once none is in use (C_CloseSession under a running
   * C_Sign would pull the session from under a thread-pool thread). */
  private async closeConnection(c: Connection): Promise<void> {
    this.breakConnection(c, this.unavailable('the token is being reopened'));
    if (c.idle.length < c.sessions.length) await new Promise<void>((r) => c.drained.push(r));
    await this.module.run(() => {
      for (const s of c.sessions) closeQuietly(this.lib, s);
    });
  }

  /**
   * A failed PKCS#11 call: when its code means the session or the device is gone, the
   * connection is marked broken (the next request reopens it) and waiting requests are failed
   * with it; either way the caller gets `unavailable`, or `internal` for a code that says the
   * request itself was wrong.
   */
  private failed(c: Connection, e: unknown): CastellanError {
    if (isCastellanError(e)) return e;
    const rc = returnCode(e)?.name;
    if (rc === undefined || LOST_STATE.has(rc)) {
      const error = this.unavailable(`the HSM could not sign (${describe(e)})`, e);
      if (!c.broken) {
        this.breakConnection(c, error);
        this.logger.error(
          { keyUri: this.description, error: describe(e) },
          'PKCS#11: the token failed; requests fail with UNAVAILABLE until it is reopened',
        );
      }
      return error;
    }
    return new CastellanError('internal', `the HSM refused to sign: ${describe(e)}`, {
      subject: this.description,
      cause: e,
    });
  }

  private unavailable(message: string, cause?: unknown): CastellanError {
    return new CastellanError('unavailable', message, { subject: this.description, cause });
  }
}

function closeQuietly(lib: Pkcs11, session: Handle): void {
  try {
    lib.C_CloseSession(session);
  } catch {
    // Already gone with the token or the module's state: nothing left to close.
  }
}

function keyName(uri: Pkcs11Uri): string {
  return [
    uri.object !== undefined ? `object=${uri.object}` : '',
    uri.id !== undefined ? `id=${Buffer.from(uri.id).toString('hex')}` : '',
  ]
    .filter(Boolean)
    .join(' ');
}

function pinWhere(uri: Pkcs11Uri): string {
  const s = uri.pinSource;
  return s?.kind === 'env' ? `environment variable ${s.name}` : `file ${s?.path ?? '?'}`;
}

function errorText(e: unknown): string {
  if (e instanceof CastellanError) return e.message;
  return describe(e);
}

export function findSlot(lib: Pkcs11, api: Pkcs11Api, uri: Pkcs11Uri): Handle {
  const u = uri;
  const trim = (s: string): string => s.replace(/[\s\0]+$/, '');
  const seen: string[] = [];
  const matches: Handle[] = [];
  for (const slot of lib.C_GetSlotList(true)) {
    const token = lib.C_GetTokenInfo(slot);
    const slotInfo = lib.C_GetSlotInfo(slot);
    // SoftHSM2 always offers one more slot with an uninitialized token: not worth naming.
    if (token.flags & api.CKF_TOKEN_INITIALIZED) seen.push(`"${trim(token.label)}"`);
    const slotId = slot.readUIntLE(0, Math.min(slot.length, 6));
    if (
      (u.token === undefined || trim(token.label) === u.token) &&
      (u.manufacturer === undefined || trim(token.manufacturerID) === u.manufacturer) &&
      (u.serial === undefined || trim(token.serialNumber) === u.serial) &&
      (u.model === undefined || trim(token.model) === u.model) &&
      (u.slotId === undefined || slotId === u.slotId) &&
      (u.slotDescription === undefined || trim(slotInfo.slotDescription) === u.slotDescription) &&
      (u.slotManufacturer === undefined || trim(slotInfo.manufacturerID) === u.slotManufacturer)
    ) {
      matches.push(slot);
    }
  }
  if (matches.length === 0) {
    throw new CastellanError(
      'unavailable',
      `no token matches (tokens present: ${seen.sort().join(', ') || 'none'})`,
      { subject: uri.text },
    );
  }
  if (matches.length > 1) {
    throw new CastellanError(
      'invalid-argument',
      `${matches.length} tokens match: add token=, serial= or slot-id= to choose one`,
      { subject: uri.text },
    );
  }
  return matches[0] as Handle;
}

export function login(
  lib: Pkcs11,
  api: Pkcs11Api,
  session: Handle,
  uri: Pkcs11Uri,
  pin: string | undefined,
  label: string,
): void {
  try {
    lib.C_Login(session, api.CKU_USER, pin);
  } catch (e) {
    const rc = returnCode(e)?.name;
    // Login is per token for the whole process (PKCS#11 v2.40 §5.6): another key URI of this
    // token, or an earlier session, logged in already. The PIN was checked then.
    if (rc === 'CKR_USER_ALREADY_LOGGED_IN') return;
    if (rc === 'CKR_PIN_INCORRECT' || rc === 'CKR_PIN_LEN_RANGE' || rc === 'CKR_PIN_INVALID') {
      throw new CastellanError(
        'permission-denied',
        `token "${label}" refused the PIN (${rc}) read from ${pinWhere(uri)}`,
        { subject: uri.text, cause: e },
      );
    }
    if (rc === 'CKR_PIN_LOCKED' || rc === 'CKR_PIN_EXPIRED') {
      throw new CastellanError(
        'permission-denied',
        `token "${label}": ${rc}; the token's security officer must reset the user PIN`,
        { subject: uri.text, cause: e },
      );
    }
    throw e;
  }
}

/** The private keys the URI names (object=, id=): at most `max` of them. */
export function findPrivateKeys(
  lib: Pkcs11,
  a: Pkcs11Api,
  session: Handle,
  uri: Pkcs11Uri,
  max: number,
): Handle[] {
  const template: Attribute[] = [{ type: a.CKA_CLASS, value: a.CKO_PRIVATE_KEY }];
  if (uri.object !== undefined) template.push({ type: a.CKA_LABEL, value: uri.object });
  if (uri.id !== undefined) template.push({ type: a.CKA_ID, value: Buffer.from(uri.id) });
  lib.C_FindObjectsInit(session, template);
  try {
    return lib.C_FindObjects(session, max);
  } finally {
    lib.C_FindObjectsFinal(session);
  }
}
