import { CastellanError } from './errors.js';

export interface HostPort {
  readonly host: string;
  readonly port: number;
}

/** Splits `HOST:PORT` or `[v6]:PORT` (port 0 = any free port, for tests). */
export function parseHostPort(value: string, what = 'address'): HostPort {
  const m = /^(?:\[([0-9a-fA-F:.]+)\]|([A-Za-z0-9.-]+)):(\d{1,5})$/.exec(value);
  const port = m ? Number(m[3]) : NaN;
  if (!m || port > 65535) {
    throw new CastellanError(
      'invalid-argument',
      `invalid ${what} "${value}": use HOST:PORT (e.g. 127.0.0.1:15012)`,
    );
  }
  return { host: (m[1] ?? m[2]) as string, port };
}

/** The form gRPC and URLs want: IPv6 hosts in brackets. */
export function formatHostPort({ host, port }: HostPort): string {
  return host.includes(':') ? `[${host}]:${port}` : `${host}:${port}`;
}
