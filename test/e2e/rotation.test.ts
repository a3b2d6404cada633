// End to end: the real `castellan serve` and `castellan agent`, short TTLs, and the CA changing
// under the agent: a restart, a self-signed root re-issued with the same key, and a plugged-in
// intermediate swapped for another under the same root. Every certificate the agent writes is
// checked with openssl (chain to the written root-cert.pem, key matches, fresh key).
// Needs a build: npx tsc -p tsconfig.json && node --test dist/test/e2e/rotation.test.js
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, execFileSync, type ChildProcess } from 'node:child_process';
import { createPrivateKey, createPublicKey, X509Certificate } from 'node:crypto';
import { copyFile, mkdir, mkdtemp, readFile, realpath, rm, writeFile } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { cliPath } from '../support/paths.js';

const TTL = '10s';
const children: ChildProcess[] = [];
let work = '';
after(async () => {
  for (const c of children) if (c.exitCode === null) c.kill('SIGKILL');
  if (work) await rm(work, { recursive: true, force: true });
});

function cli(args: string[], cwd: string): ChildProcess {
  const child = spawn(process.execPath, [cliPath, ...args], {
    cwd,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  children.push(child);
  return child;
}

async function startServe(
  port: number,
  extra: string[] = [],
): Promise<{ port: number; child: ChildProcess; log: string[] }> {
  const child = cli(
    [
      'serve',
      '--data-dir',
      join(work, 'data'),
      '--grpc-addr',
      `127.0.0.1:${port}`,
      '--monitoring-addr',
      '127.0.0.1:0',
      '--default-ttl',
      '1h',
      '--max-ttl',
      '1h',
      '--log-level',
      'warn',
      ...extra,
    ],
    work,
  );
  const log: string[] = [];
  child.stderr!.on('data', (d: Buffer) => log.push(d.toString()));
  const bound = await new Promise<number>((resolve, reject) => {
    let out = '';
    child.stdout!.on('data', (d: Buffer) => {
      out += d.toString();
      const m = /CA serving on 127\.0\.0\.1:(\d+)/.exec(out);
      if (m) resolve(Number(m[1]));
    });
    child.on('exit', (code) => reject(new Error(`serve exited ${code}: ${log.join('')}`)));
  });
  return { port: bound, child, log };
}

async function stopServe(child: ChildProcess): Promise<void> {
  const exited = new Promise((r) => child.on('exit', r));
  child.kill('SIGTERM');
  await exited;
}

function openssl(args: string[], input?: string): string {
  return execFileSync('openssl', args, {
    encoding: 'utf8',
    input,
    stdio: ['pipe', 'pipe', 'pipe'],
  });
}

interface Seen {
  serial: string;
  key: string;
  chainPem: string;
  rootPem: string;
  issuer: string;
  notAfter: number;
  seenAt: number;
}

/** Waits for `count` certificates not seen before, checking each as it appears. */
async function nextCertificates(
  outDir: string,
  seen: Set<string>,
  count: number,
  timeoutMs = 40_000,
): Promise<Seen[]> {
  const found: Seen[] = [];
  const deadline = Date.now() + timeoutMs;
  while (found.length < count) {
    assert.ok(Date.now() < deadline, `only ${found.length}/${count} new certificates in time`);
    await new Promise((r) => setTimeout(r, 100));
    if (!existsSync(join(outDir, '..data'))) continue;
    const base = await realpath(join(outDir, '..data')).catch(() => undefined);
    if (!base) continue;
    const [chainPem, key, rootPem] = await Promise.all(
      ['cert-chain.pem', 'key.pem', 'root-cert.pem'].map((f) => readFile(join(base, f), 'utf8')),
    ).catch(() => [undefined, undefined, undefined]);
    if (!chainPem || !key || !rootPem) continue;
    const leaf = new X509Certificate(chainPem);
    if (seen.has(leaf.serialNumber)) continue;
    seen.add(leaf.serialNumber);
    const spki = (k: ReturnType<typeof createPublicKey>) =>
      k.export({ type: 'spki', format: 'der' }).toString('hex');
    assert.equal(spki(leaf.publicKey), spki(createPublicKey(createPrivateKey(key))), 'key matches');
    await writeFile(join(work, 'check-root.pem'), rootPem);
    await writeFile(join(work, 'check-chain.pem'), chainPem);
    assert.match(
      openssl([
        'verify',
        '-CAfile',
        join(work, 'check-root.pem'),
        '-untrusted',
        join(work, 'check-chain.pem'),
        join(work, 'check-chain.pem'),
      ]),
      /: OK/,
    );
    found.push({
      serial: leaf.serialNumber,
      key,
      chainPem,
      rootPem,
      issuer: leaf.issuer,
      notAfter: Date.parse(leaf.validTo),
      seenAt: Date.now(),
    });
  }
  return found;
}

/** A root and two intermediates under it, made with openssl: the plugged-in CA sets. */
async function makePluggedSets(dir: string): Promise<{ a: string; b: string }> {
  await mkdir(dir, { recursive: true });
  const ext = join(dir, 'ca.ext');
  await writeFile(
    ext,
    'basicConstraints=critical,CA:TRUE\nkeyUsage=critical,keyCertSign,cRLSign\nsubjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid\n',
  );
  openssl([
    'req',
    '-x509',
    '-newkey',
    'ec',
    '-pkeyopt',
    'ec_paramgen_curve:P-256',
    '-nodes',
    '-keyout',
    join(dir, 'root-key.pem'),
    '-out',
    join(dir, 'root-cert.pem'),
    '-days',
    '30',
    '-subj',
    '/O=castellan e2e/CN=e2e root',
    '-addext',
    'basicConstraints=critical,CA:TRUE',
    '-addext',
    'keyUsage=critical,keyCertSign,cRLSign',
  ]);
  const sets: string[] = [];
  for (const name of ['a', 'b']) {
    const set = join(dir, name);
    await mkdir(set);
    openssl([
      'req',
      '-new',
      '-newkey',
      'ec',
      '-pkeyopt',
      'ec_paramgen_curve:P-256',
      '-nodes',
      '-keyout',
      join(set, 'ca-key.pem'),
      '-out',
      join(set, 'ca.csr'),
      '-subj',
      `/O=castellan e2e/CN=intermediate ${name}`,
    ]);
    openssl([
      'x509',
      '-req',
      '-in',
      join(set, 'ca.csr'),
      '-CA',
      join(dir, 'root-cert.pem'),
      '-CAkey',
      join(dir, 'root-key.pem'),
      '-set_serial',
      name === 'a' ? '0x1a' : '0x1b',
      '-days',
      '30',
      '-extfile',
      ext,
      '-out',
      join(set, 'ca-cert.pem'),
    ]);
    const root = await readFile(join(dir, 'root-cert.pem'), 'utf8');
    await writeFile(
      join(set, 'cert-chain.pem'),
      (await readFile(join(set, 'ca-cert.pem'), 'utf8')) + root,
    );
    await writeFile(join(set, 'root-cert.pem'), root);
    await rm(join(set, 'ca.csr'));
    sets.push(set);
  }
  return { a: sets[0]!, b: sets[1]! };
}

async function useSet(from: string, to: string): Promise<void> {
  await mkdir(to, { recursive: true });
  for (const f of ['ca-cert.pem', 'ca-key.pem', 'cert-chain.pem', 'root-cert.pem'])
    await copyFile(join(from, f), join(to, f));
}

test(
  'the agent keeps fresh certificates across a restart, a re-issued root and a swapped intermediate',
  { timeout: 150_000 },
  async () => {
    work = await mkdtemp(join(tmpdir(), 'castellan-e2e-'));
    const data = join(work, 'data');
    const out = join(work, 'out');
    let serve = await startServe(0);
    const port = serve.port;
    execFileSync(
      process.execPath,
      [cliPath, 'token', '--namespace', 'e2e', '--service-account', 'web', '--data-dir', data],
      { cwd: work, stdio: ['ignore', 'pipe', 'pipe'] },
    );
    const token = execFileSync(
      process.execPath,
      [cliPath, 'token', '--namespace', 'e2e', '--service-account', 'web', '--data-dir', data],
      { cwd: work, encoding: 'utf8' },
    );
    await writeFile(join(work, 'token'), token);

    const agent = cli(
      [
        'agent',
        '--ca-addr',
        `127.0.0.1:${port}`,
        '--root-cert',
        join(data, 'root-cert.pem'),
        '--out-dir',
        out,
        '--token-file',
        join(work, 'token'),
        '--ttl',
        TTL,
        '--retry-initial',
        '200ms',
        '--retry-max',
        '1s',
        '--monitoring-addr',
        '127.0.0.1:0',
        '--exec',
        `echo written >> ${join(work, 'exec.log')}`,
      ],
      work,
    );
    const agentLog: string[] = [];
    agent.stderr!.on('data', (d: Buffer) => agentLog.push(d.toString()));
    const seen = new Set<string>();
    const keys = new Set<string>();
    const take = async (n: number) => {
      const certs = await nextCertificates(out, seen, n);
      for (const c of certs) keys.add(c.key);
      return certs;
    };

    // 1. Self-signed root in the data dir: at least two renewals.
    const first = await take(3);
    const selfSignedRoot = first[0]!.rootPem;
    assert.ok(first.every((c) => c.rootPem === selfSignedRoot));

    // 2. Server restart (same data dir, same port): the agent rides it out and renews again.
    // Down for longer than a renewal interval: the agent keeps its certificate and retries.
    await stopServe(serve.child);
    const heldDuringOutage = first.at(-1)!;
    await new Promise((r) => setTimeout(r, 6000));
    assert.match(agentLog.join(''), /"kind":"unavailable".*keeping the current certificate/);
    const onDisk = await readFile(join(out, 'cert-chain.pem'), 'utf8');
    assert.equal(new X509Certificate(onDisk).serialNumber, heldDuringOutage.serial);
    serve = await startServe(port);
    const afterRestart = await take(2);
    assert.ok(
      afterRestart.every((c) => c.rootPem === selfSignedRoot),
      'same root after restart',
    );

    // 3. The self-signed root re-issued with the same key (new validity, new serial).
    await stopServe(serve.child);
    const caCert = join(data, 'ca-cert.pem');
    openssl([
      'x509',
      '-in',
      caCert,
      '-key',
      join(data, 'ca-key.pem'),
      '-set_serial',
      '0x5eed',
      '-days',
      '60',
      '-out',
      join(work, 'reissued.pem'),
    ]);
    await copyFile(join(work, 'reissued.pem'), caCert);
    serve = await startServe(port);
    const reissued = await take(2);
    const newRoot = reissued.at(-1)!.rootPem;
    assert.notEqual(newRoot, selfSignedRoot, 'root-cert.pem follows the re-issued root');
    assert.equal(new X509Certificate(newRoot).serialNumber.replace(/^0+/, ''), '5EED');
    assert.equal(
      new X509Certificate(newRoot).publicKey
        .export({ type: 'spki', format: 'der' })
        .toString('hex'),
      new X509Certificate(selfSignedRoot).publicKey
        .export({ type: 'spki', format: 'der' })
        .toString('hex'),
    );

    // 4. A plugged-in intermediate, then another under the same root.
    const sets = await makePluggedSets(join(work, 'plugged'));
    const cacerts = join(work, 'cacerts');
    await useSet(sets.a, cacerts);
    await stopServe(serve.child);
    serve = await startServe(port, ['--cacerts-dir', cacerts]);
    const underA = await take(2);
    assert.ok(
      underA.every((c) => /CN=intermediate a/.test(c.issuer)),
      underA.map((c) => c.issuer).join(),
    );
    // Swapped under the running server: serve re-reads --cacerts-dir and swaps the verified
    // set in place (a half-copied set is refused and re-read on the next poll).
    const pidBeforeSwap = serve.child.pid;
    await useSet(sets.b, cacerts);
    const underB = await take(2);
    assert.equal(serve.child.pid, pidBeforeSwap, 'no restart for the intermediate swap');
    assert.equal(serve.child.exitCode, null, 'serve kept running through the swap');
    assert.ok(underB.every((c) => /CN=intermediate b/.test(c.issuer)));
    // Earlier certificates (under A) were still valid when the first one under B arrived.
    const lastA = underA.at(-1)!;
    const firstB = underB[0]!;
    assert.ok(lastA.notAfter > firstB.seenAt - 1000, 'A leaf outlived the swap');
    await writeFile(join(work, 'a-chain.pem'), lastA.chainPem);
    assert.match(
      openssl([
        'verify',
        '-attime',
        String(Math.floor(firstB.seenAt / 1000)),
        '-CAfile',
        join(sets.a, '..', 'root-cert.pem'),
        '-untrusted',
        join(work, 'a-chain.pem'),
        join(work, 'a-chain.pem'),
      ]),
      /: OK/,
    );

    // Fresh key for every certificate; the exec hook ran for each write; metrics agree.
    assert.equal(keys.size, seen.size);
    const metricsAddr = /"addr":"(127\.0\.0\.1:\d+)","msg":"monitoring/.exec(
      agentLog.join(''),
    )?.[1];
    assert.ok(metricsAddr, 'agent logged its monitoring address');
    assert.equal((await fetch(`http://${metricsAddr}/ready`)).status, 200);
    const metrics = await (await fetch(`http://${metricsAddr}/metrics`)).text();
    const renewals = Number(/castellan_agent_cert_renewals_total (\d+)/.exec(metrics)?.[1]);
    assert.ok(renewals >= seen.size, `${renewals} renewals, ${seen.size} seen`);
    assert.match(
      metrics,
      /castellan_agent_cert_renewal_failures_total\{reason="unavailable"\} [1-9]/,
    );
    const execRuns = (await readFile(join(work, 'exec.log'), 'utf8')).trim().split('\n').length;
    assert.ok(execRuns >= seen.size);

    const agentExit = new Promise<number | null>((r) => agent.on('exit', r));
    agent.kill('SIGTERM');
    assert.equal(await agentExit, 0);
    await stopServe(serve.child);
  },
);
