import type { CoreV1Api, KubeConfig, V1Secret } from '@kubernetes/client-node';
import type { Clock, Timer } from '../clock.js';
import { CastellanError, asCastellanError } from '../errors.js';
import { silentLogger, type Logger } from '../log.js';
import type { KeyCertBundle } from '../ca/key-cert-bundle.js';
import type { SwappableCaState } from '../ca/swappable-ca-state.js';
import { certificatePem, parseCertificates } from '../ca/build-key-cert-bundle.js';
import {
  CA_CRL_FILE,
  bundleFromCacerts,
  bundleFromCacertsWithKeys,
  detectLayout,
} from '../ca/cacerts-layout.js';
import type { KeyUriSigners } from '../ca/signers/key-uri-signers.js';
import { crlRenewalCommand, followCrlExpiry } from '../ca/crl-expiry.js';
import type { CaCrl } from '../pki/crl.js';
import type { CaKeyType } from '../pki/key-type.js';
import type { EventRecorder } from './events.js';
import { decodeSecretData, describeApiError, isApiStatus } from './client.js';
import { startInformer, type Informer } from './informer.js';
import {
  SELF_SIGNED_SECRET,
  bundleFromSelfSignedSecret,
  ensureSelfSignedSecret,
} from './self-signed-secret.js';
import {
  PREVIOUS_ROOTS_SECRET,
  rootsFromSecret,
  unique,
  updatePreviousRoots,
} from './previous-roots.js';

export const CACERTS_SECRET = 'cacerts';
/**
 * On the `cacerts` Secret: `"false"` drops roots of earlier CAs from the published trust
 * bundle. Until then, after a root change, old and new roots are both trusted, so workloads
 * holding certificates from the old root keep being accepted while they renew. The roots served
 * so far are recorded in Secret `castellan-previous-roots` (previous-roots.ts), so a replica
 * started after the change publishes the same union.
 */
export const KEEP_PREVIOUS_ROOTS_ANNOTATION = 'castellan.io/keep-previous-roots';

/**
 * How many retry periods (1 s by default) a replica waiting for `cacerts` gives the replicas
 * still serving it to write castellan-previous-roots back after its deletion, before it takes
 * the deletion as the operator's move to a self-signed root. They write it back as soon as their
 * watch delivers the deletion: well within 5 s unless the API server is failing.
 */
const RECORD_WRITE_BACK_WAIT = 5;

export interface KubeCaSourceOptions {
  kubeConfig: KubeConfig;
  core: CoreV1Api;
  namespace: string;
  trustDomain: string;
  state: SwappableCaState;
  clock: Clock;
  events?: EventRecorder | undefined;
  /** Counts refused CA updates (castellan_ca_load_errors_total{source}); owned by the server. */
  onLoadError?: ((source: string, error: CastellanError) => void) | undefined;
  selfSignedKeyType?: CaKeyType | undefined;
  selfSignedTtlMs?: number | undefined;
  /** false: `ca-crl.pem` is not read (istiod's PILOT_ENABLE_CA_CRL=false). Default true. */
  readCrl?: boolean | undefined;
  logger?: Logger | undefined;
  retryMs?: number | undefined;
  /**
   * Keys in a PKCS#11 token (docs/hsm.md): `cacerts` may then name its key by URI (its
   * `ca-key.uri`, or `keyUri`, serve's --ca-key-uri) instead of holding ca-key.pem; the set is
   * loaded asynchronously, its signer probed, and start() waits for it.
   */
  keys?: { keyUri?: string | undefined; signers: KeyUriSigners } | undefined;
}

/** A bundle's source id (`cacerts-secret:ns/name`) in words, for Events operators read. */
function describeSource(source: string): string {
  const [kind, where] = source.split(/:(.*)/s);
  if (kind === 'cacerts-secret') return `the last good CA of secret ${where}`;
  if (kind === 'self-signed-secret') return `the self-signed root of secret ${where}`;
  return source;
}

function sameBundle(a: KeyCertBundle | undefined, b: KeyCertBundle): boolean {
  return (
    a !== undefined &&
    a.source === b.source &&
    a.rootBundlePem === b.rootBundlePem &&
    a.responseChainPem.join('') === b.responseChainPem.join('') &&
    certificatePem(a.signingCert) === certificatePem(b.signingCert) &&
    // A new ca-crl.pem alone is a change to install (and publish).
    a.crl?.pem === b.crl?.pem
  );
}

