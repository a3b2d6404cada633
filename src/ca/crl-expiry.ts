import type { Clock, Timer } from '../clock.js';
import type { X509Certificate } from '@peculiar/x509';
import type { CaCrl } from '../pki/crl.js';
import type { CaSnapshot, CaState } from './key-cert-bundle.js';

/**
 * Follows the CRL of the current CA (`ca-crl.pem`) and calls `onExpired` once for each CRL
 * whose nextUpdate has passed: when it is loaded already expired, or when its nextUpdate
 * comes while it is loaded. An expired CRL is still published (as istiod publishes the file it
 * is given); this is how the runtimes warn about it (a log line, an Event), beside the
 * castellan_ca_crl_expired gauge. Returns a function that stops following.
 */
export function followCrlExpiry(
  caState: CaState,
  clock: Clock,
  onExpired: (crl: CaCrl) => void,
): () => void {
  let timer: Timer | undefined;
  let reported: string | undefined;
  const report = (crl: CaCrl): void => {
    if (reported === crl.pem) return;
    reported = crl.pem;
    onExpired(crl);
  };
  const follow = (snapshot: CaSnapshot | undefined): void => {
    timer?.cancel();
    timer = undefined;
    const crl = snapshot?.bundle.crl;
    const nextUpdate = crl?.nextUpdate?.getTime();
    if (!crl || nextUpdate === undefined) return;
    const left = nextUpdate - clock.now();
    // Expired means nextUpdate < now, as pki/crl.ts (isCrlExpired) and the gauge count it.
    if (crl.expired || left < 0) report(crl);
    else timer = clock.after(left + 1, () => report(crl));
  };
  follow(caState.current());
  const unsubscribe = caState.onChange(follow);
  return () => {
    unsubscribe();
    timer?.cancel();
  };
}

/**
 * The command that renews the CRLs of `crl` due before `byMs` (epoch ms): `castellan ca crl
 * --ca-dir <caDir>`, plus `--root-dir` when one of them is the root's, which only the root's
 * key can sign (`ca crl` keeps a CRL it holds no key for as it was). `caDir` is a folder when the
 * caller knows it, or a placeholder.
 */
export function crlRenewalCommand(
  crl: CaCrl,
  caDir: string,
  byMs: number,
  /** The folder's own CA (its ca-cert.pem), whose key `--ca-dir` signs with. */
  signingCert: X509Certificate | undefined,
): string {
  const due = crl.crls.filter((c) => c.nextUpdate !== undefined && c.nextUpdate.getTime() < byMs);
  const root = due.find((c) => c.signer.subject === c.signer.issuer);
  const command = root
    ? `castellan ca crl --ca-dir ${caDir} --root-dir <the folder of "${root.signer.subject}", holding root-cert.pem and root-key.pem>`
    : `castellan ca crl --ca-dir ${caDir}`;
  // A CA between the folder's and the root (a three-level chain): only its own key signs its
  // CRL, and `ca crl` holds neither (it keeps that CRL as it was).
  const middle = signingCert ? due.filter((c) => c !== root && !c.signer.equal(signingCert)) : [];
  if (middle.length === 0) return command;
  const subjects = middle.map((c) => `"${c.signer.subject}"`).join(', ');
  return `${command}, and re-sign the CRL of ${subjects} with that CA's own key (castellan ca crl signs only with the folder's CA and the root)`;
}
