import { createHash } from 'node:crypto';
import { chmod, mkdir, readFile, stat } from 'node:fs/promises';
import { join } from 'node:path';
import { InvalidArgumentError, type Command } from 'commander';
import {
  AuthorityKeyIdentifierExtension,
  BasicConstraintsExtension,
  ExtendedKeyUsageExtension,
  type Extension,
  KeyUsagesExtension,
  SubjectAlternativeNameExtension,
  SubjectKeyIdentifierExtension,
  type X509Certificate,
} from '@peculiar/x509';
import { writeFileAtomic } from '../../atomic-write.js';
import { systemClock } from '../../clock.js';
import { CastellanError } from '../../errors.js';
import { formatDuration } from '../../duration.js';
import {
  buildKeyCertBundle,
  certificatePem,
  parseCertificates,
  probeSigner,
} from '../../ca/build-key-cert-bundle.js';
import { NOT_BEFORE_BACKDATE_MS } from '../../ca/issue-workload.js';
import {
  bundleFromCacertsWithKeys,
  CA_CRL_FILE,
  CA_KEY_URI_FILE,
  CACERTS_FILE_NAMES,
  chainCas,
} from '../../ca/cacerts-layout.js';
import { KeyUriSigners } from '../../ca/signers/key-uri-signers.js';
import { generatePkcs11Key } from '../../ca/signers/pkcs11-keygen.js';
import { openPkcs11Signer, type Pkcs11Signer } from '../../ca/signers/pkcs11-signer.js';
import { parsePkcs11Uri } from '../../ca/signers/pkcs11-uri.js';
import type { CaSigner } from '../../pki/signer.js';
import { updateCaCrl, type Revocation } from '../../ca/crl-file.js';
import { crlRenewalCommand } from '../../ca/crl-expiry.js';
import { loadCacertsFolder, readCacertsFolder } from '../../ca/sources/folder.js';
import { formatSerial, type CaCrl } from '../../pki/crl.js';
import { issueCertificate } from '../../pki/issue.js';
import { checkCommonName } from '../../pki/profiles.js';
import { CA_KEY_TYPES, isCaKeyType, type CaKeyType } from '../../pki/key-type.js';
import { generateKeyPair, keyTypeOf, parsePrivateKeyPem, privateKeyToPem } from '../../pki/keys.js';
import { durationOption } from '../options.js';

/**
 * Defaults: a root is long-lived and rarely signs, so it gets the strongest widely supported
 * key (RSA-4096, as Istio's tools/certs makes); an intermediate signs every workload leaf, so
 * it defaults to ECDSA P-256 (fast signing, small chains).
 */
const DEFAULT_ROOT_KEY: CaKeyType = 'rsa-4096';
const DEFAULT_INTERMEDIATE_KEY: CaKeyType = 'ec-p256';

/** RFC 5280's bound on a CN (64 characters), checked before any key is made. */
function commonNameArg(value: string): string {
  if (value.trim() === '') throw new InvalidArgumentError('a common name must not be empty');
  try {
    return checkCommonName(value);
  } catch (e) {
    throw new InvalidArgumentError((e as Error).message);
  }
}

/**
 * A subject attribute's value: RFC 5280's upper bounds (ub-organization-name 64, ub-locality-name
 * 128), and never empty — `--org ''` wrote a zero-length organizationName, which RFC 5280 does
 * not allow (its DirectoryString is SIZE (1..ub)).
 */
function attributeArg(what: string, max: number): (value: string) => string {
  return (value) => {
    if (value.trim() === '') throw new InvalidArgumentError(`${what} must not be empty`);
    const length = Array.from(value).length;
    if (length > max) {
      throw new InvalidArgumentError(
        `${what} "${value}" is ${length} characters long; RFC 5280 allows at most ${max}`,
      );
    }
    return value;
  };
}
const orgArg = attributeArg('an organization', 64);

/**
 * A warning (on stderr, not a failure) for a private key file others may read: keys are 0600
 * (docs/serve.md), and ssh refuses a key that is not. Not refused, because a Secret mounted in
 * a pod is 0644 unless its defaultMode says otherwise, and no one else is in that container.
 */
