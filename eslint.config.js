// One linter for the whole tree, type-aware: typescript-eslint's strictTypeChecked set, so a
// floating promise, a non-exhaustive switch over an error kind or an unsafe `any` fails
// `npm test`. Type-aware rules need TypeScript 5.9 (TS 7 has no compiler API).
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
      'eslint.config.js',
    ],
  },
  js.configs.recommended,
  ...tseslint.configs.strictTypeChecked,
  {
    languageOptions: {
      parserOptions: { projectService: true, tsconfigRootDir: import.meta.dirname },
    },
    rules: {
      '@typescript-eslint/switch-exhaustiveness-check': [
        'error',
        { considerDefaultExhaustiveForUnions: true },
      ],
      '@typescript-eslint/consistent-type-imports': ['error', { fixStyle: 'inline-type-imports' }],
      '@typescript-eslint/no-floating-promises': [
        'error',
        {
          // node:test's test()/describe() return promises that the runner itself awaits.
          allowForKnownSafeCalls: [
            { from: 'package', package: 'node:test', name: ['test', 'describe', 'it', 'suite'] },
          ],
        },
      ],
      '@typescript-eslint/restrict-template-expressions': [
        'error',
        { allowNumber: true, allowBoolean: true },
      ],
      // `() => void work()` and `(x) => list.push(x)` as callbacks say what they mean.
      '@typescript-eslint/no-confusing-void-expression': ['error', { ignoreArrowShorthand: true }],
      '@typescript-eslint/no-unused-vars': [
        'error',
        { argsIgnorePattern: '^_', varsIgnorePattern: '^_', caughtErrorsIgnorePattern: '^_' },
      ],
      // @kubernetes/client-node's models are classes that its API takes as plain objects (its
      // own examples build them as literals): the rule would ask for `new V1Secret()` + mutation.
      '@typescript-eslint/no-unsafe-class-instance-assignment': 'off',
    },
  },
  {
    files: ['src/**/*.ts'],
    rules: {
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
      // A test states what it expects to exist; a failed `!` fails the test, as it should.
      '@typescript-eslint/no-non-null-assertion': 'off',
    },
  },
);
