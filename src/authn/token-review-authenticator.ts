import { CastellanError } from '../errors.js';
import { silentLogger, type Logger } from '../log.js';
import type { AuthRequest, Authenticator, Caller } from './authenticator.js';
import { extractBearerToken, withoutToken } from './bearer.js';
import { tokenAudiences } from './jwt-authenticator.js';
import { parseServiceAccountSubject } from './service-account-subject.js';

/** Kubernetes' `UserInfo` of a TokenReview status (authentication.k8s.io/v1). */
export interface TokenReviewUser {
  readonly username?: string | undefined;
  readonly uid?: string | undefined;
  readonly groups?: readonly string[] | undefined;
  readonly extra?: Readonly<Record<string, readonly string[]>> | undefined;
}

/** Kubernetes' `TokenReviewStatus`, as the API server returns it. */
export interface TokenReviewResult {
  readonly authenticated?: boolean | undefined;
  readonly user?: TokenReviewUser | undefined;
  /** The audiences the token is valid for, among those requested; empty when not supported. */
  readonly audiences?: readonly string[] | undefined;
  readonly error?: string | undefined;
}

/**
 * The port to a Kubernetes API server's TokenReview (`POST
 * /apis/authentication.k8s.io/v1/tokenreviews`). src/kube implements it with the client library;
 * `clusterId` selects a remote cluster, and an unknown one rejects. Rejects on transport or API
 * errors; resolves with the status otherwise, authenticated or not.
 */
export interface TokenReviewer {
  review(
    token: string,
    audiences: readonly string[],
    clusterId?: string,
  ): Promise<TokenReviewResult>;
}

export const SERVICE_ACCOUNTS_GROUP = 'system:serviceaccounts';
export const POD_NAME_EXTRA = 'authentication.kubernetes.io/pod-name';
export const POD_UID_EXTRA = 'authentication.kubernetes.io/pod-uid';
/** gRPC metadata naming the cluster a multi-cluster client's token comes from, as in Istio. */
export const CLUSTER_ID_METADATA = 'clusterid';

export interface TokenReviewAuthenticatorOptions {
  readonly reviewer: TokenReviewer;
  /** Requested in the review; the token must be valid for one of them. Default `istio-ca`. */
  readonly audiences?: readonly string[] | undefined;
  readonly logger?: Logger | undefined;
}

/**
 * Authenticates a bearer token by asking the API server (issue 3), checked as Istio does: the
 * status is authenticated without error, the user is in `system:serviceaccounts`, the username
 * is `system:serviceaccount:<ns>:<sa>`, and audiences, when the server reports them, include
 * one of ours. Pod name and uid come from the bound-token extras.
 */
export class TokenReviewAuthenticator implements Authenticator {
  readonly name = 'token-review' as const;
  private readonly reviewer: TokenReviewer;
  private readonly audiences: string[];
  private readonly logger: Logger;

  constructor(options: TokenReviewAuthenticatorOptions) {
    this.reviewer = options.reviewer;
    this.audiences = tokenAudiences(options.audiences);
    this.logger = options.logger ?? silentLogger;
  }

  async authenticate(request: AuthRequest): Promise<Caller | null> {
    const token = extractBearerToken(request);
    if (token === null) return null;
    const clusterIds = request.metadata[CLUSTER_ID_METADATA] ?? [];
    if (clusterIds.length > 1) {
      throw new CastellanError(
        'unauthenticated',
        `${clusterIds.length} clusterid values; at most one is accepted`,
      );
    }
    const clusterId = clusterIds[0];
    let status: TokenReviewResult;
    try {
      status = await this.reviewer.review(token, this.audiences, clusterId);
    } catch (e) {
      const detail = withoutToken(e instanceof Error ? e.message : String(e), token);
      const reason = `TokenReview failed${clusterId !== undefined ? ` (cluster "${clusterId}")` : ''}: ${detail}`;
      // Not the client's fault: an operator needs to see this one.
      this.logger.warn(
        { authenticator: this.name, peer: request.peerAddress, reason },
        'TokenReview failed',
      );
      throw new CastellanError('unauthenticated', reason);
    }
    try {
      return this.callerFrom(status);
    } catch (e) {
      const reason = withoutToken(e instanceof Error ? e.message : String(e), token);
      this.logger.debug(
        { authenticator: this.name, peer: request.peerAddress, reason },
        'TokenReview refused',
      );
      throw new CastellanError('unauthenticated', reason);
    }
  }

  private callerFrom(status: TokenReviewResult): Caller {
    if (status.error) {
      throw new CastellanError('unauthenticated', `TokenReview error: ${status.error}`);
    }
    if (status.authenticated !== true) {
      throw new CastellanError('unauthenticated', 'TokenReview: token not authenticated');
    }
    const user = status.user ?? {};
    if (!(user.groups ?? []).includes(SERVICE_ACCOUNTS_GROUP)) {
      throw new CastellanError(
        'unauthenticated',
        `TokenReview: user is not in group ${SERVICE_ACCOUNTS_GROUP} (not a service account)`,
      );
    }
    const username = user.username ?? '';
    const account = parseServiceAccountSubject(username, 'TokenReview username');
    const audiences = status.audiences ?? [];
    if (audiences.length > 0 && !audiences.some((a) => this.audiences.includes(a))) {
      throw new CastellanError(
        'unauthenticated',
        `TokenReview: token audiences ${JSON.stringify(audiences)} contain none of ${JSON.stringify(this.audiences)}`,
      );
    }
    return {
      authenticator: this.name,
      namespace: account.namespace,
      serviceAccount: account.serviceAccount,
      subject: username,
      podName: singleExtra(user.extra, POD_NAME_EXTRA),
      podUid: singleExtra(user.extra, POD_UID_EXTRA),
    };
  }
}

function singleExtra(
  extra: Readonly<Record<string, readonly string[]>> | undefined,
  key: string,
): string | undefined {
  const values = extra?.[key];
  return values && values.length === 1 ? values[0] : undefined;
}
