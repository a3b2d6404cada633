import type { MethodDefinition, ServiceDefinition } from '@grpc/grpc-js';
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

const UNDECODABLE = Symbol('undecodable request');

/** What a request that could not be decoded becomes: the decoder's reason, for the handler. */
interface UndecodableRequest {
  readonly [UNDECODABLE]: string;
}

/**
 * The service with every request deserializer made total: bytes protobufjs cannot decode (a
 * malformed varint, a length past the end, a Struct nested deeper than protobufjs's recursion
 * limit of 32) become a marked request instead of a throw. grpc-js answers a throwing
 * deserializer with INTERNAL "Error deserializing request" (server-interceptors.js,
 * processIncomingMessage) and never calls the handler — but undecodable bytes are the caller's
 * fault, and INTERNAL pages an operator: the handler sees the mark (`undecodableReason`) and
 * answers INVALID_ARGUMENT, with its audit line.
 */
export function withUndecodableRequestsMarked(service: ServiceDefinition): ServiceDefinition {
  const marked: Record<string, MethodDefinition<unknown, unknown>> = {};
  for (const [name, method] of Object.entries(service)) {
    const decode = method.requestDeserialize;
    marked[name] = {
      ...method,
      requestDeserialize: (bytes: Buffer): unknown => {
        try {
          return decode(bytes);
        } catch (e) {
          const request: UndecodableRequest = {
            [UNDECODABLE]: e instanceof Error ? e.message : String(e),
          };
          return request;
        }
      },
    };
  }
  return marked;
}

/** Why the request could not be decoded, when it was marked so; else undefined. */
export function undecodableReason(request: unknown): string | undefined {
  return typeof request === 'object' && request !== null && UNDECODABLE in request
    ? (request as UndecodableRequest)[UNDECODABLE]
    : undefined;
}
