import { readFile } from 'node:fs/promises';
import { Option, type Command } from 'commander';
import { checkCertificateFolder, writeCertificateFiles } from '../../agent/atomic-files.js';
import { GrpcCaClient } from '../../agent/ca-client.js';
import { acceptIssuedChain } from '../../agent/issued-chain.js';
import { systemClock } from '../../clock.js';
import { CastellanError } from '../../errors.js';
import {
  createKeyAndCsr,
  WORKLOAD_KEY_TYPES,
  type WorkloadKeyType,
} from '../../pki/csr-builder.js';
import { durationOption, hostPortArg } from '../options.js';

/** Fails before any network traffic when a file the command needs is not readable. */
export async function requireReadable(file: string, flag: string): Promise<void> {
  try {
    await readFile(file);
  } catch (e) {
    throw new CastellanError(
      'invalid-argument',
      `cannot read ${file}: ${(e as NodeJS.ErrnoException).code ?? String(e)}`,
      { subject: flag, cause: e },
    );
  }
}

interface RequestOptions {
  addr: string;
  rootCert: string;
  tokenFile: string;
  out: string;
  keyType: WorkloadKeyType;
  ttl?: number;
  serverName?: string;
}

/** `castellan request`: one key, one CSR, one CreateCertificate call, three files. */
export function registerRequestCommand(program: Command): void {
  program
    .command('request')
    .description(
      'make a key and CSR, ask the CA for a certificate, and write cert-chain.pem, key.pem and root-cert.pem',
    )
    .requiredOption('--addr <host:port>', 'the CA gRPC address', hostPortArg)
    .requiredOption('--root-cert <file>', 'root(s) that sign the CA serving certificate')
    .requiredOption('--token-file <file>', 'bearer token to authenticate with')
    .requiredOption('--out <dir>', 'directory for cert-chain.pem, key.pem (0600), root-cert.pem')
    .addOption(
      new Option('--key-type <type>', 'key to generate')
        .choices(WORKLOAD_KEY_TYPES)
        .default('ec-p256'),
    )
    .addOption(
      durationOption('--ttl <duration>', 'requested lifetime (e.g. 1h); default: the CA default'),
    )
    .option('--server-name <name>', 'name to verify the CA certificate against, if not the host')
    .action(async (opts: RequestOptions) => {
      await requireReadable(opts.rootCert, '--root-cert');
      await requireReadable(opts.tokenFile, '--token-file');
      // Before the CA is asked: a folder of files castellan did not write is never written over.
      await checkCertificateFolder(opts.out, 'ours');
      const ca = new GrpcCaClient({
        address: opts.addr,
        rootCertFile: opts.rootCert,
        tokenFile: opts.tokenFile,
        serverName: opts.serverName,
        clock: systemClock,
      });
      const { keyPem, csrPem } = await createKeyAndCsr(opts.keyType);
      const chain = await ca.createCertificate({
        csrPem,
        validitySeconds: opts.ttl === undefined ? 0 : Math.ceil(opts.ttl / 1000),
      });
      const issued = acceptIssuedChain(chain, keyPem, await readFile(opts.rootCert, 'utf8'));
      await writeCertificateFiles(opts.out, issued, systemClock);
      process.stdout.write(
        `wrote ${opts.out}/cert-chain.pem, key.pem, root-cert.pem: ${issued.uris.join(', ') || '(no URI SAN)'}, ` +
          `serial ${issued.serialNumber}, expires ${new Date(issued.notAfter).toISOString()}\n`,
      );
    });
}
