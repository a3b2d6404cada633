/** How callers prove who they are with a token (client certificates need no options). */
export interface AuthnOptions {
  /** Audiences a token must carry one of (Istio's default: istio-ca). */
  readonly tokenAudiences: readonly string[];
  /** A trusted external token issuer and its key set, besides local mode's development issuer. */
  readonly externalJwt: { readonly issuer: string; readonly jwksFile: string } | undefined;
}