/** What the `cacerts` Secret holds now: no CA files (or no Secret), a set that verified, or not. */
type CacertsNow =
  | { readonly state: 'absent' }
  | { readonly state: 'good' }
  | { readonly state: 'refused'; readonly error: CastellanError };

/** Which of the two Secrets the CA being served came from. */
type Serving = 'nothing' | 'self-signed' | 'cacerts';

/**
 * The CA in Kubernetes mode, fed from Secrets in our namespace and followed by one watch:
 *  - `cacerts` (Istio's four files or tls.crt/tls.key/ca.crt) when present;
 *  - only when `cacerts` holds no CA files at all, the self-signed root in `istio-ca-secret`,
 *    created by the first replica.
 * Every change is verified completely before the swap; a broken one is refused (the last
 * good CA keeps serving, an error is logged, counted and recorded as an Event on the Secret).
 * A `cacerts` that does not verify before any CA was served leaves this replica serving
 * nothing (never a self-signed root nobody planned) until a good one appears. Once a root is
 * served, deleting either Secret does not change it: a deleted `istio-ca-secret` is written
 * back, so a replica started later loads the same root instead of making a new one.
 */
export class KubeCaSource {
  private informer: Informer<V1Secret> | undefined;
  private readonly logger: Logger;
  private plugged: KeyCertBundle | undefined;
  /** The last `cacerts` that verified, before earlier roots are added to it. */
  private cacerts: { files: Map<string, string>; fresh: KeyCertBundle; keep: boolean } | undefined;
  private cacertsNow: CacertsNow = { state: 'absent' };
  /** The `cacerts` Secret as last seen (its uid, for Events). */
  private cacertsSecret: V1Secret | undefined;
  private selfSigned: KeyCertBundle | undefined;
  /** `istio-ca-secret` as last seen: written back when deleted while its root is served. */
  private selfSignedSecret: V1Secret | undefined;
  /** Why the self-signed root could not be loaded, while nothing is served. */
  private selfSignedProblem: string | undefined;
  /** Set while `cacerts` is gone and the mesh trusts a plugged-in CA (cacertsLost). */
  private lostCacerts: string | undefined;
  private selfSignedLoading: Promise<void> | undefined;
  private serving: Serving = 'nothing';
  /** Roots this replica served before the current `cacerts`, since the last drop. */
  private servedBefore: string[] = [];
  /** Roots recorded in the API server (castellan-previous-roots), as last seen by the watch. */
  private recordedRoots: string[] = [];
  /** Set after the first list: before it, what is installed is not yet "served". */
  private synced = false;
  private stopped = false;
  private recording: Promise<void> | undefined;
  private recordAgain = false;
  private readonly timers = new Set<Timer>();
  private unfollowCrl: (() => void) | undefined;
  private lastRefused = '';
  /** Each `cacerts` event's number: a slower load of an older one is dropped. */
  private cacertsSeq = 0;
  /** The load of the latest `cacerts` while it runs (keys in a token load asynchronously). */
  private pendingCacerts: Promise<void> | undefined;
  /** Set while the latest `cacerts` could not be loaded because its token did not answer. */
  private cacertsUnavailable: CastellanError | undefined;
  private cacertsRetry: Timer | undefined;

  constructor(private readonly o: KubeCaSourceOptions) {
    this.logger = o.logger ?? silentLogger;
  }

  /**
   * Starts the watch and resolves once the Secrets are read and either a CA is loaded
   * (`cacerts`, or the self-signed root, created when absent) or `cacerts` is there but does
   * not verify: then nothing is served until it does (`whyNoCa` says why).
   */
  async start(): Promise<void> {
    const { core, namespace } = this.o;
    this.informer = startInformer<V1Secret>({
      kubeConfig: this.o.kubeConfig,
      path: `/api/v1/namespaces/${namespace}/secrets`,
      list: () => core.listNamespacedSecret({ namespace }),
      clock: this.o.clock,
      logger: this.logger,
      retryMs: this.o.retryMs,
      handlers: { upsert: (s) => this.onSecret(s), deleted: (s) => this.onDeleted(s) },
    });
    await this.informer.synced;
    // A `cacerts` whose key is in a token is still being probed: it decides, not a fallback.
    while (this.pendingCacerts) await this.pendingCacerts;
    // Stopped meanwhile (a SIGTERM while the API server was slow): nothing more is started.
    if (this.stopped) return;
    // Its token did not answer: not ready, rather than a self-signed root nobody planned.
    if (!this.plugged && this.cacertsUnavailable) throw this.cacertsUnavailable;
    this.synced = true;
    this.unfollowCrl = followCrlExpiry(this.o.state, this.o.clock, (crl) => this.crlExpired(crl));
    this.recordRoots();
    if (this.o.state.current()) return;
    if (this.cacertsLost()) return;
    if (this.cacertsNow.state === 'refused') {
      this.logger.error(
        { secret: `${namespace}/${CACERTS_SECRET}`, error: this.cacertsNow.error.message },
        'cacerts does not verify: serving nothing until it does (no self-signed root is made while cacerts exists)',
      );
      return;
    }
    await this.useSelfSigned();
    if (!this.o.state.current() && this.cacertsNow.state === 'absent') {
      throw new CastellanError('incomplete-ca', 'no usable CA', {
        subject: `secret ${namespace}/${SELF_SIGNED_SECRET}`,
      });
    }
  }

