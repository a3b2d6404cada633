import { pino, type DestinationStream, type Logger, type LevelWithSilent } from 'pino';

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

/**
 * Where serve's lines go: stderr, through pino's sonic-boom destination, which writes
 * asynchronously (not process.stderr: to a pipe that is a synchronous write(2) per line on
 * Linux, on the request path — one audit line per certificate — and it blocks the event loop
 * whenever the reader falls behind) and is flushed synchronously when the process exits. It emits
 * 'error' when stderr fails (a closed pipe: EPIPE); serve stops on it (./cli/serve/signals.ts).
 */
export function createLogDestination(): ReturnType<typeof pino.destination> {
  return pino.destination({ dest: 2, sync: false });
}

export function createLogger(
  options: { level?: LevelWithSilent; name?: string; destination?: DestinationStream } = {},
): Logger {
  return pino(
    {
      name: options.name ?? 'castellan',
      level: options.level ?? 'info',
      redact: { paths: REDACT, censor: '[redacted]' },
      base: undefined,
      timestamp: pino.stdTimeFunctions.isoTime,
    },
    options.destination ?? createLogDestination(),
  );
}

/** A logger that drops everything, for tests and library callers that pass none. */
export const silentLogger: Logger = pino({ level: 'silent' });
