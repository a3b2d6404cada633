#!/usr/bin/env node
// Must come first: @peculiar/x509 2.x relies on decorator metadata at load time.
import 'reflect-metadata';
import { Command, CommanderError } from 'commander';
import { isCastellanError } from '../errors.js';

/**
 * Each command's module, loaded only when that command runs: `castellan token` then starts
 * without the serving stack, gRPC or X.509 (each command imports what it needs), and only the
 * full help lists them all.
 */
const COMMANDS: Readonly<Record<string, () => Promise<(program: Command) => void>>> = {
  ca: async () => (await import('./commands/ca.js')).registerCaCommands,
  serve: async () => (await import('./serve/command.js')).registerServeCommand,
  token: async () => (await import('./commands/token.js')).registerTokenCommand,
  request: async () => (await import('./commands/request.js')).registerRequestCommand,
  agent: async () => (await import('./commands/agent.js')).registerAgentCommand,
  policy: async () => (await import('./commands/policy.js')).registerPolicyCommands,
};

/**
 * Commander's refusals of a command line (a value outside .choices(), a parser's refusal, an
 * unknown option or command, a missing value): usage errors, exit 2 as our own bad values
 * (docs/serve.md). Help and version exit 0; the bare help of a command that needs a subcommand
 * keeps commander's 1.
 */
const USAGE_ERRORS: ReadonlySet<string> = new Set([
  'commander.invalidArgument',
  'commander.unknownOption',
  'commander.unknownCommand',
  'commander.missingArgument',
  'commander.missingMandatoryOptionValue',
  'commander.optionMissingArgument',
  'commander.excessArguments',
  'commander.conflictingOption',
]);

/** The program with the command `argv` names, or with every command (help, a mistyped name). */
export async function buildProgram(argv: readonly string[]): Promise<Command> {
  // Set before any command is added: subcommands copy these settings when they are made.
  const program = new Command('castellan')
    .description('A certificate authority and mesh identity service compatible with Istio')
    .configureOutput({
      // `error: option '--x <v>' argument 'y' is invalid…` → `castellan: option …`, as ours.
      outputError: (text, write) => write(text.replace(/^error: /, 'castellan: ')),
    })
    .showHelpAfterError()
    .exitOverride();
  const named = argv.find((a) => !a.startsWith('-'));
  const load = named !== undefined ? COMMANDS[named] : undefined;
  for (const register of load ? [load] : Object.values(COMMANDS)) (await register())(program);
  return program;
}

export async function main(argv: string[]): Promise<number> {
  try {
    const program = await buildProgram(argv);
    await program.parseAsync(argv, { from: 'user' });
    return typeof process.exitCode === 'number' ? process.exitCode : 0;
  } catch (e) {
    if (e instanceof CommanderError) {
      // Already printed by commander (outputError above).
      return USAGE_ERRORS.has(e.code) ? 2 : e.exitCode;
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