  async stop(): Promise<void> {
    this.stopped = true;
    this.cacertsRetry?.cancel();
    for (const t of this.timers) t.cancel();
    this.unfollowCrl?.();
    await this.informer?.stop();
    await this.recording;
    await this.selfSignedLoading;
  }

  /** The self-signed CA as last loaded (what root rotation re-issues). */
  get selfSignedBundle(): KeyCertBundle | undefined {
    return this.selfSigned;
  }

  /** Why no CA is served (for /ready), or undefined once one is. */
  whyNoCa(): string | undefined {
    if (this.o.state.current()) return undefined;
    if (this.cacertsNow.state === 'refused') {
      return `cacerts does not verify: ${this.cacertsNow.error.message}; nothing is served until it does (a fixed cacerts is picked up without a restart)`;
    }
    if (this.lostCacerts) return this.lostCacerts;
    if (this.selfSignedProblem) return this.selfSignedProblem;
    return this.synced ? 'loading the self-signed root' : 'reading the CA Secrets';
  }

  private after(ms: number, fn: () => void): void {
    const timer = this.o.clock.after(ms, () => {
      this.timers.delete(timer);
      fn();
    });
    this.timers.add(timer);
  }

  private onSecret(secret: V1Secret): void {
    const name = secret.metadata?.name;
    if (name === CACERTS_SECRET) this.onCacerts(secret);
    else if (name === SELF_SIGNED_SECRET) this.onSelfSigned(secret);
    else if (name === PREVIOUS_ROOTS_SECRET) {
      this.recordedRoots = rootsFromSecret(secret);
      this.logger.debug(
        {
          secret: `${this.o.namespace}/${PREVIOUS_ROOTS_SECRET}`,
          roots: this.recordedRoots.length,
        },
        'previous roots read',
      );
      if (this.cacerts) this.installPlugged();
      else if (this.recordedRoots.length === 0) this.recordGone();
    }
  }

  /**
   * The record of plugged-in roots is gone (deleted, or emptied by hand) while this replica has
   * no `cacerts`. A replica still serving the plugged-in CA writes it back at once (onDeleted);
   * only if none has after RECORD_WRITE_BACK_WAIT retries does a waiting replica take the
   * self-signed root. Falling back at the deletion itself moved a replica to a root the mesh
   * does not trust while another still served the plugged-in CA (found in review).
   */
  private recordGone(): void {
    this.recordedRoots = [];
    if (this.o.state.current() || this.cacertsNow.state !== 'absent') return;
    this.after((this.o.retryMs ?? 1000) * RECORD_WRITE_BACK_WAIT, () => {
      if (this.recordedRoots.length === 0) this.fallBackToSelfSigned();
    });
  }

  private onDeleted(secret: V1Secret): void {
    const { namespace } = this.o;
    const name = secret.metadata?.name;
    if (name === PREVIOUS_ROOTS_SECRET) {
      // Written back from what this replica knows (the roots it last saw recorded) while it
      // serves a plugged-in CA. Otherwise the record is gone: a replica that waited for cacerts
      // may now take the self-signed root.
      if (this.cacerts) this.recordRoots();
      else this.recordGone();
    }
    if (name === CACERTS_SECRET) {
      this.cacertsNow = { state: 'absent' };
      if (this.plugged) {
        this.logger.warn(
          { secret: `${namespace}/${CACERTS_SECRET}` },
          'cacerts was deleted; still serving the last plugged-in CA until a new one is given',
        );
      } else {
        this.fallBackToSelfSigned();
      }
    }
    if (name === SELF_SIGNED_SECRET && this.serving === 'self-signed') this.restoreSelfSigned();
  }

