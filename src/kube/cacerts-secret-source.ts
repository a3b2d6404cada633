import type { CoreV1Api, KubeConfig, V1Secret } from '@kubernetes/client-node';
import type { Clock } from '../clock.js';
import { CastellanError, asCastellanError } from '../errors.js';
import { silentLogger, type Logger } from '../log.js';
import type { KeyCertBundle } from '../ca/authority.js';
import type { SwappableCaState } from '../ca/ca-state.js';
import { certificatePem } from '../ca/bundle.js';
import { bundleFromCacerts, detectLayout } from '../ca/cacerts-layout.js';
import type { CaKeyType } from '../pki/key-type.js';
import type { EventRecorder } from './events.js';
import { describeApiError } from './client.js';
import { startInformer, type Informer } from './informer.js';
import {
  SELF_SIGNED_SECRET,
  bundleFromSelfSignedSecret,
  decodeSecretData,
  ensureSelfSignedSecret,
} from './self-signed-secret.js';

export const CACERTS_SECRET = 'cacerts';
/**
 * On the `cacerts` Secret: `"false"` drops roots of earlier CAs from the published trust
 * bundle. Until then, after a root change, old and new roots are both trusted, so workloads
 * holding certificates from the old root keep being accepted while they renew.
 */
export const KEEP_PREVIOUS_ROOTS_ANNOTATION = 'castellan.io/keep-previous-roots';

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
  logger?: Logger | undefined;
  retryMs?: number | undefined;
}

function sameBundle(a: KeyCertBundle | undefined, b: KeyCertBundle): boolean {
  return (
    a !== undefined &&
    a.source === b.source &&
    a.rootBundlePem === b.rootBundlePem &&
    a.responseChainPem.join('') === b.responseChainPem.join('') &&
    certificatePem(a.signingCert) === certificatePem(b.signingCert)
  );
}

/**
 * The CA in Kubernetes mode, fed from Secrets in our namespace and followed by one watch:
 *  - `cacerts` (Istio's four files or tls.crt/tls.key/ca.crt) when present and valid;
 *  - otherwise the self-signed root in `istio-ca-secret`, created by the first replica.
 * Every change is verified completely before the swap; a broken one is refused (the last
 * good CA keeps serving, an error is logged, counted and recorded as an Event on the Secret).
 */
export class KubeCaSource {
  private informer: Informer<V1Secret> | undefined;
  private readonly logger: Logger;
  private plugged: KeyCertBundle | undefined;
  private selfSigned: KeyCertBundle | undefined;
  /** Roots of CAs served before, kept in the trust bundle (see KEEP_PREVIOUS_ROOTS_ANNOTATION). */
  private previousRootsPem = '';
  private lastRefused = '';

  constructor(private readonly o: KubeCaSourceOptions) {
    this.logger = o.logger ?? silentLogger;
  }

  /** Starts the watch and resolves once a CA is loaded (cacerts, or the self-signed root). */
  async start(): Promise<void> {
    const { core, namespace } = this.o;
    this.informer = startInformer<V1Secret>({
      kubeConfig: this.o.kubeConfig,
      path: `/api/v1/namespaces/${namespace}/secrets`,
      list: () => core.listNamespacedSecret({ namespace }),
      logger: this.logger,
      retryMs: this.o.retryMs,
      handlers: {
        upsert: (s) => this.onSecret(s),
        deleted: (s) => {
          if (s.metadata?.name === CACERTS_SECRET && this.plugged) {
            this.logger.warn(
              { secret: `${namespace}/${CACERTS_SECRET}` },
              'cacerts was deleted; still serving the last plugged-in CA until a new one is given',
            );
          }
        },
      },
    });
    await this.informer.synced;
    if (!this.plugged) {
      const secret = await ensureSelfSignedSecret({
        core,
        namespace,
        trustDomain: this.o.trustDomain,
        clock: this.o.clock,
        keyType: this.o.selfSignedKeyType,
        ttlMs: this.o.selfSignedTtlMs,
        logger: this.logger,
      });
      this.onSecret(secret);
      if (!this.o.state.current()) {
        throw new CastellanError('incomplete-ca', 'no usable CA', {
          subject: `secret ${namespace}/${SELF_SIGNED_SECRET}`,
        });
      }
    }
  }

  async stop(): Promise<void> {
    await this.informer?.stop();
  }

  /** The self-signed CA as last loaded (what root rotation re-issues). */
  get selfSignedBundle(): KeyCertBundle | undefined {
    return this.selfSigned;
  }

