import type { Clock, Timer } from '../../clock.js';
import type { CaSigner } from '../../pki/signer.js';

/** A signer that holds resources (sessions, a loaded module) until closed. */
export interface ClosableSigner extends CaSigner {
  close(): Promise<void>;
}

/** Opens the signer of a key URI (openPkcs11Signer in the composition root; a fake in tests). */
export type SignerOpener = (uri: string) => Promise<ClosableSigner>;

/**
 * How long a replaced key's signer stays open after the swap: requests that took the previous
 * snapshot just before it still sign with it (a CSR check takes milliseconds; a minute is far
 * more than any request lives).
 */
export const REPLACED_SIGNER_GRACE_MS = 60_000;

/**
 * The signers of the key URIs a CA source has named, one per URI, opened on first use and
 * shared by every load that names it: a new certificate for the same key reuses the open
 * sessions; a new key URI opens a second signer, and the one it replaced is closed a grace
 * period after the swap (retain). A URI whose opening failed is tried again on the next load.
 */
export class KeyUriSigners {
  private readonly open = new Map<string, Promise<ClosableSigner>>();
  private readonly closing = new Map<string, Timer>();
  private closed = false;

  constructor(
    private readonly o: {
      readonly opener: SignerOpener;
      readonly clock: Clock;
      readonly graceMs?: number | undefined;
    },
  ) {}

  /** The signer of `uri`, opened once. */
  get(uri: string): Promise<ClosableSigner> {
    this.closing.get(uri)?.cancel();
    this.closing.delete(uri);
    let p = this.open.get(uri);
    if (!p) {
      p = this.o.opener(uri);
      this.open.set(uri, p);
      p.catch(() => {
        if (this.open.get(uri) === p) this.open.delete(uri);
      });
    }
    return p;
  }

  /**
   * After a swap to `inUse` (a signer of this cache, or none when the CA's key is a file): every
   * other signer is closed once the grace period has passed, unless a later load asks for it.
   */
  retain(inUse: CaSigner | undefined): void {
    for (const [uri, p] of this.open) {
      void p.then(
        (signer) => {
          if (signer === inUse || this.closing.has(uri) || this.open.get(uri) !== p) return;
          this.closing.set(
            uri,
            this.o.clock.after(this.o.graceMs ?? REPLACED_SIGNER_GRACE_MS, () => {
              this.closing.delete(uri);
              if (this.open.get(uri) !== p) return;
              this.open.delete(uri);
              void signer.close();
            }),
          );
        },
        () => undefined,
      );
    }
  }

  /** Closes every signer (at shutdown, after the servers stopped). */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    for (const t of this.closing.values()) t.cancel();
    this.closing.clear();
    const all = [...this.open.values()];
    this.open.clear();
    await Promise.all(all.map((p) => p.then((s) => s.close()).catch(() => undefined)));
  }
}