  private onCacerts(secret: V1Secret): void {
    const { namespace, clock } = this.o;
    // Whatever it holds, a later loss of it is a new one, said again (cacertsLost).
    this.lostCacerts = undefined;
    const files = decodeSecretData(secret);
    if (!detectLayout(files)) {
      // Nothing plugged in: not a CA secret (yet), as a cacerts without CA files is to istiod.
      this.cacertsNow = { state: 'absent' };
      if (!this.plugged) this.fallBackToSelfSigned();
      return;
    }
    this.cacertsSecret = secret;
    const where = `secret ${namespace}/${CACERTS_SECRET}`;
    const keepPrevious = secret.metadata?.annotations?.[KEEP_PREVIOUS_ROOTS_ANNOTATION] !== 'false';
    const source = `cacerts-secret:${namespace}/${CACERTS_SECRET}`;
    const seq = ++this.cacertsSeq;
    if (this.o.keys) {
      const load = bundleFromCacertsWithKeys(
        files,
        {
          source,
          where,
          keyUri: this.o.keys.keyUri,
          signers: this.o.keys.signers,
          readCrl: this.o.readCrl,
        },
        clock,
      ).then(
        (fresh) => {
          if (seq !== this.cacertsSeq || this.stopped) return;
          this.cacertsUnavailable = undefined;
          if (fresh) this.acceptCacerts(secret, where, files, fresh, keepPrevious);
          this.o.keys?.signers.retain(this.o.state.current()?.bundle.signer);
        },
        (e: unknown) => {
          if (seq !== this.cacertsSeq || this.stopped) return;
          const error = asCastellanError(e);
          this.cacertsNow = { state: 'refused', error };
          this.refuse(secret, where, error);
          // The token did not answer: the same Secret is tried again, not only when it changes.
          this.cacertsUnavailable = error.kind === 'unavailable' ? error : undefined;
          if (error.kind === 'unavailable') {
            this.cacertsRetry?.cancel();
            this.cacertsRetry = this.o.clock.after(this.o.retryMs ?? 1000, () => {
              if (seq === this.cacertsSeq && !this.stopped) this.onCacerts(secret);
            });
          }
        },
      );
      const pending = load.finally(() => {
        if (this.pendingCacerts === pending) this.pendingCacerts = undefined;
      });
      this.pendingCacerts = pending;
      return;
    }
    try {
      const fresh = bundleFromCacerts(files, { source, where, readCrl: this.o.readCrl }, clock);
      if (fresh) this.acceptCacerts(secret, where, files, fresh, keepPrevious);
    } catch (e) {
      const error = asCastellanError(e);
      this.cacertsNow = { state: 'refused', error };
      this.refuse(secret, where, error);
    }
  }

  /** A `cacerts` that verified on its own: published with the roots served before it. */
  private acceptCacerts(
    secret: V1Secret,
    where: string,
    files: Map<string, string>,
    fresh: KeyCertBundle,
    keepPrevious: boolean,
  ): void {
    this.cacertsNow = { state: 'good' };
    // The new set verified on its own; now publish old roots beside the new ones.
    const freshRoots = fresh.roots.map(certificatePem);
    const served = this.o.state.current()?.bundle.roots.map(certificatePem) ?? [];
    if (!keepPrevious) {
      // Said every time roots go: the annotation acts on every change while it stays on the
      // Secret, and a GitOps tool keeps it there (docs/kubernetes-mode.md).
      const dropped = unique([...this.recordedRoots, ...this.servedBefore, ...served]).filter(
        (p) => !freshRoots.includes(p),
      );
      if (dropped.length > 0) {
        this.logger.warn(
          {
            secret: where,
            dropped: dropped.flatMap((p) => parseCertificates(p, where).map((c) => c.subject)),
          },
          `earlier roots dropped from the trust bundle: cacerts carries ${KEEP_PREVIOUS_ROOTS_ANNOTATION}=false (remove it once they are gone, or the next root change drops the old root at once too)`,
        );
      }
    }
    this.servedBefore = !keepPrevious
      ? []
      : unique([...this.servedBefore, ...(this.synced ? served : [])]).filter(
          (p) => !freshRoots.includes(p),
        );
    this.cacerts = { files, fresh, keep: keepPrevious };
    this.installPlugged();
    this.logger.debug(
      { secret: where, resourceVersion: secret.metadata?.resourceVersion, keepPrevious },
      'cacerts read',
    );
    this.recordRoots();
  }

