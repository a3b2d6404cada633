import { CastellanError } from '../../errors.js';

/**
 * The part of pkcs11js' API Castellan uses, declared here rather than imported from its types:
 * it is an optional dependency (below), and the build must not need it installed.
 */
export type Handle = Buffer;
export interface Attribute {
  type: number;
  value?: Buffer | number | boolean | string;
}
export interface TokenInfo {
  label: string;
  manufacturerID: string;
  model: string;
  serialNumber: string;
  flags: number;
  maxSessionCount: number;
}
export interface SlotInfo {
  slotDescription: string;
  manufacturerID: string;
}
export interface Mechanism {
  mechanism: number;
}
export interface Pkcs11 {
  load(path: string): void;
  close(): void;
  C_Initialize(options?: { flags?: number }): void;
  C_Finalize(): void;
  C_GetSlotList(tokenPresent?: boolean): Handle[];
  C_GetSlotInfo(slot: Handle): SlotInfo;
  C_GetTokenInfo(slot: Handle): TokenInfo;
  C_OpenSession(slot: Handle, flags: number): Handle;
  C_CloseSession(session: Handle): void;
  C_Login(session: Handle, userType: number, pin?: string): void;
  C_FindObjectsInit(session: Handle, template: Attribute[]): void;
  C_FindObjects(session: Handle, maxObjectCount: number): Handle[];
  C_FindObjectsFinal(session: Handle): void;
  C_GetAttributeValue(session: Handle, object: Handle, template: Attribute[]): Attribute[];
  C_SignInit(session: Handle, mechanism: Mechanism, key: Handle): void;
  /** C_Sign as N-API async work: runs on libuv's thread pool. */
  C_SignAsync(session: Handle, data: Buffer, signature: Buffer): Promise<Buffer>;
  C_GenerateKeyPair(
    session: Handle,
    mechanism: Mechanism,
    publicTemplate: Attribute[],
    privateTemplate: Attribute[],
  ): { publicKey: Handle; privateKey: Handle };
}
/** pkcs11js' exports: the PKCS11 class and the CK* constants Castellan uses. */
export interface Pkcs11Api {
  PKCS11: new () => Pkcs11;
  readonly CKF_OS_LOCKING_OK: number;
  readonly CKF_LOGIN_REQUIRED: number;
  readonly CKF_TOKEN_INITIALIZED: number;
  readonly CKF_SERIAL_SESSION: number;
  readonly CKF_RW_SESSION: number;
  readonly CKU_USER: number;
  readonly CKO_PRIVATE_KEY: number;
  readonly CKO_PUBLIC_KEY: number;
  readonly CKK_EC: number;
  readonly CKK_RSA: number;
  readonly CKA_CLASS: number;
  readonly CKA_TOKEN: number;
  readonly CKA_PRIVATE: number;
  readonly CKA_LABEL: number;
  readonly CKA_ID: number;
  readonly CKA_KEY_TYPE: number;
  readonly CKA_SIGN: number;
  readonly CKA_VERIFY: number;
  readonly CKA_DECRYPT: number;
  readonly CKA_UNWRAP: number;
  readonly CKA_DERIVE: number;
  readonly CKA_ENCRYPT: number;
  readonly CKA_WRAP: number;
  readonly CKA_SENSITIVE: number;
  readonly CKA_EXTRACTABLE: number;
  readonly CKA_ALWAYS_SENSITIVE: number;
  readonly CKA_NEVER_EXTRACTABLE: number;
  readonly CKA_EC_PARAMS: number;
  readonly CKA_EC_POINT: number;
  readonly CKA_MODULUS: number;
  readonly CKA_MODULUS_BITS: number;
  readonly CKA_PUBLIC_EXPONENT: number;
  readonly CKM_ECDSA: number;
  readonly CKM_RSA_PKCS: number;
  readonly CKM_EC_KEY_PAIR_GEN: number;
  readonly CKM_RSA_PKCS_KEY_PAIR_GEN: number;
}

