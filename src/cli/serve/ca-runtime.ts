import { Counter, Registry } from 'prom-client';
import type { Authenticator } from '../../authn/authenticator.js';
import type { Impersonation } from '../../authn/impersonation.js';
import type { CaState } from '../../ca/key-cert-bundle.js';

/**
 * Where the CA comes from and where its trust bundle goes: the one thing local mode
 * (./local-runtime.ts: the data dir or a plugged-in folder, a trust bundle file, the development
 * token issuer) and Kubernetes mode (./kube-runtime.ts: Secrets, ConfigMaps, TokenReview) do
 * differently. The rest of serve is the same in both and never asks which mode it is in.
 */
export interface CaRuntime {
  /** The current CA, swapped whole when the source changes. */
  readonly caState: CaState;
  /** Tried in order after the client certificate: JWTs, then TokenReview. */
  readonly tokenAuthenticators: readonly Authenticator[];
  /** What the start line tells the user about getting a token. */
  readonly tokenHint: string;
  /** Ambient mode's node authorizer (Kubernetes mode); absent, impersonation is refused. */
  readonly impersonation?: Impersonation | undefined;
  /** Where clients find the trust bundle, for the start line. */
  readonly trustBundle: string;
  /** The source's metrics (castellan_ca_load_errors_total), shown on /metrics. */
  readonly registry: Registry;
  /**
   * Why no CA is loaded (shown by /ready and logged while serve waits for one), or undefined
   * when one is. Kubernetes mode starts without a CA when `cacerts` does not verify.
   */
  whyNoCa?(): string | undefined;
  /**
   * Publishes the trust bundle (and the CA's CRL, where the mode publishes one) now, and again
   * after every CA change, until close(). Called once a CA is loaded.
   */
  publishTrustBundle(): Promise<void>;
  /** Stops following the source and publishing; idempotent. */
  close(): Promise<void>;
}

/**
 * `castellan_ca_load_errors_total{source}`: CA updates refused (a broken or partial set from a
 * plugged-in folder or a Secret). Serving goes on with the last good CA.
 */
export function caLoadErrorsMetric(): { registry: Registry; count: (source: string) => void } {
  const registry = new Registry();
  const counter = new Counter({
    name: 'castellan_ca_load_errors_total',
    help: 'CA updates refused (bad key pair, chain, partial set); the last good CA, if one was loaded, goes on serving.',
    labelNames: ['source'],
    registers: [registry],
  });
  return { registry, count: (source) => counter.inc({ source }) };
}