async function warnIfKeyReadable(path: string): Promise<void> {
  const mode = await stat(path).then(
    (st) => st.mode & 0o777,
    () => undefined,
  );
  if (mode === undefined || (mode & 0o077) === 0) return;
  process.stderr.write(
    `castellan: warning: ${path} is readable by ${mode & 0o007 ? 'every user' : 'its group'} (mode ${mode.toString(8).padStart(4, '0')}): chmod 600 ${path}\n`,
  );
}

function keyTypeArg(value: string): CaKeyType {
  if (!isCaKeyType(value)) {
    throw new InvalidArgumentError(`"${value}" is not one of ${CA_KEY_TYPES.join(', ')}`);
  }
  return value;
}

async function readText(path: string): Promise<string> {
  try {
    return await readFile(path, 'utf8');
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    const why =
      code === 'ENOENT'
        ? 'no such file'
        : code === 'EISDIR'
          ? 'a folder, not a file'
          : code === 'EACCES'
            ? 'permission denied'
            : `cannot read: ${(e as Error).message}`;
    throw new CastellanError('invalid-argument', why, { subject: path });
  }
}

/** Commander collector for repeatable options. */
function collect(value: string, previous: string[]): string[] {
  return [...previous, value];
}

/**
 * The window before a CRL's nextUpdate in which `ca check` fails. A day: a CRL is re-signed by
 * hand here, so an operator needs a working day's notice. Vault rebuilds its CRLs on its own
 * 12h before they expire (auto_rebuild_grace_period, default 12h, with a 72h CRL expiry), and
 * a step-ca CRL lives 24h (crl.cacheDuration) in all; an operator of either who runs
 * `castellan ca check` from cron daily is warned at least one run before the CRL lapses.
 */
const DEFAULT_CRL_WARN_WITHIN = '24h';

/** Opens key URIs for one command; close() before the command returns. */
function tokenKeys(keyUri: string | undefined): {
  keyUri: string | undefined;
  signers: KeyUriSigners;
} {
  return {
    keyUri,
    signers: new KeyUriSigners({
      opener: (uri) => openPkcs11Signer({ uri, env: process.env, clock: systemClock }),
      clock: systemClock,
    }),
  };
}

/** `key: …` line of ca check: where the key is, and for a token key how it is protected. */
async function keyLine(signer: CaSigner, keyType: string): Promise<string> {
  const token = signer as Partial<Pkcs11Signer>;
  if (!token.keyAttributes) return `key: in a file (${keyType})`;
  const a = await token.keyAttributes();
  const protection = [
    a.sensitive ? 'sensitive' : 'NOT sensitive',
    a.extractable ? 'EXTRACTABLE' : 'not extractable',
    ...(a.neverExtractable ? ['never extractable'] : []),
  ].join(', ');
  return `key: ${signer.description} (${keyType}; ${protection}): a probe it signed verifies with the certificate's key`;
}

/** `--revoke` values: an existing file is a certificate file; anything else must be a serial. */
async function revocationOf(arg: string): Promise<Revocation> {
  const isFile = await stat(arg).then(
    (st) => st.isFile(),
    () => false,
  );
  if (isFile) {
    const certs = parseCertificates(await readText(arg), arg);
    // The first certificate: a leaf file, or a workload's cert-chain.pem (leaf first). Never
    // the CAs that follow it in a chain file.
    return { certificate: certs[0] as X509Certificate, file: arg };
  }
  if (/[/\\]|\.(pem|crt|cer)$/i.test(arg)) {
    throw new CastellanError('invalid-argument', 'no such certificate file', { subject: arg });
  }
  return { serial: arg };
}

function describeCrl(crl: CaCrl, now: number): string[] {
  return crl.crls.map((c) => {
    const next = c.nextUpdate
      ? `nextUpdate ${c.nextUpdate.toISOString()} (${c.nextUpdate.getTime() < now ? 'EXPIRED' : `in ${formatDuration(Math.floor((c.nextUpdate.getTime() - now) / 1000) * 1000)}`})`
      : 'no nextUpdate';
    return `crl: "${c.issuer}" number ${c.crlNumber ?? '(none)'}, ${c.entries.length} revoked, thisUpdate ${c.thisUpdate.toISOString()}, ${next}`;
  });
}

function keyDescription(cert: X509Certificate): string {
  const pub = cert.publicKey;
  const alg = pub.algorithm as { name: string; namedCurve?: string; modulusLength?: number };
  if (alg.namedCurve) return `ECDSA ${alg.namedCurve}`;
  if (alg.modulusLength) return `RSA ${alg.modulusLength}`;
  return alg.name;
}

