import { rm } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import type { Authenticator } from '../../authn/authenticator.js';
import { DevTokenIssuer } from '../../authn/dev-token-issuer.js';
import { loadJwksFile } from '../../authn/jwks.js';
import { JwtAuthenticator } from '../../authn/jwt-authenticator.js';
import type { AuthnOptions } from '../../authn/options.js';
import { removeStaleTemporaries, writeFileAtomic } from '../../atomic-write.js';
import { CA_CRL_FILE } from '../../ca/cacerts-layout.js';
import { crlRenewalCommand, followCrlExpiry } from '../../ca/crl-expiry.js';
import type { CaSnapshot, KeyCertBundle } from '../../ca/key-cert-bundle.js';
import { SwappableCaState } from '../../ca/swappable-ca-state.js';
import type { CaOptions } from '../../ca/options.js';
import {
  bundleFromCacertsFolderFiles,
  cacertsFingerprint,
  loadCacertsFolderRead,
  readCacertsFolder,
} from '../../ca/sources/folder.js';
import { loadOrCreateSelfSignedCa } from '../../ca/sources/self-signed.js';
import { KeyUriSigners } from '../../ca/signers/key-uri-signers.js';
import { openPkcs11Signer } from '../../ca/signers/pkcs11-signer.js';
import { PeriodicTask, type Clock } from '../../clock.js';
import { CastellanError, isCastellanError } from '../../errors.js';
import type { Logger } from '../../log.js';
import { caLoadErrorsMetric, type CaRuntime } from './ca-runtime.js';
import { SERVE_DEFAULTS } from './flags.js';
import type { Environment } from './options.js';

/** The trust bundle clients need, kept in the data dir. */
export const ROOT_CERT_FILE = 'root-cert.pem';

/**
 * The plugged-in CA's CRL, kept beside the trust bundle: the bytes of the folder's
 * `ca-crl.pem`, as istiod publishes the file it is given (istio-ca-crl), removed when the CA
 * has none.
 */
export const CRL_FILE = CA_CRL_FILE;

/**
 * Local mode: the CA from a plugged-in folder (followed) or the self-signed root in the data dir;
 * tokens from the development issuer (and an external issuer when configured); the trust bundle
 * as `<data dir>/root-cert.pem` and the plugged-in CA's CRL as `<data dir>/ca-crl.pem`.
 */
