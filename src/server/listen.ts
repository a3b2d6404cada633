import type { Server } from 'node:net';
import { formatHostPort, type HostPort } from '../address.js';
import { CastellanError } from '../errors.js';

/**
 * Listens on `address`; a failure to bind (port taken, address not ours) rejects with a message
 * naming the address and what it was for. The error listener is removed once listening, so it
 * never swallows a later error of the running server.
 */
export function listenOn(server: Server, address: HostPort, subject: string): Promise<void> {
  return new Promise((resolve, reject) => {
    const onError = (e: Error): void =>
      reject(
        new CastellanError(
          'internal',
          `cannot listen on ${formatHostPort(address)}: ${e.message}`,
          {
            subject,
          },
        ),
      );
    server.once('error', onError);
    server.listen(address.port, address.host, () => {
      server.off('error', onError);
      resolve();
    });
  });
}
