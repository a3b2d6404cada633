import type { PackageDefinition } from '@grpc/proto-loader';
import { loadProto } from './protos.js';

/** `istio.v1.auth.IstioCertificateService`, the CSR API Istio sidecars call. */
export const ISTIO_CA_SERVICE = 'istio.v1.auth.IstioCertificateService';

/** Decoded IstioCertificateRequest (proto-loader, camelCase, longs as numbers). */
export interface IstioCertificateRequest {
  csr: string;
  validityDuration: number;
  metadata?: { fields?: Record<string, unknown> } | null;
}

export interface IstioCertificateResponse {
  certChain: string[];
}

let cached: PackageDefinition | undefined;
export function istioCaPackageDefinition(): PackageDefinition {
  cached ??= loadProto('istioca.proto');
  return cached;
}