  private onSecret(secret: V1Secret): void {
    const name = secret.metadata?.name;
    if (name === CACERTS_SECRET) this.onCacerts(secret);
    else if (name === SELF_SIGNED_SECRET) this.onSelfSigned(secret);
  }

  private onCacerts(secret: V1Secret): void {
    const { namespace, clock } = this.o;
    const files = decodeSecretData(secret);
    if (!detectLayout(files)) return; // Nothing plugged in: not a CA secret (yet).
    const where = `secret ${namespace}/${CACERTS_SECRET}`;
    const keepPrevious = secret.metadata?.annotations?.[KEEP_PREVIOUS_ROOTS_ANNOTATION] !== 'false';
    try {
      const fresh = bundleFromCacerts(
        files,
        { source: `cacerts-secret:${namespace}/${CACERTS_SECRET}`, where },
        clock,
      );
      if (!fresh) return;
      // The new set verified on its own; now publish old roots beside the new ones.
      const withOld = keepPrevious ? this.withPreviousRoots(files, fresh) : fresh;
      if (!keepPrevious) this.previousRootsPem = '';
      this.plugged = withOld;
      this.install(withOld);
    } catch (e) {
      this.refuse(secret, where, asCastellanError(e));
    }
  }

  private onSelfSigned(secret: V1Secret): void {
    try {
      const b = bundleFromSelfSignedSecret(secret, this.o.clock);
      const previous = this.selfSigned;
      // A re-issued root (rotation) has the same key and subject: keep both certificates.
      const extra =
        previous && previous.rootBundlePem !== b.rootBundlePem ? previous.rootBundlePem : '';
      this.selfSigned = extra ? bundleFromSelfSignedSecret(secret, this.o.clock, extra) : b;
      if (!this.plugged) this.install(this.selfSigned);
    } catch (e) {
      this.refuse(secret, `secret ${this.o.namespace}/${SELF_SIGNED_SECRET}`, asCastellanError(e));
    }
  }

  /** Rebuilds `fresh` from the same files with earlier roots appended to its trust bundle. */
  private withPreviousRoots(files: Map<string, string>, fresh: KeyCertBundle): KeyCertBundle {
    const current = this.o.state.current()?.bundle;
    const freshRoots = new Set(fresh.roots.map(certificatePem));
    const old = [
      ...(current ? current.roots.map(certificatePem) : []),
      ...splitPem(this.previousRootsPem),
    ].filter((p, i, all) => !freshRoots.has(p) && all.indexOf(p) === i);
    this.previousRootsPem = old.join('');
    if (old.length === 0) return fresh;
    const rootKey = detectLayout(files) === 'tls' ? 'ca.crt' : 'root-cert.pem';
    const merged = new Map(files);
    merged.set(rootKey, (files.get(rootKey) ?? '') + '\n' + this.previousRootsPem);
    return (
      bundleFromCacerts(
        merged,
        { source: fresh.source, where: `secret ${this.o.namespace}/${CACERTS_SECRET}` },
        this.o.clock,
      ) ?? fresh
    );
  }

  private install(bundle: KeyCertBundle): void {
    if (sameBundle(this.o.state.current()?.bundle, bundle)) return;
    this.o.state.swap(bundle);
    this.lastRefused = '';
    this.logger.info(
      { source: bundle.source, subject: bundle.signingCert.subject, roots: bundle.roots.length },
      'CA loaded',
    );
  }

  private refuse(secret: V1Secret, where: string, error: CastellanError): void {
    const fingerprint = `${secret.metadata?.name}@${secret.metadata?.resourceVersion}`;
    if (fingerprint === this.lastRefused) return;
    this.lastRefused = fingerprint;
    this.logger.error(
      {
        secret: where,
        kind: error.kind,
        error: error.message,
        serving: this.o.state.current()?.bundle.source,
      },
      'refused a CA update; still serving the last good CA',
    );
    this.o.onLoadError?.(where, error);
    void this.o.events
      ?.record(
        {
          kind: 'Secret',
          name: secret.metadata?.name ?? '',
          namespace: this.o.namespace,
          uid: secret.metadata?.uid,
        },
        {
          type: 'Warning',
          reason: 'CALoadFailed',
          message: `refused: ${error.message}; still serving ${this.o.state.current()?.bundle.source ?? 'nothing'}`,
        },
      )
      .catch((e: unknown) =>
        this.logger.debug({ error: describeApiError(e) }, 'event not recorded'),
      );
  }
}

function splitPem(text: string): string[] {
  return [...text.matchAll(/-----BEGIN CERTIFICATE-----[\s\S]*?-----END CERTIFICATE-----\n?/g)].map(
    (m) => (m[0].endsWith('\n') ? m[0] : m[0] + '\n'),
  );
}
