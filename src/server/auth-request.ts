import type { DetailedPeerCertificate, TLSSocket } from 'node:tls';
import type { Metadata, ServerUnaryCall } from '@grpc/grpc-js';
import type { AuthRequest } from '../authn/authenticator.js';

/** The transport facts an AuthRequest is made of, whatever the transport. */
export interface AuthRequestParts {
  /** gRPC metadata or HTTP headers; `{}` where a surface accepts no token. */
  readonly metadata: Readonly<Record<string, readonly string[]>>;
  /**
   * The certificates the peer presented, DER, leaf first; empty without one. grpc-js hands out
   * the leaf alone; a node TLS socket also the chain the client sent.
   */
  readonly peerChain: readonly Uint8Array[];
  /** Our CA chain (create-certificate.ts caChainDer), standing in for the intermediates the transport withholds. */
  readonly intermediates: readonly Uint8Array[];
  /** `ip:port` of the peer, for logs. */
  readonly peerAddress: string;
}

/**
 * The one way an AuthRequest is built: what the authenticators may see (metadata and the TLS
 * peer's certificates), never the request body. grpc-js hands out the peer leaf alone, not the
 * chain the client sent, and only when it verified against the roots of the TLS context (the
 * current CA's roots): our own CA chain stands in for the intermediates, so a workload
 * certificate we issued under an intermediate chains through it, and the client-certificate
 * authenticator re-verifies every link. Without a peer certificate there is nothing to chain,
 * and the intermediates are left out.
 */
export function authRequest(parts: AuthRequestParts): AuthRequest {
  return {
    metadata: parts.metadata,
    peerCertificates: parts.peerChain.length ? [...parts.peerChain, ...parts.intermediates] : [],
    peerAddress: parts.peerAddress,
  };
}

/** What every grpc-js server call has, unary or stream (grpc-js does not export the type). */
export type GrpcServerCall = Pick<
  ServerUnaryCall<unknown, unknown>,
  'metadata' | 'getPeer' | 'getAuthContext'
>;

/**
 * gRPC metadata as authenticators read it: names lowercased, text values only (binary `-bin`
 * values carry no credential we accept).
 */
export function metadataRecord(metadata: Metadata): Record<string, string[]> {
  const record: Record<string, string[]> = {};
  for (const [name, values] of Object.entries(metadata.toJSON())) {
    const strings = values.filter((v): v is string => typeof v === 'string');
    if (strings.length > 0) record[name.toLowerCase()] = strings;
  }
  return record;
}

/**
 * A grpc-js call (unary or stream): its peer leaf and address, and its metadata when the
 * service accepts tokens (`forwardMetadata`); a certificate-only service passes false, so no
 * token reaches its authenticator.
 */
export function grpcAuthRequest(
  call: GrpcServerCall,
  intermediates: readonly Uint8Array[],
  options: { readonly forwardMetadata: boolean },
): AuthRequest {
  const raw = call.getAuthContext().sslPeerCertificate?.raw;
  return authRequest({
    metadata: options.forwardMetadata ? metadataRecord(call.metadata) : {},
    peerChain: raw ? [new Uint8Array(raw)] : [],
    intermediates,
    peerAddress: call.getPeer(),
  });
}

/**
 * A certificate of the chain node's getPeerCertificate(true) returns, as node documents it
 * rather than as typed: an empty object when the client sent none, and no issuerCertificate
 * where the chain it has ends.
 */
type PeerChainLink = Partial<DetailedPeerCertificate>;

/**
 * A node TLS socket (an HTTPS request's `req.socket`): the chain the client sent, leaf first,
 * and its address. No metadata: HTTP headers carry no credential on these surfaces.
 */
export function tlsAuthRequest(
  socket: TLSSocket,
  intermediates: readonly Uint8Array[],
): AuthRequest {
  // A plain (non-TLS) socket has no getPeerCertificate: no certificate, not a crash.
  const peer =
    typeof socket.getPeerCertificate === 'function' ? socket.getPeerCertificate(true) : null;
  const chain: Uint8Array[] = [];
  // node links a self-signed certificate to itself as its own issuer: stop at the first repeat.
  const seen = new Set<string>();
  for (
    let c: PeerChainLink | null | undefined = peer;
    c?.raw && c.fingerprint256 !== undefined && !seen.has(c.fingerprint256);
    c = c.issuerCertificate
  ) {
    seen.add(c.fingerprint256);
    chain.push(new Uint8Array(c.raw));
  }
  return authRequest({
    metadata: {},
    peerChain: chain,
    intermediates,
    peerAddress: `${socket.remoteAddress ?? ''}:${socket.remotePort ?? ''}`,
  });
}
