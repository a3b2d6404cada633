// No Docker engine runs here, so the Dockerfile is checked by reading it (stages, non-root user,
// production-only dependencies, entrypoint) and by rebuilding its runtime file layout in a temp
// dir — package.json, bin/, protos/, dist/src/ and only the production packages of the lock
// file — and running the entrypoint from there.
import { after, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { cpSync, existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { projectRoot } from '../support/paths.js';

interface Instruction {
  op: string;
  args: string;
}

interface Stage {
  from: string;
  name: string | undefined;
  instructions: Instruction[];
}

/** Splits a Dockerfile into stages of instructions (comments dropped, continuations joined). */
function parseDockerfile(text: string): { args: Map<string, string>; stages: Stage[] } {
  const logical: string[] = [];
  let current = '';
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    if (line.startsWith('#') || (line === '' && current === '')) continue;
    if (line.endsWith('\\')) {
      current += line.slice(0, -1) + ' ';
      continue;
    }
    logical.push((current + line).trim());
    current = '';
  }
  const args = new Map<string, string>();
  const stages: Stage[] = [];
  for (const line of logical) {
    if (line === '') continue;
    const m = /^(\S+)\s*(.*)$/.exec(line)!;
    const op = m[1]!.toUpperCase();
    const rest = m[2]!;
    if (op === 'ARG' && stages.length === 0) {
      const [k, v] = rest.split('=');
      args.set(k!, v ?? '');
      continue;
    }
    if (op === 'FROM') {
      const f = /^(\S+)(?:\s+AS\s+(\S+))?$/i.exec(rest)!;
      const image = f[1]!.replace(/^\$\{(\w+)\}$/, (_s, name: string) => args.get(name) ?? '');
      stages.push({ from: image, name: f[2], instructions: [] });
      continue;
    }
    assert.ok(stages.length > 0, `instruction before FROM: ${line}`);
    stages.at(-1)!.instructions.push({ op, args: rest });
  }
  return { args, stages };
}

const dockerfile = parseDockerfile(readFileSync(join(projectRoot, 'Dockerfile'), 'utf8'));
const [build, runtime] = dockerfile.stages;

describe('Dockerfile', () => {
  test('two stages on Node 24 bookworm-slim: build, then runtime', () => {
    assert.equal(dockerfile.stages.length, 2);
    assert.equal(build!.name, 'build');
    assert.equal(build!.from, 'node:24-bookworm-slim');
    assert.equal(runtime!.from, 'node:24-bookworm-slim');
  });

  test('build stage: npm ci, then the build, then prune of dev dependencies', () => {
    const runs = build!.instructions
      .filter((i) => i.op === 'RUN')
      .map((i) => i.args)
      .join(' && ');
    const ci = runs.indexOf('npm ci');
    const buildAt = runs.indexOf('npm run build');
    const prune = runs.indexOf('npm prune --omit=dev');
    assert.ok(ci >= 0 && buildAt > ci && prune > buildAt, `order in: ${runs}`);
  });

  test('runtime stage: only dist/, protos/, production node_modules, package.json and bin/', () => {
    const copies = runtime!.instructions.filter((i) => i.op === 'COPY' || i.op === 'ADD');
    assert.ok(copies.length > 0);
    const allowed = new Set([
      '/app/package.json',
      '/app/node_modules',
      '/app/dist/src',
      '/app/dist',
      '/app/protos',
      '/app/bin',
      '/app/native/build/Release/castellan_native.node',
    ]);
    for (const c of copies) {
      assert.equal(c.op, 'COPY', 'no ADD');
      const parts = c.args.split(/\s+/);
      assert.equal(parts[0], '--from=build', `copies from the build stage only: ${c.args}`);
      for (const src of parts.slice(1, -1)) assert.ok(allowed.has(src), `unexpected copy ${src}`);
    }
    assert.ok(
      !runtime!.instructions.some((i) => i.op === 'RUN' && /\bnpm\b/.test(i.args)),
      'no npm install in the runtime stage',
    );
    // node_modules is copied after the build stage pruned it.
    assert.ok(copies.some((c) => c.args.includes('/app/node_modules')));
  });

  test('runtime stage runs as the non-root uid 65532 from the start of the process', () => {
    const users = runtime!.instructions.filter((i) => i.op === 'USER');
    assert.equal(users.length, 1);
    const [uid, gid] = users[0]!.args.split(':');
    assert.equal(uid, '65532');
    assert.equal(gid, '65532');
    const userAt = runtime!.instructions.indexOf(users[0]!);
    assert.ok(
      runtime!.instructions.slice(userAt).every((i) => i.op !== 'RUN' && i.op !== 'COPY'),
      'USER comes after every COPY/RUN',
    );
  });

  test('entrypoint, default command and ports', () => {
    const one = (op: string): string => {
      const found = runtime!.instructions.filter((i) => i.op === op);
      assert.equal(found.length, 1, op);
      return found[0]!.args;
    };
    // The young generation held at 8 MB semi-spaces (Node 24's V8 would grow it to 64 MB).
    assert.deepEqual(JSON.parse(one('ENTRYPOINT')), [
      'node',
      '--max-semi-space-size=8',
      '/app/bin/castellan.js',
    ]);
    assert.deepEqual(JSON.parse(one('CMD')), ['serve', '--kube']);
    assert.deepEqual(one('EXPOSE').split(/\s+/).sort(), ['15012', '15014']);
    assert.equal(one('WORKDIR'), '/app');
  });

  test('.dockerignore keeps the host node_modules and dist out of the build context', () => {
    const lines = readFileSync(join(projectRoot, '.dockerignore'), 'utf8')
      .split('\n')
      .map((l) => l.trim())
      .filter((l) => l && !l.startsWith('#'));
    assert.equal(lines[0], '**', 'everything excluded first');
    const included = lines.filter((l) => l.startsWith('!')).map((l) => l.slice(1));
    assert.ok(!included.some((l) => /node_modules|dist|\.git|\.castellan|build\//.test(l)));
    // native/'s sources are all copied (a new one would be missing from the image otherwise).
    const copied = build!.instructions.filter((x) => x.op === 'COPY').map((x) => x.args);
    const sources = spawnSync('git', ['ls-files', 'native'], { cwd: projectRoot, encoding: 'utf8' })
      .stdout.split('\n')
      .filter(Boolean)
      .map((f) => f.slice('native/'.length));
    assert.ok(sources.length >= 2, `native/ sources from git: ${sources.join(', ')}`);
    for (const f of sources) {
      assert.ok(
        copied.some((a) => a.split(/\s+/).includes(`native/${f}`)),
        `native/${f} copied`,
      );
    }
    // Everything the build stage copies from the context is let back in.
    for (const i of build!.instructions.filter(
      (x) => x.op === 'COPY' && !x.args.startsWith('--'),
    )) {
      for (const src of i.args.split(/\s+/).slice(0, -1)) {
        assert.ok(
          included.includes(src) || included.includes(`${src}/**`),
          `${src} is in the build context`,
        );
      }
    }
  });
});

describe('the runtime layout works with production dependencies only', () => {
  const built = existsSync(join(projectRoot, 'dist', 'src', 'cli', 'main.js'));
  const dir = mkdtempSync(join(tmpdir(), 'castellan-image-'));
  after(() => rmSync(dir, { recursive: true, force: true }));

  test(
    'castellan --help runs from a copy of the image layout',
    { skip: built ? false : 'needs a build (npm run build) for dist/src' },
    () => {
      cpSync(join(projectRoot, 'package.json'), join(dir, 'package.json'));
      for (const d of ['bin', 'protos', join('dist', 'src')]) {
        cpSync(join(projectRoot, d), join(dir, d), { recursive: true });
      }
      // What `npm prune --omit=dev` keeps: the lock file's packages not marked dev.
      const lock = JSON.parse(readFileSync(join(projectRoot, 'package-lock.json'), 'utf8')) as {
        packages: Record<string, { dev?: boolean }>;
      };
      const prod = Object.entries(lock.packages)
        .filter(([path, meta]) => path.startsWith('node_modules/') && meta.dev !== true)
        .map(([path]) => path)
        .filter((path) => !path.slice('node_modules/'.length).includes('node_modules/'));
      const dev = Object.keys(lock.packages).filter((p) => lock.packages[p]!.dev === true);
      assert.ok(prod.length > 0 && dev.length > 0);
      // optional packages for other platforms are not installed
      const present = prod.filter((p) => existsSync(join(projectRoot, p)));
      // Hard links: fast, and the packages resolve from the temp dir, not the project. One cp
      // for all (--parents keeps each node_modules/… path): one process per package took 155.
      const res = spawnSync('cp', ['-al', '--parents', ...present, dir], { cwd: projectRoot });
      assert.equal(res.status, 0, String(res.stderr));
      assert.ok(!existsSync(join(dir, 'node_modules', 'typescript')), 'dev deps left out');
      // Node's flags as the image's ENTRYPOINT gives them.
      const run = spawnSync(
        process.execPath,
        ['--max-semi-space-size=8', join(dir, 'bin', 'castellan.js'), '--help'],
        {
          cwd: dir,
          encoding: 'utf8',
          timeout: 30_000,
        },
      );
      assert.equal(run.status, 0, run.stderr);
      assert.match(run.stdout, /Usage: castellan/);
      // The native P-256 check, where the image puts it, loads from there.
      const addon = join('native', 'build', 'Release', 'castellan_native.node');
      cpSync(join(projectRoot, addon), join(dir, addon));
      const loaded = spawnSync(
        process.execPath,
        [
          '--input-type=module',
          '-e',
          `const { NATIVE_P256 } = await import('./dist/src/pki/fast/native-p256.js');
           console.log(NATIVE_P256.reason ?? typeof NATIVE_P256.verify);`,
        ],
        { cwd: dir, encoding: 'utf8', timeout: 30_000 },
      );
      assert.equal(loaded.stdout.trim(), 'function', loaded.stderr);
    },
  );
});
