import { test } from 'node:test';
import assert from 'node:assert/strict';
import { isCastellanError } from '../../src/errors.js';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { X509Certificate } from 'node:crypto';
import { acceptIssuedChain, acceptStoredCertificate } from '../../src/agent/issued-chain.js';
import { istioSampleCerts } from '../support/paths.js';

const read = (f: string) => readFileSync(join(istioSampleCerts, f), 'utf8');
const leaf = read('leaf-workload-foo-cert.pem');
const key = read('workload-foo-key.pem');
const intermediate = read('ca-cert.pem');
const root = read('root-cert.pem');
const altRoot = read('root-cert-alt.pem');

function kindIs(kind: string, message: RegExp) {
  return (e: unknown) => {
    assert.equal((e as { kind?: string }).kind, kind);
    assert.match((e as Error).message, message);
    return true;
  };
}

test("accepts istiod's layout (server.go): leaf, chain one per element, every root in ONE last element", () => {
  const issued = acceptIssuedChain([leaf, intermediate, root + altRoot], key, 'fallback');
  assert.equal(issued.rootCertPem, root.trim() + '\n' + altRoot.trim() + '\n');
  assert.equal(issued.certChainPem.match(/BEGIN CERTIFICATE/g)?.length, 4);
  assert.deepEqual(issued.uris, ['spiffe://trust-domain-foo/ns/foo/sa/foo']);
  assert.ok(issued.notAfter > issued.notBefore);
  // The intermediate may be signed by either root of the bundle, not only the first.
  assert.equal(
    acceptIssuedChain([leaf, intermediate, altRoot + root], key, '').rootCertPem,
    altRoot.trim() + '\n' + root.trim() + '\n',
  );
});

test('roots sent one per element (the layout before) and a root repeated in the chain (Istio #39001) join the trust bundle', () => {
  const oldLayout = acceptIssuedChain([leaf, intermediate, root, altRoot], key, '');
  assert.equal(oldLayout.rootCertPem, root.trim() + '\n' + altRoot.trim() + '\n');
  const repeated = acceptIssuedChain([leaf, intermediate, root, root + altRoot], key, '');
  assert.equal(repeated.rootCertPem, root.trim() + '\n' + altRoot.trim() + '\n');
  assert.equal(repeated.certChainPem.match(/BEGIN CERTIFICATE/g)?.length, 4, 'the root once');
});

test('without a root in the response, the configured root stands in', () => {
  const configured = root; // the --root-cert file's content
  assert.equal(acceptIssuedChain([leaf, intermediate], key, configured).rootCertPem, configured);
});

test('no root in the response and none readable: refused, never an empty root-cert.pem', () => {
  assert.throws(
    () => acceptIssuedChain([leaf, intermediate], key, ''),
    (e: unknown) => isCastellanError(e, 'malformed') && /no root certificate/.test(e.message),
  );
});

test('refuses a certificate for another key, a broken chain, and malformed elements', () => {
  assert.throws(
    () => acceptIssuedChain([leaf, intermediate, root], read('workload-bar-key.pem'), ''),
    kindIs('key-mismatch', /cert_chain\[0\]: the issued certificate is not for our key/),
  );
  assert.throws(
    () => acceptIssuedChain([leaf, read('ca-cert-alt.pem'), altRoot], key, ''),
    kindIs('chain-invalid', /cert_chain\[0\]: is not signed by cert_chain\[1\]/),
  );
  assert.throws(
    () => acceptIssuedChain([leaf, intermediate, altRoot], key, ''),
    kindIs('chain-invalid', /cert_chain\[1\]: is not signed by any of the 1 root\(s\)/),
  );
  assert.throws(
    () => acceptIssuedChain([leaf, 'garbage'], key, ''),
    kindIs(
      'malformed',
      /cert_chain\[1\]: holds 0 certificates, expected one or more \(the roots\)/,
    ),
  );
  assert.throws(
    () => acceptIssuedChain([leaf + intermediate], key, ''),
    kindIs('malformed', /cert_chain\[0\]: holds 2 certificates, expected exactly one/),
  );
  assert.throws(
    () => acceptIssuedChain([leaf, intermediate + root, root], key, ''),
    kindIs('malformed', /cert_chain\[1\]: holds 2 certificates, expected exactly one/),
  );
  assert.throws(
    () => acceptIssuedChain([], key, ''),
    kindIs('internal', /empty certificate chain/),
  );
});

test('stored files: usable pair accepted with its own root file, anything else ignored', () => {
  const stored = acceptStoredCertificate(leaf + intermediate + root, key, root);
  assert.equal(stored?.rootCertPem, root);
  assert.equal(acceptStoredCertificate(leaf, read('workload-bar-key.pem'), root), undefined);
  assert.equal(acceptStoredCertificate('', key, root), undefined);
});

test('the renewal schedule counts from when we got the certificate, not a backdated notBefore', () => {
  const nb = Date.parse(new X509Certificate(leaf).validFrom);
  const na = Date.parse(new X509Certificate(leaf).validTo);
  assert.equal(
    acceptIssuedChain([leaf, intermediate, root], key, '', nb + 5000).obtainedAt,
    nb + 5000,
  );
  assert.equal(acceptIssuedChain([leaf, intermediate, root], key, '', nb - 5000).obtainedAt, nb);
  assert.equal(acceptIssuedChain([leaf, intermediate, root], key, '', na + 5000).obtainedAt, na);
});