  private onSelfSigned(secret: V1Secret): void {
    try {
      const b = bundleFromSelfSignedSecret(secret, this.o.clock);
      const previous = this.selfSigned;
      // A re-issued root (rotation) has the same key and subject: keep both certificates.
      const extra =
        previous && previous.rootBundlePem !== b.rootBundlePem ? previous.rootBundlePem : '';
      this.selfSigned = extra ? bundleFromSelfSignedSecret(secret, this.o.clock, extra) : b;
      this.selfSignedSecret = secret;
      this.selfSignedProblem = undefined;
      // Before the first list nothing is decided: a cacerts listed later wins.
      const wanted =
        this.serving === 'self-signed' ||
        (this.serving === 'nothing' && this.cacertsNow.state === 'absent');
      if (this.synced && !this.plugged && wanted) this.install(this.selfSigned, 'self-signed');
    } catch (e) {
      const where = `secret ${this.o.namespace}/${SELF_SIGNED_SECRET}`;
      const error = asCastellanError(e);
      this.selfSignedProblem = `${SELF_SIGNED_SECRET} does not verify: ${error.message}`;
      this.refuse(secret, where, error);
    }
  }

  /** The self-signed root, read or created: what a start without `cacerts` serves. */
  private async useSelfSigned(): Promise<void> {
    if (!this.selfSigned) {
      const secret = await ensureSelfSignedSecret({
        core: this.o.core,
        namespace: this.o.namespace,
        trustDomain: this.o.trustDomain,
        clock: this.o.clock,
        keyType: this.o.selfSignedKeyType,
        ttlMs: this.o.selfSignedTtlMs,
        logger: this.logger,
      });
      this.onSelfSigned(secret);
    }
    if (this.selfSigned && !this.plugged && this.cacertsNow.state === 'absent') {
      this.install(this.selfSigned, 'self-signed');
    }
  }

  /**
   * `cacerts` went away (or lost its CA files) before any CA was served: as a start without
   * `cacerts`, the self-signed root. Never once a root is served.
   */
  private fallBackToSelfSigned(): void {
    if (!this.synced || this.stopped || this.selfSignedLoading) return;
    if (this.o.state.current() || this.cacertsNow.state !== 'absent') return;
    if (this.cacertsLost()) return;
    this.logger.warn(
      { secret: `${this.o.namespace}/${CACERTS_SECRET}` },
      'cacerts is gone and no CA was served yet: using the self-signed root, as a start without cacerts does',
    );
    this.selfSignedLoading = this.useSelfSigned()
      .catch((e: unknown) => {
        this.selfSignedProblem = `cannot load or create ${SELF_SIGNED_SECRET}: ${describeApiError(e)}`;
        this.logger.warn({ error: describeApiError(e) }, 'self-signed root not loaded; retrying');
        this.after(this.o.retryMs ?? 1000, () => this.fallBackToSelfSigned());
      })
      .finally(() => {
        this.selfSignedLoading = undefined;
      });
  }

