import type { Command } from 'commander';
import { DevTokenIssuer } from '../../authn/dev-token-issuer.js';
import { collect, durationOption } from '../options.js';

interface TokenOptions {
  namespace: string;
  serviceAccount: string;
  ttl: number;
  audience?: string[];
  dataDir: string;
}

/**
 * `castellan token`: prints a development token for a service account, signed by the data
 * dir's development issuer, which `castellan serve` trusts in local mode (no cluster).
 */
export function registerTokenCommand(program: Command): void {
  program
    .command('token')
    .description(
      'print a development service account token (local mode) that `castellan serve` accepts',
    )
    .requiredOption('--namespace <ns>', 'the service account namespace')
    .requiredOption('--service-account <sa>', 'the service account name')
    .addOption(durationOption('--ttl <duration>', 'token lifetime (e.g. 1h, 30m)', '1h'))
    .option('--audience <aud>', 'token audience (repeatable; default istio-ca)', collect)
    .option(
      '--data-dir <dir>',
      'data directory holding the issuer key (as for serve)',
      './.castellan',
    )
    .action(async (options: TokenOptions) => {
      const issuer = await DevTokenIssuer.open(options.dataDir);
      const token = await issuer.mintToken({
        namespace: options.namespace,
        serviceAccount: options.serviceAccount,
        ttlMs: options.ttl,
        audiences: options.audience,
      });
      process.stdout.write(`${token}\n`);
      if (issuer.created) {
        // A wrong --data-dir (or another folder) made a key no running serve trusts: its tokens
        // would only meet "request authenticate failure" there. Said on stderr, the token kept.
        process.stderr.write(
          `castellan token: no development issuer key was in ${options.dataDir}, so a new one was made: ` +
            `only a castellan serve started with --data-dir ${options.dataDir} accepts this token\n`,
        );
      }
    });
}