export async function startLocalRuntime(
  options: { readonly ca: CaOptions; readonly authn: AuthnOptions },
  deps: {
    readonly clock: Clock;
    readonly logger: Logger;
    /** Where a key URI's `pin-source=env:NAME` is looked up. */
    readonly env: Environment;
  },
): Promise<CaRuntime> {
  const { ca, authn } = options;
  const { clock, logger, env } = deps;
  // What a start killed mid-write left (a key's copy among them): gone before anything is read.
  const stale = await removeStaleTemporaries(ca.dataDir);
  if (stale.length > 0) {
    logger.warn(
      { dataDir: ca.dataDir, removed: stale },
      'removed temporary files an interrupted start left in the data dir',
    );
  }
  // Opened while the CA loads: a new data dir's RSA key is generated on the thread pool.
  const devIssuer = DevTokenIssuer.open(ca.dataDir, { clock });
  // Settled here if the CA load throws first, so its failure is not also an unhandled rejection.
  devIssuer.catch(() => undefined);
  let bundle: KeyCertBundle | undefined;
  // The folder content `bundle` was built from: the watcher's baseline.
  let loadedFingerprint: string | undefined;
  // Keys in a PKCS#11 token (--ca-key-uri, or the folder's ca-key.uri): opened on first use.
  const signers = new KeyUriSigners({
    opener: (uri) => openPkcs11Signer({ uri, env, clock, logger }),
    clock,
  });
  const keys = { keyUri: ca.caKeyUri, signers, readCrl: ca.enableCaCrl };
  const cacertsDir = ca.cacertsDir;
  if (cacertsDir) {
    ({ bundle, fingerprint: loadedFingerprint } = await loadCacertsFolderRead(
      cacertsDir,
      clock,
      keys,
    ).catch(async (e: unknown) => {
      await signers.close();
      throw namingTheSetting(e, cacertsDir, ca.cacertsDirSetting);
    }));
    if (!bundle) {
      await signers.close();
      throw new CastellanError(
        'incomplete-ca',
        'holds none of ca-cert.pem, ca-key.pem, cert-chain.pem, root-cert.pem (or tls.crt, tls.key, ca.crt)',
        { subject: ca.cacertsDirSetting ? `${ca.cacertsDirSetting}=${cacertsDir}` : cacertsDir },
      );
    }
  } else {
    bundle = await loadOrCreateSelfSignedCa(
      {
        dataDir: ca.dataDir,
        trustDomain: ca.trustDomain,
        keyType: ca.selfSignedKeyType,
        ttlMs: ca.selfSignedRootTtlMs,
        onForeignRoots: (message) => logger.warn(message),
      },
      clock,
    );
  }
  const caState = new SwappableCaState();
  caState.swap(bundle);
  logger.info({ source: bundle.source, keyType: bundle.signingKeyType }, 'CA loaded');

  const dev = await devIssuer;
  const tokenAuthenticators: Authenticator[] = [
    new JwtAuthenticator({
      issuer: dev.issuer,
      keys: dev.keySource(),
      audiences: authn.tokenAudiences,
      clock,
      logger,
    }),
  ];
  if (authn.externalJwt) {
    tokenAuthenticators.push(
      new JwtAuthenticator({
        issuer: authn.externalJwt.issuer,
        keys: await loadJwksFile(authn.externalJwt.jwksFile),
        audiences: authn.tokenAudiences,
        clock,
        logger,
      }),
    );
  }

  const loadErrors = caLoadErrorsMetric();
  const watcher = ca.cacertsDir
    ? new CacertsFolderWatcher({
        dir: ca.cacertsDir,
        caState,
        clock,
        intervalMs: ca.cacertsPollIntervalMs,
        readCrl: ca.enableCaCrl,
        logger,
        onRefused: loadErrors.count,
        keys,
        loadedFingerprint,
      })
    : undefined;
  await watcher?.start();
  const unfollowCrl = followCrlExpiry(caState, clock, (crl) =>
    logger.warn(
      { crl: crl.subject, nextUpdate: crl.nextUpdate?.toISOString() },
      `the CA CRL has expired; still published: renew it (${crlRenewalCommand(crl, cacertsDir ?? '<the cacerts folder>', clock.now(), caState.current()?.bundle.signingCert)})`,
    ),
  );

  const rootPath = resolve(join(ca.dataDir, ROOT_CERT_FILE));
  const crlPath = resolve(join(ca.dataDir, CRL_FILE));
  const publish = async (snapshot: CaSnapshot): Promise<void> => {
    const crl = snapshot.bundle.crl;
    try {
      await writeFileAtomic(rootPath, snapshot.bundle.rootBundlePem);
      // PILOT_ENABLE_CA_CRL=false: the file is left alone, as istiod leaves istio-ca-crl.
      if (ca.enableCaCrl) {
        if (crl) await writeFileAtomic(crlPath, crl.pem);
        else await rm(crlPath, { force: true });
      }
    } catch (e) {
      logger.error({ err: e, dir: ca.dataDir }, 'could not write the trust bundle or the CRL');
    }
  };
  let unsubscribe: (() => void) | undefined;
  // Written in order: a swap during a write is written after it, never before.
  let writing = Promise.resolve();
  const dataDirFlag = ca.dataDir === SERVE_DEFAULTS.dataDir ? '' : ` --data-dir ${ca.dataDir}`;
  return {
    caState,
    tokenAuthenticators,
    tokenHint: `npx castellan token --namespace default --service-account default${dataDirFlag} > token`,
    trustBundle: rootPath,
    registry: loadErrors.registry,
    async publishTrustBundle() {
      unsubscribe ??= caState.onChange((s) => {
        writing = writing.then(() => publish(s));
      });
      const current = caState.current();
      if (current) await (writing = writing.then(() => publish(current)));
    },
    async close() {
      unsubscribe?.();
      unfollowCrl();
      await watcher?.stop();
      await signers.close();
    },
  };
}

