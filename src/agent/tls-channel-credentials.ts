import { isIP, type Socket } from 'node:net';
import {
  checkServerIdentity,
  connect,
  createSecureContext,
  type PeerCertificate,
  type SecureContext,
} from 'node:tls';
import { CallCredentials, ChannelCredentials } from '@grpc/grpc-js';
import type {
  SecureConnectResult,
  SecureConnector,
} from '@grpc/grpc-js/build/src/channel-credentials.js';
import { CastellanError } from '../errors.js';
import { pemBlocks } from '../pki/pem.js';

/**
 * TLS credentials for a gRPC channel to one CA, which check its certificate against `name` (the
 * host dialled, or `--server-name`) and send `name` as the TLS server name (SNI) only when it is
 * a DNS name.
 *
 * Why not grpc-js's own (`credentials.createSsl`): grpc-js 1.14 hands the dialled host to
 * `tls.connect` as `servername` even when it is an IP address. RFC 6066 (section 3) forbids an
 * IP address there; Node 20 and 24 only warn (DEP0123), Node 26 refuses it, and the call then
 * fails on every retry (grpc/grpc-node#1919 is open). Istio's client does what this does:
 * pilot-agent (security/pkg/nodeagent/caclient/providers/citadel/client.go, getTLSDialOption)
 * dials with grpc-go's credentials.NewTLS and no ServerName of its own, so the name is the
 * dialled host; Go's crypto/tls sends no server name for an IP address and checks the
 * certificate's IP SANs. (That client also falls back to the system roots when given none; the
 * agent here always has --root-cert, and refuses one without a certificate: fromPem.)
 *
 * `_createSecureConnector` is grpc-js's own extension point for credentials (what its xDS
 * credentials implement); it is typed in grpc-js's declarations, so a grpc-js release that
 * changes it fails the build here rather than at run time.
 */
export class TlsChannelCredentials extends ChannelCredentials {
  /**
   * From PEM: the roots to trust (only those), and the client certificate and key for mTLS.
   * Roots that hold no certificate are refused: Node reads an empty `ca` as none given and
   * trusts its built-in store (Mozilla's roots, NODE_EXTRA_CA_CERTS) instead, so an empty
   * --root-cert would hand the token to any server with a public certificate for the name.
   */
  static fromPem(
    tls: { readonly rootsPem: string; readonly keyPem?: string; readonly certChainPem?: string },
    name: string,
  ): TlsChannelCredentials {
    const hasCertificate = (): boolean => {
      try {
        return pemBlocks(tls.rootsPem).some((b) => b.label === 'CERTIFICATE');
      } catch {
        return false; // not PEM at all (an empty file among them)
      }
    };
    if (!hasCertificate()) {
      throw new CastellanError(
        'malformed',
        'no root certificate in it: nothing to trust the CA with',
      );
    }
    const secureContext = createSecureContext({
      ca: tls.rootsPem,
      ...(tls.keyPem !== undefined && { key: tls.keyPem, cert: tls.certChainPem }),
    });
    return new TlsChannelCredentials(secureContext, name);
  }

  constructor(
    private readonly secureContext: SecureContext,
    /** What the certificate must name: a DNS name or an IP address. */
    private readonly name: string,
  ) {
    super();
  }

  _isSecure(): boolean {
    return true;
  }

  _equals(other: ChannelCredentials): boolean {
    return other === this;
  }

  _createSecureConnector(
    _target: unknown,
    _options: unknown,
    callCredentials?: CallCredentials,
  ): SecureConnector {
    const { secureContext, name } = this;
    return {
      connect: (socket: Socket) => tlsHandshake(socket, secureContext, name),
      waitForReady: () => Promise.resolve(),
      getCallCredentials: () => callCredentials ?? CallCredentials.createEmpty(),
      destroy: () => {},
    };
  }
}

/** The TLS handshake over `socket`: resolves once the peer is verified against `name`. */
function tlsHandshake(
  socket: Socket,
  secureContext: SecureContext,
  name: string,
): Promise<SecureConnectResult> {
  return new Promise((resolve, reject) => {
    const tlsSocket = connect(
      {
        socket,
        secureContext,
        ALPNProtocols: ['h2'],
        // No server name for an IP address (RFC 6066); Node checks the certificate against
        // `name` either way, through checkServerIdentity (IP SANs for an address).
        ...(isIP(name) === 0 && { servername: name }),
        checkServerIdentity: (_host: string, cert: PeerCertificate) =>
          checkServerIdentity(name, cert),
      },
      () => {
        if (!tlsSocket.authorized) {
          reject(tlsSocket.authorizationError);
          tlsSocket.destroy();
          return;
        }
        resolve({ socket: tlsSocket, secure: true });
      },
    );
    tlsSocket.on('error', reject);
  });
}