  /**
   * No `cacerts`, nothing served yet, and castellan-previous-roots says the mesh has trusted a
   * plugged-in CA (only a served `cacerts` is ever recorded there): its Secret was deleted or
   * emptied. The replicas still running serve it from memory; this one must not make or load a
   * self-signed root, which the mesh does not trust — once it leads, it would publish that root
   * alone and every workload's peers would refuse the certificates of the plugged-in CA. So it
   * serves nothing and says why, until `cacerts` is back or the record is deleted (the
   * deliberate way back to a self-signed root). True when that is the case.
   *
   * istiod differs: a restarted istiod without its cacerts files makes or loads the self-signed
   * root (istio-ca-secret), and the mesh moves to it (pilot/pkg/bootstrap/istio_ca.go,
   * createIstioCA: `useSelfSignedCA := !signingCABundleComplete || …`).
   */
  private cacertsLost(): boolean {
    if (this.cacertsNow.state !== 'absent' || this.recordedRoots.length === 0) {
      this.lostCacerts = undefined;
      return false;
    }
    const { namespace } = this.o;
    // The record holds only certificates that parsed (previous-roots.ts).
    const where = `secret ${namespace}/${PREVIOUS_ROOTS_SECRET}`;
    const subjects = this.recordedRoots.flatMap((pem) =>
      parseCertificates(pem, where).map((c) => c.subject),
    );
    const reason =
      `secret ${namespace}/${CACERTS_SECRET} is gone, and the mesh trusts the plugged-in roots recorded in ` +
      `secret ${namespace}/${PREVIOUS_ROOTS_SECRET} (${subjects.join('; ')}): serving nothing rather than a ` +
      `self-signed root the mesh does not trust. Put ${CACERTS_SECRET} back (it is picked up without a restart), ` +
      `or delete ${PREVIOUS_ROOTS_SECRET} with no replica serving the plugged-in CA to move the mesh to a self-signed root`;
    if (this.lostCacerts !== reason) {
      this.lostCacerts = reason;
      this.logger.error(
        { secret: `${namespace}/${CACERTS_SECRET}`, recordedRoots: subjects },
        'cacerts is gone and the mesh trusts a plugged-in CA: serving nothing until cacerts is back',
      );
      void this.o.events?.record(
        { kind: 'Secret', name: PREVIOUS_ROOTS_SECRET, namespace },
        { type: 'Warning', reason: 'CACertsMissing', message: reason },
      );
    }
    return true;
  }

  /**
   * `istio-ca-secret` was deleted while its root is served: written back as it was, so that a
   * replica started now loads this root rather than making a new one (istiod keeps serving
   * from memory and a restarted istiod makes a new root). Another replica may write it first
   * (409): the same material, or a rotation of it.
   */
  private restoreSelfSigned(): void {
    const secret = this.selfSignedSecret;
    if (!secret || this.stopped || this.serving !== 'self-signed') return;
    const { namespace } = this.o;
    this.logger.warn(
      { secret: `${namespace}/${SELF_SIGNED_SECRET}` },
      'istio-ca-secret was deleted while its root is served: writing it back',
    );
    void this.o.core
      .createNamespacedSecret({
        namespace,
        body: {
          metadata: {
            name: SELF_SIGNED_SECRET,
            namespace,
            ...(secret.metadata?.labels ? { labels: secret.metadata.labels } : {}),
            ...(secret.metadata?.annotations ? { annotations: secret.metadata.annotations } : {}),
          },
          ...(secret.type ? { type: secret.type } : {}),
          data: secret.data ?? {},
        },
      })
      .then(
        () => this.logger.info({ secret: `${namespace}/${SELF_SIGNED_SECRET}` }, 'restored'),
        (e: unknown) => {
          if (isApiStatus(e, 409)) return;
          this.logger.warn(
            { secret: `${namespace}/${SELF_SIGNED_SECRET}`, error: describeApiError(e) },
            'could not write istio-ca-secret back; retrying',
          );
          this.after(this.o.retryMs ?? 1000, () => this.restoreSelfSigned());
        },
      );
  }

  /**
   * Installs the last good `cacerts` with earlier roots (recorded in the API server, then this
   * replica's own) appended to its trust bundle, unless the operator dropped them.
   */
  private installPlugged(): void {
    if (!this.cacerts) return;
    const { files, fresh, keep } = this.cacerts;
    const freshRoots = fresh.roots.map(certificatePem);
    const old = keep
      ? unique([...this.recordedRoots, ...this.servedBefore]).filter((p) => !freshRoots.includes(p))
      : [];
    let bundle = fresh;
    if (old.length > 0) {
      const where = `secret ${this.o.namespace}/${CACERTS_SECRET}`;
      const rootKey = detectLayout(files) === 'tls' ? 'ca.crt' : 'root-cert.pem';
      const merged = new Map(files);
      merged.set(rootKey, (files.get(rootKey) ?? '') + '\n' + old.join(''));
      try {
        // A token key was probed with this very certificate when `fresh` was loaded.
        const probed = { signer: fresh.signer, cert: fresh.signingCert };
        bundle =
          bundleFromCacerts(
            merged,
            { source: fresh.source, where, readCrl: this.o.readCrl, probed },
            this.o.clock,
          ) ?? fresh;
      } catch (e) {
        // Only a hand-edited castellan-previous-roots gets here (e.g. a certificate that is not
        // a CA): serve the verified set rather than nothing.
        this.logger.error(
          { secret: `${this.o.namespace}/${PREVIOUS_ROOTS_SECRET}`, error: String(e) },
          'previous roots unusable; serving the cacerts roots only',
        );
      }
    }
    this.plugged = bundle;
    this.install(bundle, 'cacerts');
  }