/** A variable, so that TypeScript does not look for the optional package's types. */
const PACKAGE = 'pkcs11js';

let api: Promise<Pkcs11Api> | undefined;

/**
 * Loads pkcs11js, the binding (an optional dependency: it compiles with node-gyp at install,
 * and a process that never opens a key URI never loads it). Chosen over graphene-pk11 and
 * node-webcrypto-p11, which are layers over it: Castellan needs the raw return codes to tell a
 * lost session from a bad request, its own session pool, and C_Sign's asynchronous form (N-API
 * async work on libuv's thread pool, so a signature never blocks the event loop). It builds
 * from source against the running Node's headers and downloads nothing at install.
 */
export function loadPkcs11Api(): Promise<Pkcs11Api> {
  api ??= (import(PACKAGE) as Promise<{ default?: Pkcs11Api }>).then(
    (m) => (m.default ?? m) as Pkcs11Api,
    (e: unknown) => {
      api = undefined;
      throw new CastellanError(
        'unsupported',
        `PKCS#11 keys need the optional package pkcs11js, which is missing or did not build (it compiles with node-gyp: g++, make and python3; then \`npm rebuild pkcs11js\`): ${(e as Error).message}`,
        { cause: e },
      );
    },
  );
  return api;
}

/** The CKR_ name and number of a pkcs11js error, when it is one. */
export function returnCode(e: unknown): { name: string; code: number } | undefined {
  if (typeof e !== 'object' || e === null) return undefined;
  const err = e as { name?: unknown; message?: unknown; code?: unknown };
  if (typeof err.message !== 'string') return undefined;
  if (err.name === 'Pkcs11Error') {
    return { name: err.message, code: typeof err.code === 'number' ? err.code : 0 };
  }
  const m = /\b(CKR_[A-Z_]+)(?::(\d+))?/.exec(err.message);
  return m ? { name: m[1] as string, code: Number(m[2] ?? 0) } : undefined;
}

/**
 * Return codes after which the session, the key handle or the whole module's state can no
 * longer be trusted: the device failed or went away, or the session or object vanished under
 * us (SoftHSM2 answers CKR_OBJECT_HANDLE_INVALID once its token directory is gone, and then
 * CKR_GENERAL_ERROR from C_GetSlotList). The pool reopens everything before signing again.
 */
export const LOST_STATE = new Set([
  'CKR_GENERAL_ERROR',
  'CKR_DEVICE_ERROR',
  'CKR_DEVICE_MEMORY',
  'CKR_DEVICE_REMOVED',
  'CKR_TOKEN_NOT_PRESENT',
  'CKR_TOKEN_NOT_RECOGNIZED',
  'CKR_SESSION_CLOSED',
  'CKR_SESSION_HANDLE_INVALID',
  'CKR_SESSION_COUNT',
  'CKR_OBJECT_HANDLE_INVALID',
  'CKR_KEY_HANDLE_INVALID',
  'CKR_USER_NOT_LOGGED_IN',
  'CKR_CRYPTOKI_NOT_INITIALIZED',
  'CKR_FUNCTION_FAILED',
  'CKR_OPERATION_ACTIVE',
  'CKR_SLOT_ID_INVALID',
]);

/**
 * One loaded PKCS#11 module, shared by every key URI of this process that names it: a module
 * has one global state per process (a second C_Initialize answers
 * CKR_CRYPTOKI_ALREADY_INITIALIZED), so re-initializing it is a module-wide event. Operations
 * are counted so that a re-initialization waits for the ones in flight (C_Finalize under a
 * running C_Sign would pull the session from under a thread-pool thread), and `epoch` tells
 * every pool that its sessions died with the old state.
 */
export class Pkcs11Module {
  readonly path: string;
  readonly api: Pkcs11Api;
  readonly lib: Pkcs11;
  /** Bumped by each re-initialization: sessions opened under an older epoch are gone. */
  epoch = 0;
  /** False after a re-initialization failed (C_Initialize refused): the next use retries it. */
  private initialized = false;
  private users = 0;
  private inFlight = 0;
  private drained: (() => void)[] = [];
  private reinitializing: Promise<void> | undefined;

