import { KubeConfig } from '@kubernetes/client-node';
import type { FakeApiServer } from '../support/fake-apiserver/index.js';

/** A KubeConfig for the fake API server, as `--kubeconfig` would load it. */
export function kubeConfigFor(api: FakeApiServer, token?: string): KubeConfig {
  const kc = new KubeConfig();
  kc.loadFromString(api.kubeconfigYaml(token !== undefined ? { token } : {}));
  return kc;
}

/** Polls `check` until it returns something other than undefined/false. */
export async function waitFor<T>(
  check: () => T | undefined | false | Promise<T | undefined | false>,
  what: string,
  ms = 8000,
): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = await check();
    if (v !== undefined && v !== false) return v;
    if (Date.now() > deadline) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}
