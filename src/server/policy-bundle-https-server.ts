import { createServer, type Server } from 'node:https';
import type { AddressInfo } from 'node:net';
import { CastellanError } from '../errors.js';
import type { Logger } from '../log.js';
import { silentLogger } from '../log.js';
import { formatHostPort, type HostPort } from '../address.js';
import { listenOn } from './listen.js';
import { handleBundleHttp, type PolicyBundleServingOptions } from './policy-bundle-service.js';
import type { ServingCertificateManager } from './serving-certificate.js';

/**
 * `GET /v1/bundles/<namespace>/<pod>` over HTTPS (`serve --bundle-addr`). grpc-js's server
 * speaks only HTTP/2 gRPC on the CA port, so plain HTTP clients get their own listener, with
 * the same serving certificate (swapped with it) and the same rule: the client certificate is
 * requested, and only a workload certificate of ours for that pod's identity gets the bundle.
 * TLS does not reject a missing or foreign certificate itself (that would be a handshake error,
 * not a 401): ClientCertAuthenticator verifies the chain against the current roots.
 */
export class BundleHttpsServer {
  private server: Server | undefined;
  private readonly log: Logger;
  private readonly onIdentity = (): void => this.refreshContext();

  constructor(
    private readonly options: PolicyBundleServingOptions & {
      readonly serving: ServingCertificateManager;
      readonly logger?: Logger;
    },
  ) {
    this.log = options.logger ?? silentLogger;
  }

  async listen(address: HostPort): Promise<HostPort> {
    const identity = this.options.serving.current();
    if (!identity) throw new CastellanError('unavailable', 'no serving certificate yet');
    const server = createServer(
      {
        cert: identity.certChainPem,
        key: identity.keyPem,
        requestCert: true,
        rejectUnauthorized: false,
        minVersion: 'TLSv1.2',
      },
      (req, res) => {
        if (!handleBundleHttp(this.options, req, res)) {
          res.writeHead(404, { 'content-type': 'text/plain' }).end('not found\n');
        }
      },
    );
    this.server = server;
    // Follow the serving certificate as the gRPC port does (CA rotation, renewal).
    this.options.serving.addIdentityCertificateListener(this.onIdentity);
    try {
      await listenOn(server, address, 'bundle address');
    } catch (e) {
      // A server that never listened must not stay subscribed to the serving certificate.
      this.options.serving.removeIdentityCertificateListener(this.onIdentity);
      this.server = undefined;
      throw e;
    }
    const port = (server.address() as AddressInfo).port;
    this.log.info(
      { address: formatHostPort({ host: address.host, port }) },
      'bundle HTTPS listening',
    );
    return { host: address.host, port };
  }

  private refreshContext(): void {
    const identity = this.options.serving.current();
    if (identity && this.server) {
      this.server.setSecureContext({ cert: identity.certChainPem, key: identity.keyPem });
    }
  }

  async close(): Promise<void> {
    this.options.serving.removeIdentityCertificateListener(this.onIdentity);
    const server = this.server;
    if (!server) return;
    this.server = undefined;
    server.closeIdleConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  }
}
