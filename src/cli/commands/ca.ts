import { createHash } from 'node:crypto';
import { chmod, mkdir, readFile } from 'node:fs/promises';
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
import { buildKeyCertBundle, certificatePem, parseCertificates } from '../../ca/bundle.js';
import { NOT_BEFORE_BACKDATE_MS } from '../../ca/issue-workload.js';
import { loadCacertsFolder } from '../../ca/sources/folder.js';
import { issueCertificate } from '../../pki/issue.js';
import { CA_KEY_TYPES, isCaKeyType, type CaKeyType } from '../../pki/key-type.js';
import { generateKeyPair, keyTypeOf, parsePrivateKeyPem, privateKeyToPem } from '../../pki/keys.js';
import { durationArg } from '../options.js';

/**
 * Defaults: a root is long-lived and rarely signs, so it gets the strongest widely supported
 * key (RSA-4096, as Istio's tools/certs makes); an intermediate signs every workload leaf, so
 * it defaults to ECDSA P-256 (fast signing, small chains).
 */
const DEFAULT_ROOT_KEY: CaKeyType = 'rsa-4096';
const DEFAULT_INTERMEDIATE_KEY: CaKeyType = 'ec-p256';

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
    throw new CastellanError('invalid-argument', `cannot read ${path}: ${(e as Error).message}`);
  }
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

export function registerCaCommands(program: Command): void {
  const ca = program
    .command('ca')
    .description('Make and check CA material (roots, intermediates, cacerts folders)');

  ca.command('root')
    .description('Create a self-signed root: DIR/root-cert.pem and DIR/root-key.pem (0600)')
    .requiredOption('--out <dir>', 'output folder')
    .option('--key-type <type>', CA_KEY_TYPES.join(' | '), keyTypeArg, DEFAULT_ROOT_KEY)
    .option('--org <O>', 'subject organization', 'Castellan')
    .option('--cn <CN>', 'subject common name', 'Root CA')
    .option('--ttl <duration>', 'validity', durationArg, durationArg('87600h'))
    .action(
      async (o: { out: string; keyType: CaKeyType; org: string; cn: string; ttl: number }) => {
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
        await mkdir(o.out, { recursive: true });
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
    .option('--name <name>', 'cluster name (subject L=)', 'cluster1')
    .option('--org <O>', 'subject organization', 'Castellan')
    .option('--key-type <type>', CA_KEY_TYPES.join(' | '), keyTypeArg, DEFAULT_INTERMEDIATE_KEY)
    .option('--ttl <duration>', 'validity', durationArg, durationArg('8760h'))
    .action(
      async (o: {
        rootDir: string;
        out: string;
        name: string;
        org: string;
        keyType: CaKeyType;
        ttl: number;
      }) => {
        const rootCertFile = join(o.rootDir, 'root-cert.pem');
        const rootKeyFile = join(o.rootDir, 'root-key.pem');
        const rootPem = await readText(rootCertFile);
        const rootKeyPem = await readText(rootKeyFile);
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
        const { privateKey } = await generateKeyPair(o.keyType);
        const now = systemClock.now();
        const notAfter = Math.min(now + o.ttl, rootBundle.signingCert.notAfter.getTime());
        const cert = await issueCertificate({
          profile: {
            kind: 'intermediate',
            subject: [
              ['O', o.org],
              ['CN', 'Intermediate CA'],
              ['L', o.name],
            ],
          },
          publicKey: privateKey,
          issuer: { cert: rootBundle.signingCert, key: rootBundle.signingKey },
          notBefore: new Date(now - NOT_BEFORE_BACKDATE_MS),
          notAfter: new Date(notAfter),
        });
        const certPem = certificatePem(cert);
        await mkdir(o.out, { recursive: true });
        await writeFileAtomic(join(o.out, 'ca-key.pem'), privateKeyToPem(privateKey), 0o600);
        await chmod(join(o.out, 'ca-key.pem'), 0o600);
        await writeFileAtomic(join(o.out, 'ca-cert.pem'), certPem);
        await writeFileAtomic(join(o.out, 'cert-chain.pem'), certPem + rootBundle.rootBundlePem);
        await writeFileAtomic(join(o.out, 'root-cert.pem'), rootBundle.rootBundlePem);
        process.stdout.write(
          `wrote ca-cert.pem, ca-key.pem, cert-chain.pem, root-cert.pem to ${o.out} (${o.keyType}, "${cert.subject}", valid until ${cert.notAfter.toISOString()})\n`,
        );
      },
    );

  ca.command('check')
    .description('Check that a folder is usable as a plugged-in CA')
    .requiredOption('--cacerts-dir <dir>', 'folder in Istio cacerts or kubernetes.io/tls layout')
    .action(async (o: { cacertsDir: string }) => {
      const bundle = await loadCacertsFolder(o.cacertsDir, systemClock);
      if (!bundle) {
        throw new CastellanError(
          'incomplete-ca',
          'no CA files found (expected ca-cert.pem, ca-key.pem, cert-chain.pem, root-cert.pem or tls.crt, tls.key, ca.crt)',
          { subject: o.cacertsDir },
        );
      }
      const left =
        Math.floor((bundle.signingCert.notAfter.getTime() - systemClock.now()) / 1000) * 1000;
      const lines = [
        `OK: ${o.cacertsDir} is usable as a plugged-in CA`,
        `signing certificate: "${bundle.signingCert.subject}" (${bundle.signingKeyType}), expires ${bundle.signingCert.notAfter.toISOString()} (in ${formatDuration(left)})`,
        `chain: ${[...bundle.certChain.map((c) => `"${c.subject}"`), ...bundle.roots.map((r) => `root "${r.subject}"`)].join(' -> ')}`,
        ...bundle.roots.map(
          (r) => `root: "${r.subject}" (${keyDescription(r)}), expires ${r.notAfter.toISOString()}`,
        ),
      ];
      process.stdout.write(lines.join('\n') + '\n');
    });

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
