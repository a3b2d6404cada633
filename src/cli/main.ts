#!/usr/bin/env node
// Must come first: @peculiar/x509 2.x relies on decorator metadata at load time.
import 'reflect-metadata';
import { Command, CommanderError } from 'commander';
import { isCastellanError } from '../errors.js';
import { registerCaCommands } from './commands/ca.js';
import { registerServeCommand } from './serve/command.js';
import { registerTokenCommand } from './commands/token.js';
import { registerRequestCommand } from './commands/request.js';
import { registerAgentCommand } from './commands/agent.js';
import { registerPolicyCommands } from './commands/policy.js';

export function buildProgram(): Command {
  const program = new Command('castellan')
    .description('A certificate authority and mesh identity service compatible with Istio')
    .showHelpAfterError()
    .exitOverride();
  registerCaCommands(program);
  registerServeCommand(program);
  registerTokenCommand(program);
  registerRequestCommand(program);
  registerAgentCommand(program);
  registerPolicyCommands(program);
  return program;
}

export async function main(argv: string[]): Promise<number> {
  const program = buildProgram();
  try {
    await program.parseAsync(argv, { from: 'user' });
    return typeof process.exitCode === 'number' ? process.exitCode : 0;
  } catch (e) {
    if (e instanceof CommanderError) {
      // Help and version exit 0; usage errors were already printed by commander.
      return e.exitCode;
    }
    if (isCastellanError(e)) {
      process.stderr.write(`castellan: ${e.message}\n`);
      return e.kind === 'invalid-argument' ? 2 : 1;
    }
    process.stderr.write(
      `castellan: unexpected error: ${e instanceof Error ? e.stack : String(e)}\n`,
    );
    return 1;
  }
}

const invokedDirectly =
  process.argv[1] !== undefined &&
  (import.meta.url === `file://${process.argv[1]}` ||
    process.argv[1].endsWith('/bin/castellan.js') ||
    process.argv[1].endsWith('/castellan'));
if (invokedDirectly) {
  main(process.argv.slice(2)).then(
    (code) => {
      process.exitCode = code;
    },
    (e: unknown) => {
      process.stderr.write(`castellan: ${String(e)}\n`);
      process.exitCode = 1;
    },
  );
}