/** Matches no folder's fingerprint: the next poll loads the set again. */
const RETRY_AT_NEXT_POLL = '(retry)';

/**
 * Follows a plugged-in CA folder: when its files change, the new set is verified completely and
 * swapped in one step; a broken or partial set is refused (logged, counted) and serving goes on
 * with the last good CA. A refused set is not retried until the files change again, except one
 * refused because its key's token did not answer (`unavailable`): that says nothing about the
 * set, so it is loaded again at the next poll.
 */
export class CacertsFolderWatcher {
  /** The folder's content when last read; a change of it triggers a load. */
  private lastFingerprint: string | undefined;
  private readonly task: PeriodicTask;

  constructor(
    private readonly options: {
      readonly dir: string;
      readonly caState: SwappableCaState;
      readonly clock: Clock;
      readonly intervalMs: number;
      /** false: ca-crl.pem is ignored (PILOT_ENABLE_CA_CRL=false). */
      readonly readCrl?: boolean | undefined;
      readonly logger: Logger;
      /** Called with the source label of each refused update. */
      readonly onRefused: (source: string) => void;
      /**
       * Keys in a PKCS#11 token: --ca-key-uri, and the signers shared by every load; after a
       * swap, the signers the new CA no longer uses are closed (after a grace period).
       */
      readonly keys?: { readonly keyUri: string | undefined; readonly signers: KeyUriSigners };
      /**
       * The folder content the CA being served was loaded from: the first poll compares with
       * it, so a set replaced between that load and the watcher's start is swapped in too.
       * Absent: the folder's content at the first poll is the baseline.
       */
      readonly loadedFingerprint?: string | undefined;
    },
  ) {
    this.lastFingerprint = options.loadedFingerprint;
    this.task = new PeriodicTask({
      clock: options.clock,
      intervalMs: options.intervalMs,
      run: () => this.check(),
      onError: (e) => {
        options.onRefused(`cacerts-dir:${options.dir}`);
        options.logger.error(
          { err: e instanceof Error ? e.message : String(e) },
          'plugged-in CA update refused; still serving with the last good CA',
        );
      },
    });
  }

  /**
   * Reads the folder now, then every interval; resolves once that first read is done (and, when
   * the folder changed since the CA was loaded from it, the change is swapped in or refused).
   */
  start(): Promise<void> {
    this.task.start();
    return this.task.trigger();
  }

  /** Re-reads the folder now, or waits for the read under way. */
  readNow(): Promise<void> {
    return this.task.trigger();
  }

  stop(): Promise<void> {
    return this.task.stop();
  }

  private async check(): Promise<void> {
    const { dir, caState, clock, logger, keys } = this.options;
    const files = await readCacertsFolder(dir);
    const fingerprint = cacertsFingerprint(files);
    const previous = this.lastFingerprint;
    this.lastFingerprint = fingerprint;
    if (previous === undefined || previous === fingerprint) return;
    let bundle: KeyCertBundle | undefined;
    try {
      // Built from the files just fingerprinted, not a second read that could differ.
      bundle = await bundleFromCacertsFolderFiles(dir, files, clock, {
        ...keys,
        readCrl: this.options.readCrl,
      });
    } catch (e) {
      if (isCastellanError(e, 'unavailable')) this.lastFingerprint = RETRY_AT_NEXT_POLL;
      throw e;
    }
    if (!bundle) {
      throw new CastellanError('incomplete-ca', 'the CA files were removed', { subject: dir });
    }
    const snapshot = caState.swap(bundle);
    keys?.signers.retain(bundle.signer);
    logger.info(
      { source: bundle.source, generation: snapshot.generation },
      'plugged-in CA changed: swapped',
    );
  }
}

/**
 * An error about the plugged-in CA folder itself (`no such folder`), naming what set it when
 * that was ROOT_CA_DIR: an operator who never passed --cacerts-dir would otherwise see a path
 * out of nowhere. Errors about the files inside name their files, and pass through.
 */
function namingTheSetting(e: unknown, dir: string, setting: string | undefined): unknown {
  if (setting === undefined || !(e instanceof CastellanError) || e.subject !== dir) return e;
  return new CastellanError(e.kind, e.detail, { subject: `${setting}=${dir}`, cause: e });
}