  /**
   * Records the roots served so far in castellan-previous-roots: the recorded ones, this
   * replica's earlier ones and the current `cacerts` roots, or only the latter after a drop.
   * Any replica may write (several at once is fine: resourceVersion, and re-read on 409);
   * writes are serialized per replica and a failure is retried.
   */
  private recordRoots(): void {
    if (!this.synced || this.stopped || !this.cacerts) return;
    if (this.recording) {
      this.recordAgain = true;
      return;
    }
    this.recording = (async () => {
      try {
        let written = false;
        do {
          this.recordAgain = false;
          const wrote = await updatePreviousRoots(this.o.core, this.o.namespace, (recorded) => {
            if (!this.cacerts || this.stopped) return undefined;
            const fresh = this.cacerts.fresh.roots.map(certificatePem);
            return this.cacerts.keep
              ? unique([...recorded, ...this.recordedRoots, ...this.servedBefore, ...fresh])
              : fresh;
          });
          written ||= wrote;
          // eslint-disable-next-line @typescript-eslint/no-unnecessary-condition -- a CA change during the await above sets it
        } while (this.recordAgain && !this.stopped);
        this.logger.debug(
          { secret: `${this.o.namespace}/${PREVIOUS_ROOTS_SECRET}`, written },
          'previous roots checked',
        );
      } catch (e) {
        this.logger.warn(
          { secret: `${this.o.namespace}/${PREVIOUS_ROOTS_SECRET}`, error: describeApiError(e) },
          'could not record the previous roots; retrying',
        );
        this.after(this.o.retryMs ?? 1000, () => this.recordRoots());
      } finally {
        this.recording = undefined;
      }
    })();
  }

  private install(bundle: KeyCertBundle, from: Serving): void {
    this.serving = from;
    if (sameBundle(this.o.state.current()?.bundle, bundle)) return;
    this.o.state.swap(bundle);
    this.lastRefused = '';
    this.logger.info(
      { source: bundle.source, subject: bundle.signingCert.subject, roots: bundle.roots.length },
      'CA loaded',
    );
  }

  /** The loaded CRL's nextUpdate passed (at load, or since): still published, said loudly. */
  private crlExpired(crl: CaCrl): void {
    const nextUpdate = crl.nextUpdate?.toISOString() ?? '';
    const renew = crlRenewalCommand(
      crl,
      '<the cacerts folder>',
      this.o.clock.now(),
      this.o.state.current()?.bundle.signingCert,
    );
    this.logger.warn(
      { crl: crl.subject, nextUpdate },
      `the CA CRL has expired; still published: renew it (${renew})`,
    );
    const secret = this.cacertsSecret;
    void this.o.events?.record(
      {
        kind: 'Secret',
        name: CACERTS_SECRET,
        namespace: this.o.namespace,
        uid: secret?.metadata?.uid,
      },
      {
        type: 'Warning',
        reason: 'CACRLExpired',
        message: `${CA_CRL_FILE}: nextUpdate ${nextUpdate} has passed; still published, but peers checking it may reject the certificates it covers (X509_V_ERR_CRL_HAS_EXPIRED): renew it with ${renew}, then update ${CACERTS_SECRET}`,
      },
    );
  }

  private refuse(secret: V1Secret, where: string, error: CastellanError): void {
    const fingerprint = `${secret.metadata?.name}@${secret.metadata?.resourceVersion}`;
    if (fingerprint === this.lastRefused) return;
    this.lastRefused = fingerprint;
    const serving = this.o.state.current()?.bundle.source;
    this.logger.error(
      { secret: where, kind: error.kind, error: error.message, serving },
      serving
        ? 'refused a CA update; still serving the last good CA'
        : 'refused the CA; serving nothing until a good one is given',
    );
    this.o.onLoadError?.(where, error);
    void this.o.events?.record(
      {
        kind: 'Secret',
        name: secret.metadata?.name ?? '',
        namespace: this.o.namespace,
        uid: secret.metadata?.uid,
      },
      {
        type: 'Warning',
        reason: 'CALoadFailed',
        message: `refused: ${error.message}; ${serving ? `still serving ${describeSource(serving)}` : 'serving nothing until it is fixed'}`,
      },
    );
  }
}