function describe(cert: X509Certificate): Record<string, unknown> {
  return {
    subject: cert.subject,
    issuer: cert.issuer,
    serial: cert.serialNumber,
    key: keyDescription(cert),
    notBefore: cert.notBefore.toISOString(),
    notAfter: cert.notAfter.toISOString(),
    sha256Fingerprint: createHash('sha256')
      .update(new Uint8Array(cert.rawData))
      .digest('hex')
      .toUpperCase()
      .replace(/(..)(?!$)/g, '$1:'),
    sans: sansOf(cert),
    extensions: cert.extensions.map((e) => ({
      oid: e.type,
      name: EXTENSION_NAMES[e.type] ?? e.type,
      critical: e.critical,
      value: extensionText(e),
    })),
  };
}

const EXTENSION_NAMES: Record<string, string> = {
  '2.5.29.14': 'subjectKeyIdentifier',
  '2.5.29.15': 'keyUsage',
  '2.5.29.17': 'subjectAltName',
  '2.5.29.19': 'basicConstraints',
  '2.5.29.35': 'authorityKeyIdentifier',
  '2.5.29.37': 'extKeyUsage',
};
const KEY_USAGE_NAMES = [
  'digitalSignature',
  'nonRepudiation',
  'keyEncipherment',
  'dataEncipherment',
  'keyAgreement',
  'keyCertSign',
  'cRLSign',
  'encipherOnly',
  'decipherOnly',
];
const EKU_NAMES: Record<string, string> = {
  '1.3.6.1.5.5.7.3.1': 'serverAuth',
  '1.3.6.1.5.5.7.3.2': 'clientAuth',
};

function generalNames(names: { items: readonly { type: string; value: string }[] }): string[] {
  return names.items.map((n) => `${n.type === 'url' ? 'URI' : n.type.toUpperCase()}:${n.value}`);
}

function sansOf(cert: X509Certificate): string[] {
  const san = cert.getExtension(SubjectAlternativeNameExtension);
  return san ? generalNames(san.names) : [];
}

/** A one-line reading of the extensions we make; others show their DER as hex. */
function extensionText(e: Extension): string {
  if (e instanceof SubjectKeyIdentifierExtension) return e.keyId.toUpperCase();
  if (e instanceof AuthorityKeyIdentifierExtension) return (e.keyId ?? '').toUpperCase();
  if (e instanceof BasicConstraintsExtension) {
    return `CA:${e.ca ? 'TRUE' : 'FALSE'}${e.pathLength !== undefined ? `, pathlen:${e.pathLength}` : ''}`;
  }
  if (e instanceof KeyUsagesExtension) {
    return KEY_USAGE_NAMES.filter((_, i) => (e.usages & (1 << i)) !== 0).join(', ');
  }
  if (e instanceof ExtendedKeyUsageExtension) {
    return e.usages.map((u) => EKU_NAMES[String(u)] ?? String(u)).join(', ');
  }
  if (e instanceof SubjectAlternativeNameExtension) return generalNames(e.names).join(', ');
  return Buffer.from(e.value).toString('hex');
}

/**
 * Refuses, before any key is made, to write into a folder that already holds one of `files`: a
 * CA key replaced by mistake is a CA lost (its certificates, its CRL), and the commands are run
 * once, offline (README). `step certificate create` refuses the same way unless forced; here
 * the way out is another --out, or moving the old files away deliberately.
 */
async function refuseToReplace(
  dir: string,
  files: readonly string[],
  command: string,
): Promise<void> {
  const present: string[] = [];
  for (const f of files) {
    if (
      await stat(join(dir, f)).then(
        () => true,
        () => false,
      )
    )
      present.push(f);
  }
  if (present.length > 0) {
    throw new CastellanError(
      'invalid-argument',
      `${command} would replace ${present.join(', ')} here: refusing (choose another --out, or move them away first)`,
      { subject: dir },
    );
  }
}

