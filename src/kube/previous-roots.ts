import type { CoreV1Api, V1Secret } from '@kubernetes/client-node';
import { certificatePem, parseCertificates } from '../ca/build-key-cert-bundle.js';
import { CastellanError } from '../errors.js';
import { decodeSecretData, ifExists, isApiStatus } from './client.js';

/**
 * Every root served since the operator last dropped old ones (the `cacerts` annotation
 * castellan.io/keep-previous-roots=false), kept in the API server so that every replica,
 * including one started after a root change, publishes the same union of old and new roots.
 */
export const PREVIOUS_ROOTS_SECRET = 'castellan-previous-roots';
export const PREVIOUS_ROOTS_KEY = 'roots.pem';

const MAX_CONFLICTS = 10;

/**
 * The certificates in a PEM text, one canonical PEM each, duplicates removed. A block that
 * does not parse is skipped: a hand-edited record must never block loading `cacerts`.
 */
function splitRootPems(text: string): string[] {
  const out: string[] = [];
  const blocks = text.match(/-----BEGIN CERTIFICATE-----[\s\S]*?-----END CERTIFICATE-----/g);
  for (const block of blocks ?? []) {
    try {
      for (const c of parseCertificates(block, PREVIOUS_ROOTS_KEY)) out.push(certificatePem(c));
    } catch {
      // Skipped (see above).
    }
  }
  return unique(out);
}

export function rootsFromSecret(secret: V1Secret): string[] {
  return splitRootPems(decodeSecretData(secret).get(PREVIOUS_ROOTS_KEY) ?? '');
}

export function unique(pems: readonly string[]): string[] {
  return pems.filter((p, i) => pems.indexOf(p) === i);
}

const sameSet = (a: readonly string[], b: readonly string[]): boolean =>
  a.length === b.length && a.every((p) => b.includes(p));

/**
 * Makes the Secret hold `desired(recorded)`, where `recorded` is what it holds now: created when
 * absent, replaced with its resourceVersion otherwise; on 409 (another replica wrote first) it
 * re-reads and asks `desired` again. `desired` returning undefined, or the same set, writes
 * nothing. Resolves to whether it wrote.
 */
export async function updatePreviousRoots(
  core: CoreV1Api,
  namespace: string,
  desired: (recorded: readonly string[]) => readonly string[] | undefined,
): Promise<boolean> {
  for (let attempt = 0; attempt < MAX_CONFLICTS; attempt++) {
    const current = await ifExists(() =>
      core.readNamespacedSecret({ name: PREVIOUS_ROOTS_SECRET, namespace }),
    );
    const recorded = current ? rootsFromSecret(current) : [];
    const next = desired(recorded);
    if (next === undefined || (current && sameSet(recorded, next))) return false;
    const body: V1Secret = {
      metadata: {
        name: PREVIOUS_ROOTS_SECRET,
        namespace,
        ...(current ? { resourceVersion: current.metadata?.resourceVersion } : {}),
      },
      type: 'Opaque',
      data: { [PREVIOUS_ROOTS_KEY]: Buffer.from(next.join('')).toString('base64') },
    };
    try {
      if (current) {
        await core.replaceNamespacedSecret({ name: PREVIOUS_ROOTS_SECRET, namespace, body });
      } else {
        await core.createNamespacedSecret({ namespace, body });
      }
      return true;
    } catch (e) {
      if (!isApiStatus(e, 409)) throw e;
    }
  }
  throw new CastellanError('unavailable', `still conflicting after ${MAX_CONFLICTS} attempts`, {
    subject: `secret ${namespace}/${PREVIOUS_ROOTS_SECRET}`,
  });
}
