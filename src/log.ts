import { pino, type Logger, type LevelWithSilent } from 'pino';

export type { Logger };

/**
 * Paths that may hold secrets. pino censors them wherever they appear, as a last line of
 * defence: code must still never put a token or a private key into a log call.
 */
const REDACT = [
  'token',
  'jwt',
  'authorization',
  'privateKey',
  'key',
  'keyPem',
  '*.token',
  '*.jwt',
  '*.authorization',
  '*.privateKey',
  '*.keyPem',
  'headers.authorization',
];

export function createLogger(
  options: { level?: LevelWithSilent; name?: string; destination?: NodeJS.WritableStream } = {},
): Logger {
  return pino(
    {
      name: options.name ?? 'castellan',
      level: options.level ?? 'info',
      redact: { paths: REDACT, censor: '[redacted]' },
      base: undefined,
      timestamp: pino.stdTimeFunctions.isoTime,
    },
    options.destination ?? process.stderr,
  );
}

/** A logger that drops everything, for tests and library callers that pass none. */
export const silentLogger: Logger = pino({ level: 'silent' });
