/**
 * What serves gRPC on the CA port's TLS connections: `castellan`, our own HTTP/2 and gRPC
 * (./h2/, the default), or `grpc-js`, @grpc/grpc-js on node:http2. docs/performance.md says why
 * the first: node:http2 makes every request header value a V8 external string in the old
 * generation, and finalising those on the event loop set the CA's p99. A module of its own, so
 * the CLI's flags name the choices without loading either server.
 */
export type GrpcTransport = 'castellan' | 'grpc-js';
export const GRPC_TRANSPORTS: readonly GrpcTransport[] = ['castellan', 'grpc-js'];
