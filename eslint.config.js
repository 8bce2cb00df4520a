// Lint: the recommended rules of eslint and typescript-eslint, plus the layering of the README's
// "Code layout" as import restrictions (import-x/no-restricted-paths), so the house keeps its
// shape without anyone remembering the rule. Cycles are checked by `npm run cycles` (dpdm), which
// counts type-only imports too; import-x/no-cycle skips them.
import js from '@eslint/js';
import { defineConfig } from 'eslint/config';
import { createNodeResolver, importX } from 'eslint-plugin-import-x';
import globals from 'globals';
import tseslint from 'typescript-eslint';

const here = import.meta.dirname;

// Leaves: import nothing of ours (config.ts may import log.ts: it sets the level from LOG_LEVEL;
// repeated-failures.ts: the summaries' interval from LOG_REPEAT_SECONDS; and read-file.ts, the one
// bounded reader of a file read whole, as auth/ may).
const LEAVES = ['src/log.ts', 'src/errors.ts', 'src/metrics.ts', 'src/deadline.ts', 'src/gzip.ts', 'src/read-file.ts'];
// The use cases.
const USE_CASES = ['src/core'];
// The edges translate protocols into calls to the use cases; cli/ (and main.ts) start them all.
const EDGES = ['src/smtp', 'src/delivery', 'src/web', 'src/cache'];
const TOP = ['src/cli', 'src/main.ts'];

const zones = [
  ...LEAVES.map((target) => ({ target, from: 'src', message: 'The leaves (log, errors, metrics, deadline, gzip, read-file) import nothing of ours.' })),
  { target: 'src/config.ts', from: 'src', except: ['./log.ts', './read-file.ts', './repeated-failures.ts'], message: 'config imports only log (to set its level), read-file (its files, bounded) and repeated-failures (the summaries\' interval).' },
  { target: 'src/repeated-failures.ts', from: 'src', except: ['./log.ts'], message: 'repeated-failures.ts imports only log.' },
  { target: 'src/list-policies.ts', from: 'src', message: 'list-policies.ts (the values settings may take) imports nothing of ours.' },
  { target: 'src/auth', from: 'src', except: ['./auth', './errors.ts', './deadline.ts', './read-file.ts'], message: 'auth/ (secrets, and the protocols of outside identity providers) imports only errors, deadline and read-file.' },
  {
    target: ['src/db', 'src/mail'],
    from: [...USE_CASES, ...EDGES, ...TOP],
    message: 'db/ and mail/ sit below the use cases and the edges.',
  },
  { target: 'src/mail', from: 'src/db', message: 'mail/ is pure e-mail logic: no database.' },
  { target: USE_CASES, from: [...EDGES, ...TOP], message: 'The use cases do not know the edges that call them.' },
  ...EDGES.map((target) => ({
    target,
    from: [...EDGES.filter((e) => e !== target), ...TOP],
    message: 'The edges (smtp/, delivery/, web/, cache/) never import each other; cli/ and main.ts start them.',
  })),
  { target: 'src/cli', from: 'src/main.ts', message: 'main.ts is the entry point: nothing imports it.' },
];

export default defineConfig(
  { ignores: ['node_modules/', 'public/', 'views/', 'docs/', 'sql/'] },
  js.configs.recommended,
  tseslint.configs.recommended,
  {
    languageOptions: { globals: globals.node, ecmaVersion: 2022, sourceType: 'module' },
    plugins: { 'import-x': importX },
    settings: { 'import-x/resolver-next': [createNodeResolver()] },
    rules: {
      'import-x/no-restricted-paths': ['error', { basePath: here, zones }],
      // Mail and text code matches control characters on purpose (NUL, CR/LF, RFC 5322 ranges).
      'no-control-regex': 'off',
      // A leading underscore marks a parameter kept for its position (express's 4-argument error handler).
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_', caughtErrorsIgnorePattern: '^_' }],
    },
  },
);
