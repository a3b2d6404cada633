// One linter for the whole tree. Type-aware rules need TypeScript 5.9 (TS 7 has no compiler API).
import js from '@eslint/js';
import tseslint from 'typescript-eslint';

export default tseslint.config(
  {
    ignores: [
      'node_modules/',
      'dist/',
      '.castellan/',
      'charts/',
      'bin/',
      'scripts/',
      'test/**/*.py',
    ],
  },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    files: ['src/**/*.ts'],
    rules: {
      '@typescript-eslint/no-explicit-any': 'error',
      '@typescript-eslint/no-unused-vars': [
        'error',
        { argsIgnorePattern: '^_', varsIgnorePattern: '^_' },
      ],
      'no-console': 'error',
    },
  },
  {
    // Time and environment are parameters (src/clock.ts): only the clock and the composition
    // roots touch the process's timers, its wall clock and its environment: serve's
    // (src/cli/serve/command.ts, and worker-main.ts for a cluster worker) and each smaller
    // command's own (src/cli/commands/*.ts).
    files: ['src/**/*.ts'],
    ignores: [
      'src/clock.ts',
      'src/cli/serve/command.ts',
      'src/cli/serve/worker-main.ts',
      'src/cli/commands/*.ts',
    ],
    rules: {
      'no-restricted-globals': [
        'error',
        ...['setTimeout', 'setInterval', 'clearTimeout', 'clearInterval'].map((name) => ({
          name,
          message: 'Use the injected Clock (after, every, sleep, PeriodicTask) from src/clock.ts.',
        })),
      ],
      'no-restricted-properties': [
        'error',
        { object: 'Date', property: 'now', message: 'Use the injected Clock: clock.now().' },
        {
          object: 'process',
          property: 'env',
          message: 'Take the environment as a parameter; only the composition root reads it.',
        },
        ...['setTimeout', 'setInterval'].map((property) => ({
          object: 'globalThis',
          property,
          message: 'Use the injected Clock from src/clock.ts.',
        })),
      ],
      'no-restricted-syntax': [
        'error',
        {
          selector: "NewExpression[callee.name='Date'][arguments.length=0]",
          message: 'new Date() reads the wall clock: new Date(clock.now()).',
        },
      ],
      'no-restricted-imports': [
        'error',
        {
          paths: ['node:timers', 'timers', 'node:timers/promises', 'timers/promises'].map(
            (name) => ({
              name,
              message: 'Use the injected Clock (after, every, sleep) from src/clock.ts.',
            }),
          ),
        },
      ],
    },
  },
  {
    files: ['test/**/*.ts', 'bench/**/*.ts'],
    rules: {
      '@typescript-eslint/no-unused-vars': [
        'error',
        { argsIgnorePattern: '^_', varsIgnorePattern: '^_' },
      ],
      '@typescript-eslint/no-non-null-assertion': 'off',
    },
  },
);
