import { CastellanError } from '../errors.js';

/** A Kubernetes workload identity: spiffe://<trust-domain>/ns/<namespace>/sa/<service-account>. */
export interface SpiffeId {
  readonly trustDomain: string;
  readonly namespace: string;
  readonly serviceAccount: string;
}

// SPIFFE trust domain: lowercase letters, digits, '.', '-', '_' (SPIFFE-ID spec §2.1).
const TRUST_DOMAIN = /^[a-z0-9._-]{1,255}$/;
// Namespace: an RFC 1123 DNS label. Service account: an RFC 1123 DNS subdomain.
const DNS_LABEL = /^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/;
const DNS_SUBDOMAIN = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;

export function validateTrustDomain(td: string): string {
  if (!TRUST_DOMAIN.test(td) || td.startsWith('.') || td.endsWith('.')) {
    throw new CastellanError(
      'invalid-argument',
      `invalid trust domain "${td}": use lowercase letters, digits, '.', '-' and '_'`,
    );
  }
  return td;
}

export function makeSpiffeId(
  trustDomain: string,
  namespace: string,
  serviceAccount: string,
): SpiffeId {
  validateTrustDomain(trustDomain);
  if (!DNS_LABEL.test(namespace)) {
    throw new CastellanError(
      'invalid-argument',
      `invalid namespace "${namespace}": not a DNS label`,
    );
  }
  if (serviceAccount.length > 253 || !DNS_SUBDOMAIN.test(serviceAccount)) {
    throw new CastellanError(
      'invalid-argument',
      `invalid service account "${serviceAccount}": not a DNS subdomain`,
    );
  }
  return { trustDomain, namespace, serviceAccount };
}

export function formatSpiffeId(id: SpiffeId): string {
  return `spiffe://${id.trustDomain}/ns/${id.namespace}/sa/${id.serviceAccount}`;
}

/** Parses a Kubernetes-style SPIFFE ID; anything else (other paths, queries, ports) is refused. */
export function parseSpiffeId(uri: string): SpiffeId {
  const m = /^spiffe:\/\/([^/]+)\/ns\/([^/]+)\/sa\/([^/]+)$/.exec(uri);
  if (!m) {
    throw new CastellanError(
      'invalid-argument',
      `"${uri}" is not a SPIFFE ID of the form spiffe://<trust-domain>/ns/<namespace>/sa/<service-account>`,
    );
  }
  return makeSpiffeId(m[1] as string, m[2] as string, m[3] as string);
}
