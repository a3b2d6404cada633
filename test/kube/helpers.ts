import { mkdtempSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { KubeConfig } from '@kubernetes/client-node';
import { createLogger, type Logger } from '../../src/log.js';
import { CACERTS_SECRET } from '../../src/kube/cacerts-secret-source.js';
import type { FakeApiServer } from '../support/fake-apiserver/index.js';
import { istioSampleCerts } from '../support/paths.js';
import { startServe, type ServeProcess } from '../server/support/serve-process.js';

/** A KubeConfig for the fake API server, as `--kubeconfig` would load it. */
export function kubeConfigFor(api: FakeApiServer, token?: string): KubeConfig {
  const kc = new KubeConfig();
  kc.loadFromString(api.kubeconfigYaml(token !== undefined ? { token } : {}));
  return kc;
}

/** One pino line as JSON: the message, the level and the fields of the call. */
export type LogLine = { readonly level: number; readonly msg: string } & Readonly<
  Record<string, unknown>
>;

/** A debug-level logger whose lines a test reads: how it sees what a component considered. */
export function capturingLogger(): { logger: Logger; lines: LogLine[] } {
  const lines: LogLine[] = [];
  const logger = createLogger({
    level: 'debug',
    destination: new Writable({
      write(chunk: Buffer, _encoding, done) {
        lines.push(JSON.parse(chunk.toString()) as LogLine);
        done();
      },
    }),
  });
  return { logger, lines };
}

/** A file of Istio's sample CA sets. */
export const sample = (file: string): string => readFileSync(join(istioSampleCerts, file), 'utf8');

/** Each sample set's root: `-alt-2` has none of its own, its chain ends at root-cert-alt.pem. */
const SAMPLE_ROOT = {
  '': 'root-cert.pem',
  '-alt': 'root-cert-alt.pem',
  '-alt-2': 'root-cert-alt.pem',
};

/** Istio's four `cacerts` files, as text (a type, not an interface: putCacerts takes a Record). */
export type CacertsFiles = Readonly<
  Record<'ca-cert.pem' | 'ca-key.pem' | 'cert-chain.pem' | 'root-cert.pem', string>
>;

/** The `cacerts` files of one sample set (`ca-cert<set>.pem`, ...). */
export function sampleCacerts(set: keyof typeof SAMPLE_ROOT): CacertsFiles {
  return {
    'ca-cert.pem': sample(`ca-cert${set}.pem`),
    'ca-key.pem': sample(`ca-key${set}.pem`),
    'cert-chain.pem': sample(`cert-chain${set}.pem`),
    'root-cert.pem': sample(SAMPLE_ROOT[set]),
  };
}

/** Creates or replaces Secret `cacerts` in `namespace`: these files (base64), these annotations. */
export function putCacerts(
  api: FakeApiServer,
  namespace: string,
  files: Readonly<Record<string, string>>,
  annotations?: Record<string, string>,
): void {
  api.putObject('secrets', namespace, {
    metadata: { name: CACERTS_SECRET, ...(annotations ? { annotations } : {}) },
    data: Object.fromEntries(
      Object.entries(files).map(([k, v]) => [k, Buffer.from(v).toString('base64')]),
    ),
  });
}

/**
 * `castellan serve --kube` against the fake API server as API user `token-<user>` (its own
 * kubeconfig and data dir under `dir`), logging warnings; `extra` flags after those.
 */
export function startKubeServe(
  api: FakeApiServer,
  dir: string,
  user: string,
  ...extra: string[]
): Promise<ServeProcess> {
  const kubeconfig = api.writeKubeconfig(join(dir, `kubeconfig-${user}`), {
    token: `token-${user}`,
  });
  return startServe([
    '--kube',
    '--kubeconfig',
    kubeconfig,
    '--data-dir',
    mkdtempSync(join(dir, 'data-')),
    '--log-level',
    'warn',
    ...extra,
  ]);
}
