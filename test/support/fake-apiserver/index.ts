/**
 * An in-process kube-apiserver for tests (see server.ts). Typical use:
 *
 *   const api = await FakeApiServer.start({ namespaces: ['istio-system'] });
 *   const kubeconfig = api.writeKubeconfig(join(dir, 'kubeconfig'));   // for --kubeconfig
 *   const token = await api.issuer.issueToken({ namespace: 'app', serviceAccount: 'web',
 *                                               audiences: ['istio-ca'] });  // TokenReview-able
 *   api.putObject('secrets', 'istio-system', { metadata: { name: 'cacerts' }, data: {...} });
 *   api.count({ resource: 'tokenreviews' });   // API calls made, per verb/resource/user/code
 *   await api.stop(); ...; await api.start();   // outage, same port, state kept
 */
export { FakeApiServer } from './server.js';