  private constructor(path: string, api: Pkcs11Api, lib: Pkcs11) {
    this.path = path;
    this.api = api;
    this.lib = lib;
  }

  private static readonly loaded = new Map<string, Promise<Pkcs11Module>>();

  /** The module at `path`, loaded and initialized once per process; release() when done. */
  static async acquire(path: string, subject: string): Promise<Pkcs11Module> {
    let p = Pkcs11Module.loaded.get(path);
    if (!p) {
      p = Pkcs11Module.load(path, subject);
      Pkcs11Module.loaded.set(path, p);
      p.catch(() => Pkcs11Module.loaded.delete(path));
    }
    const m = await p;
    m.users++;
    return m;
  }

  private static async load(path: string, subject: string): Promise<Pkcs11Module> {
    const api = await loadPkcs11Api();
    const lib = new api.PKCS11();
    try {
      lib.load(path);
    } catch (e) {
      throw new CastellanError(
        'invalid-argument',
        `cannot load the PKCS#11 module ${path}: ${(e as Error).message}`,
        { subject, cause: e },
      );
    }
    const m = new Pkcs11Module(path, api, lib);
    m.initialize(subject);
    return m;
  }

  /**
   * C_Initialize with CKF_OS_LOCKING_OK: sessions are used from libuv's threads at once, and
   * with no arguments a module may assume a single-threaded caller (PKCS#11 v2.40 §5.4).
   */
  private initialize(subject: string): void {
    try {
      this.lib.C_Initialize({ flags: this.api.CKF_OS_LOCKING_OK });
      this.initialized = true;
    } catch (e) {
      if (returnCode(e)?.name === 'CKR_CRYPTOKI_ALREADY_INITIALIZED') {
        this.initialized = true;
        return;
      }
      throw new CastellanError(
        'unavailable',
        `the PKCS#11 module ${this.path} did not initialize: ${describe(e)}`,
        { subject, cause: e },
      );
    }
  }

  /** Runs one PKCS#11 operation, counted so that re-initialization waits for it. */
  async run<T>(op: () => Promise<T> | T): Promise<T> {
    while (this.reinitializing) await this.reinitializing.catch(() => undefined);
    this.inFlight++;
    try {
      return await op();
    } finally {
      this.inFlight--;
      if (this.inFlight === 0) for (const d of this.drained.splice(0)) d();
    }
  }

  /**
   * C_Finalize then C_Initialize, once the operations in flight have ended: the way back after
   * a token was removed and returned (SoftHSM2 keeps serving its stale view until then; real
   * modules of network HSMs likewise after a lost connection). Concurrent callers share one.
   */
  reinitialize(subject: string): Promise<void> {
    this.reinitializing ??= (async () => {
      if (this.inFlight > 0) await new Promise<void>((r) => this.drained.push(r));
      try {
        this.lib.C_Finalize();
      } catch {
        // Already finalized or broken: initializing again is what matters.
      }
      this.initialized = false;
      this.epoch++;
      this.initialize(subject);
    })().finally(() => {
      this.reinitializing = undefined;
    });
    return this.reinitializing;
  }

  /** Initializes the module again if its last re-initialization failed. */
  async ensureInitialized(subject: string): Promise<void> {
    while (this.reinitializing) await this.reinitializing.catch(() => undefined);
    if (!this.initialized) await this.reinitialize(subject);
  }

  /** Drops one user; the last one finalizes and unloads the module. */
  release(): void {
    this.users--;
    if (this.users > 0) return;
    Pkcs11Module.loaded.delete(this.path);
    try {
      this.lib.C_Finalize();
    } catch {
      // Nothing to do: the process no longer uses this module.
    }
    try {
      this.lib.close();
    } catch {
      // As above.
    }
  }
}

/** A PKCS#11 failure as one phrase: the return code's name, else the message. */
export function describe(e: unknown): string {
  return returnCode(e)?.name ?? (e instanceof Error ? e.message : String(e));
}