export function registerCaCommands(program: Command): void {
  const ca = program
    .command('ca')
    .description('Make and check CA material (roots, intermediates, cacerts folders)');

  ca.command('root')
    .description('Create a self-signed root: DIR/root-cert.pem and DIR/root-key.pem (0600)')
    .requiredOption('--out <dir>', 'output folder')
    .option('--key-type <type>', CA_KEY_TYPES.join(' | '), keyTypeArg, DEFAULT_ROOT_KEY)
    .option('--org <O>', 'subject organization (at most 64 characters)', orgArg, 'Castellan')
    .option('--cn <CN>', 'subject common name (at most 64 characters)', commonNameArg, 'Root CA')
    .addOption(durationOption('--ttl <duration>', 'validity', '87600h'))
    .action(
      async (o: { out: string; keyType: CaKeyType; org: string; cn: string; ttl: number }) => {
        await refuseToReplace(o.out, ['root-key.pem', 'root-cert.pem'], 'ca root');
        const { privateKey } = await generateKeyPair(o.keyType);
        const now = systemClock.now();
        const root = await issueCertificate({
          profile: {
            kind: 'root',
            subject: [
              ['O', o.org],
              ['CN', o.cn],
            ],
          },
          publicKey: privateKey,
          selfKey: privateKey,
          notBefore: new Date(now - NOT_BEFORE_BACKDATE_MS),
          notAfter: new Date(now + o.ttl),
        });
        // 0700: it holds a CA key (the key itself is 0600 whatever the umask).
        await mkdir(o.out, { recursive: true, mode: 0o700 });
        await writeFileAtomic(join(o.out, 'root-key.pem'), privateKeyToPem(privateKey), 0o600);
        await chmod(join(o.out, 'root-key.pem'), 0o600);
        await writeFileAtomic(join(o.out, 'root-cert.pem'), certificatePem(root));
        process.stdout.write(
          `wrote ${join(o.out, 'root-cert.pem')} and ${join(o.out, 'root-key.pem')} (${o.keyType}, "${root.subject}", valid until ${root.notAfter.toISOString()})\n`,
        );
      },
    );

  ca.command('intermediate')
    .description('Create an intermediate CA under a root: DIR2 gets the four cacerts files')
    .requiredOption('--root-dir <dir>', 'folder holding root-cert.pem and root-key.pem')
    .requiredOption('--out <dir>', 'output folder')
    .option(
      '--name <name>',
      'cluster name (subject L=, at most 128 characters)',
      attributeArg('a cluster name', 128),
      'cluster1',
    )
    .option('--org <O>', 'subject organization (at most 64 characters)', orgArg, 'Castellan')
    .option('--key-type <type>', CA_KEY_TYPES.join(' | '), keyTypeArg, DEFAULT_INTERMEDIATE_KEY)
    .addOption(durationOption('--ttl <duration>', 'validity', '8760h'))
    .option(
      '--key-uri <pkcs11-uri>',
      'make the key inside this PKCS#11 token (non-extractable) instead of ca-key.pem: pkcs11:token=…;object=…?module-path=…&pin-source=file:… (docs/hsm.md)',
    )
    .action(
      async (o: {
        rootDir: string;
        out: string;
        name: string;
        org: string;
        keyType: CaKeyType;
        ttl: number;
        keyUri?: string;
      }) => {
        // Every file a cacerts folder may hold, in either layout, the CRL and key URI included: a
        // CRL or URI left from the previous intermediate would not belong to the new one, and a
        // kubernetes.io/tls set (tls.crt) would win over the new files when served.
        await refuseToReplace(o.out, CACERTS_FILE_NAMES, 'ca intermediate');
        const rootCertFile = join(o.rootDir, 'root-cert.pem');
        const rootKeyFile = join(o.rootDir, 'root-key.pem');
        const rootPem = await readText(rootCertFile);
        const rootKeyPem = await readText(rootKeyFile);
        await warnIfKeyReadable(rootKeyFile);
        // Verifies the root pair as a CA (key matches, CA:TRUE, not expired) before using it.
        const rootBundle = buildKeyCertBundle(
          {
            certPem: rootPem,
            keyPem: rootKeyPem,
            rootPem,
            source: `root-dir:${o.rootDir}`,
            fileNames: { cert: rootCertFile, key: rootKeyFile, root: rootCertFile },
          },
          systemClock,
        );
        // The key: in the token (only its public half comes out), or a new in-process key.
        const uri = o.keyUri !== undefined ? parsePkcs11Uri(o.keyUri) : undefined;
        const privateKey = uri ? undefined : (await generateKeyPair(o.keyType)).privateKey;
        const publicKey = uri
          ? await generatePkcs11Key({ uri, keyType: o.keyType, env: process.env })
          : (privateKey as NonNullable<typeof privateKey>);
        const now = systemClock.now();
        const notAfter = Math.min(now + o.ttl, rootBundle.signingCert.notAfter.getTime());
        // A CA never outlives its issuer; said, not only shown by the date printed.
        const clamped =
          notAfter < now + o.ttl
            ? `castellan: note: --ttl would end on ${new Date(now + o.ttl).toISOString()}, after the root's notAfter: the intermediate ends with the root\n`
            : '';
        const cert = await issueCertificate({
          profile: {
            kind: 'intermediate',
            subject: [
              ['O', o.org],
              ['CN', 'Intermediate CA'],
              ['L', o.name],
            ],
          },
          publicKey,
          issuer: { cert: rootBundle.signingCert, key: rootBundle.signer },
          notBefore: new Date(now - NOT_BEFORE_BACKDATE_MS),
          notAfter: new Date(notAfter),
        });
        const certPem = certificatePem(cert);
        if (uri) {
          // The same check serve makes before it signs with the key: a probe verifies.
          const signer = await openPkcs11Signer({ uri, env: process.env, clock: systemClock });
          try {
            await probeSigner(signer, cert, 'the new certificate');
          } finally {
            await signer.close();
          }
        }
        // 0700: it holds a CA key (the key itself is 0600 whatever the umask).
        await mkdir(o.out, { recursive: true, mode: 0o700 });
        if (privateKey) {
          await writeFileAtomic(join(o.out, 'ca-key.pem'), privateKeyToPem(privateKey), 0o600);
          await chmod(join(o.out, 'ca-key.pem'), 0o600);
        }
        await writeFileAtomic(join(o.out, 'ca-cert.pem'), certPem);
        await writeFileAtomic(join(o.out, 'cert-chain.pem'), certPem + rootBundle.rootBundlePem);
        await writeFileAtomic(join(o.out, 'root-cert.pem'), rootBundle.rootBundlePem);
        process.stdout.write(
          uri
            ? `wrote ca-cert.pem, cert-chain.pem, root-cert.pem to ${o.out} (${o.keyType}, "${cert.subject}", valid until ${cert.notAfter.toISOString()})\n` +
                `key: made inside the token, sensitive and not extractable: ${uri.text}\n` +
                `serve with: castellan serve --cacerts-dir ${o.out} --ca-key-uri '${uri.text}' (or put the URI in ${join(o.out, CA_KEY_URI_FILE)})\n`
            : `wrote ca-cert.pem, ca-key.pem, cert-chain.pem, root-cert.pem to ${o.out} (${o.keyType}, "${cert.subject}", valid until ${cert.notAfter.toISOString()})\n`,
        );
        if (clamped) process.stderr.write(clamped);
      },
    );

  ca.command('check')
    .description('Check that a folder is usable as a plugged-in CA (and its ca-crl.pem, if any)')
    .requiredOption('--cacerts-dir <dir>', 'folder in Istio cacerts or kubernetes.io/tls layout')
    .addOption(
      durationOption(
        '--crl-warn-within <duration>',
        'fail when a CRL in ca-crl.pem expires within this window',
        DEFAULT_CRL_WARN_WITHIN,
      ),
    )
    .option(
      '--key-uri <pkcs11-uri>',
      "the CA key in a PKCS#11 token, as serve's --ca-key-uri (a folder may name it in ca-key.uri instead)",
    )
    .action(async (o: { cacertsDir: string; crlWarnWithin: number; keyUri?: string }) => {
      const keys = tokenKeys(o.keyUri);
      try {
        await checkCommand(o, keys);
      } finally {
        await keys.signers.close();
      }
    });

  async function checkCommand(
    o: { cacertsDir: string; crlWarnWithin: number },
    keys: ReturnType<typeof tokenKeys>,
  ): Promise<void> {
    const bundle = await loadCacertsFolder(o.cacertsDir, systemClock, keys);
    if (!bundle) {
      throw new CastellanError(
        'incomplete-ca',
        'no CA files found (expected ca-cert.pem, ca-key.pem, cert-chain.pem, root-cert.pem or tls.crt, tls.key, ca.crt)',
        { subject: o.cacertsDir },
      );
    }
    for (const key of ['ca-key.pem', 'tls.key']) await warnIfKeyReadable(join(o.cacertsDir, key));
    // Allowed (Istio's own alt sample set does it, by 49 s), but a leaf signed near the end of
    // the signing certificate would outlive the root its chain needs.
    // chainCas ends with the root the chain leads to, found by signature (old and new roots of
    // a rotation share their subject).
    const cas = chainCas(bundle);
    const rootEnd = (cas.at(-1) ?? bundle.signingCert).notAfter;
    for (const c of cas.filter((x) => x.notAfter > rootEnd)) {
      process.stderr.write(
        `castellan: warning: "${c.subject}" expires on ${c.notAfter.toISOString()}, after its root (${rootEnd.toISOString()}): what it signs after the root's end will not verify\n`,
      );
    }
    const now = systemClock.now();
    const left = Math.floor((bundle.signingCert.notAfter.getTime() - now) / 1000) * 1000;
    const lines = [
      `OK: ${o.cacertsDir} is usable as a plugged-in CA`,
      `signing certificate: "${bundle.signingCert.subject}" (${bundle.signingKeyType}), expires ${bundle.signingCert.notAfter.toISOString()} (in ${formatDuration(left)})`,
      await keyLine(bundle.signer, bundle.signingKeyType),
      `chain: ${[...bundle.certChain.map((c) => `"${c.subject}"`), ...bundle.roots.map((r) => `root "${r.subject}"`)].join(' -> ')}`,
      ...bundle.roots.map(
        (r) => `root: "${r.subject}" (${keyDescription(r)}), expires ${r.notAfter.toISOString()}`,
      ),
      ...(bundle.crl
        ? [
            `crl: ${join(o.cacertsDir, CA_CRL_FILE)} verified: ${bundle.crl.crls.length} CRL(s), ${bundle.crl.revokedCount} revoked in all`,
            ...describeCrl(bundle.crl, now),
          ]
        : [`crl: none (no ${CA_CRL_FILE})`]),
    ];
    const next = bundle.crl?.nextUpdate;
    const crlDue = bundle.crl && next && next.getTime() - now < o.crlWarnWithin;
    // Not "OK" when the check fails: a script reading stdout must not see success.
    if (crlDue) lines[0] = `NOT OK: ${o.cacertsDir} is a usable CA, but its ${CA_CRL_FILE} is due`;
    process.stdout.write(lines.join('\n') + '\n');
    if (crlDue) {
      const file = join(o.cacertsDir, CA_CRL_FILE);
      const renew = crlRenewalCommand(
        bundle.crl,
        o.cacertsDir,
        now + o.crlWarnWithin,
        bundle.signingCert,
      );
      throw new CastellanError(
        'expired',
        next.getTime() < now
          ? `the CRL expired on ${next.toISOString()} (nextUpdate; still published, but proxies checking it may refuse every peer): re-sign it with ${renew}`
          : `the CRL expires on ${next.toISOString()}, within ${formatDuration(o.crlWarnWithin)}: re-sign it with ${renew}`,
        { subject: file },
      );
    }
  }

  ca.command('crl')
    .description(
      'Create or extend DIR/ca-crl.pem, signed by the CA in DIR (CRL number incremented, entries kept)',
    )
    .requiredOption(
      '--ca-dir <dir>',
      'cacerts folder holding ca-cert.pem and ca-key.pem (e.g. made by ca intermediate)',
    )
    .option(
      '--revoke <file|serial>',
      'a certificate file (its first certificate) or a hex serial of the CA to revoke; repeatable',
      collect,
      [],
    )
    .option(
      '--root-dir <dir>',
      "the root's folder (root-cert.pem, root-key.pem, as ca root makes it): signs the root's CRL too, which every reader needs beside the CA's",
    )
    .addOption(durationOption('--next-update <duration>', 'validity of the new CRL(s)', '7d'))
    .option('--key-uri <pkcs11-uri>', "the CA key in a PKCS#11 token, as serve's --ca-key-uri")
    .action(
      async (o: {
        caDir: string;
        revoke: string[];
        rootDir?: string;
        nextUpdate: number;
        keyUri?: string;
      }) => {
        const keys = tokenKeys(o.keyUri);
        try {
          await crlCommand(o, keys);
        } finally {
          await keys.signers.close();
        }
      },
    );

  async function crlCommand(
    o: { caDir: string; revoke: string[]; rootDir?: string; nextUpdate: number },
    keys: ReturnType<typeof tokenKeys>,
  ): Promise<void> {
    const files = await readCacertsFolder(o.caDir);
    const existingPem = files.get(CA_CRL_FILE);
    files.delete(CA_CRL_FILE);
    // The CA alone: the CRL there now may be the very thing this command is to fix.
    const bundle = await bundleFromCacertsWithKeys(
      files,
      { source: `cacerts-dir:${o.caDir}`, where: o.caDir, readCrl: false, ...keys },
      systemClock,
    );
    if (!bundle) {
      throw new CastellanError(
        'incomplete-ca',
        'no CA files found (expected ca-cert.pem and ca-key.pem, with cert-chain.pem and root-cert.pem)',
        { subject: o.caDir },
      );
    }
    let root;
    if (o.rootDir) {
      const certFile = join(o.rootDir, 'root-cert.pem');
      const keyFile = join(o.rootDir, 'root-key.pem');
      const rootPem = await readText(certFile);
      const rootBundle = buildKeyCertBundle(
        {
          certPem: rootPem,
          keyPem: await readText(keyFile),
          rootPem,
          source: `root-dir:${o.rootDir}`,
          fileNames: { cert: certFile, key: keyFile, root: certFile },
        },
        systemClock,
      );
      root = { cert: rootBundle.signingCert, key: rootBundle.signer };
    }
    const revoke: Revocation[] = [];
    for (const r of o.revoke) revoke.push(await revocationOf(r));
    const now = new Date(systemClock.now());
    const file = join(o.caDir, CA_CRL_FILE);
    const result = await updateCaCrl({
      bundle,
      root,
      existingPem,
      file,
      revoke,
      now,
      nextUpdate: new Date(now.getTime() + o.nextUpdate),
    });
    await writeFileAtomic(file, result.pem);
    const lines = [`wrote ${file} (${result.crls.length} CRL(s))`];
    for (const c of result.crls) {
      lines.push(
        c.signed
          ? `  "${c.ca.subject}": CRL number ${c.crlNumber}, ${c.entries} revoked${c.added.length ? ` (added ${c.added.map(formatSerial).join(', ')})` : ''}, nextUpdate ${c.nextUpdate?.toISOString()}`
          : `  "${c.ca.subject}": kept as it was (CRL number ${c.crlNumber ?? '(none)'}, nextUpdate ${c.nextUpdate?.toISOString() ?? '(none)'}): no key for it here`,
      );
    }
    process.stdout.write(lines.join('\n') + '\n');
  }

  ca.command('inspect')
    .description('Summarize certificates (and keys) in PEM files')
    .argument('<file...>', 'PEM files')
    .option('--output <format>', 'text | json', 'text')
    .action(async (files: string[], o: { output: string }) => {
      if (o.output !== 'text' && o.output !== 'json') {
        throw new CastellanError(
          'invalid-argument',
          `--output must be text or json, not "${o.output}"`,
        );
      }
      const out: { file: string; certificates?: Record<string, unknown>[]; key?: string }[] = [];
      for (const file of files) {
        const text = await readText(file);
        if (/-----BEGIN [A-Z ]*PRIVATE KEY-----/.test(text)) {
          out.push({ file, key: keyTypeOf(parsePrivateKeyPem(text, file).key, file) });
        } else {
          out.push({ file, certificates: parseCertificates(text, file).map(describe) });
        }
      }
      if (o.output === 'json') {
        process.stdout.write(JSON.stringify(out, null, 2) + '\n');
        return;
      }
      for (const f of out) {
        if (f.key) {
          process.stdout.write(`${f.file}: private key ${f.key}\n`);
          continue;
        }
        for (const c of f.certificates ?? []) {
          process.stdout.write(`${f.file}:\n`);
          for (const k of [
            'subject',
            'issuer',
            'serial',
            'key',
            'notBefore',
            'notAfter',
            'sha256Fingerprint',
          ]) {
            process.stdout.write(`  ${k}: ${String(c[k])}\n`);
          }
          process.stdout.write(
            `  sans: ${(c['sans'] as string[]).join(', ') || '(none)'}\n  extensions:\n`,
          );
          for (const e of c['extensions'] as { name: string; critical: boolean; value: string }[]) {
            process.stdout.write(`    ${e.name}${e.critical ? ' (critical)' : ''}: ${e.value}\n`);
          }
        }
      }
    });
}
