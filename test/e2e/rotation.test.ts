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
import { openssl, opensslVerify } from '../support/openssl.js';
import { opensslSelfSigned, opensslSigned } from '../support/openssl-certs.js';
import { cliPath } from '../support/paths.js';
import { waitFor } from '../support/wait-for.js';
import {
  startServe as startServeProcess,
  type ServeProcess,
} from '../server/support/serve-process.js';

// Certificates live 10 s and the agent renews when 90 % of that is left (--grace-ratio 0.9):
// a renewal every second, and the certificate held is still valid for 9 s when its renewal is
// due, so a serve restart on a slow machine does not leave the agent with an expired one. With
// the default ratio (0.5) each of the scenario's 11 renewals waited 5 s: 55 s of suite time.
const TTL = '10s';
const GRACE_RATIO = '0.9';
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

/** `castellan serve` on this test's data dir, on `port` (0: any free port). */
async function startServe(port: number, extra: string[] = []): Promise<ServeProcess> {
  const serve = await startServeProcess(
    [
      '--data-dir',
      join(work, 'data'),
      '--grpc-addr',
      `127.0.0.1:${port}`,
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
  children.push(serve.child);
  return serve;
}

async function stopServe(serve: ServeProcess): Promise<void> {
  serve.child.kill('SIGTERM');
  await serve.exited;
}

/** openssl verify of a chain (leaf first) against a root, at `at` (default now). */
function assertVerifies(rootPem: string, chainPem: string, at?: Date): void {
  const r = opensslVerify({
    root: rootPem,
    untrusted: chainPem,
    leaf: chainPem,
    strict: false,
    ...(at ? { at } : {}),
  });
  assert.ok(r.ok, r.output);
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

/** The certificate the agent has in place now, checked, if it is one not seen before. */
async function newCertificate(outDir: string, seen: Set<string>): Promise<Seen | undefined> {
  if (!existsSync(join(outDir, '..data'))) return undefined;
  const base = await realpath(join(outDir, '..data')).catch(() => undefined);
  if (!base) return undefined;
  const [chainPem, key, rootPem] = await Promise.all(
    ['cert-chain.pem', 'key.pem', 'root-cert.pem'].map((f) => readFile(join(base, f), 'utf8')),
  ).catch(() => [undefined, undefined, undefined]);
  if (!chainPem || !key || !rootPem) return undefined;
  const leaf = new X509Certificate(chainPem);
  if (seen.has(leaf.serialNumber)) return undefined;
  seen.add(leaf.serialNumber);
  const spki = (k: ReturnType<typeof createPublicKey>) =>
    k.export({ type: 'spki', format: 'der' }).toString('hex');
  assert.equal(spki(leaf.publicKey), spki(createPublicKey(createPrivateKey(key))), 'key matches');
  assertVerifies(rootPem, chainPem);
  return {
    serial: leaf.serialNumber,
    key,
    chainPem,
    rootPem,
    issuer: leaf.issuer,
    notAfter: Date.parse(leaf.validTo),
    seenAt: Date.now(),
  };
}

/** Waits for `count` certificates not seen before, checking each as it appears. */
async function nextCertificates(
  outDir: string,
  seen: Set<string>,
  count: number,
  timeoutMs = 40_000,
): Promise<Seen[]> {
  const found: Seen[] = [];
  await waitFor(
    `${count} new certificates`,
    async () => {
      const cert = await newCertificate(outDir, seen);
      if (cert) found.push(cert);
      return found.length >= count;
    },
    timeoutMs,
  );
  return found;
}

/** A root and two intermediates under it, made with openssl: the plugged-in CA sets. */
async function makePluggedSets(dir: string): Promise<{ a: string; b: string }> {
  await mkdir(dir, { recursive: true });
  opensslSelfSigned(dir, 'root', {
    subject: '/O=castellan e2e/CN=e2e root',
    extensions: ['basicConstraints=critical,CA:TRUE', 'keyUsage=critical,keyCertSign,cRLSign'],
  });
  const root = await readFile(join(dir, 'root.pem'), 'utf8');
  const sets: string[] = [];
  for (const [name, serial] of [
    ['a', 0x1a],
    ['b', 0x1b],
  ] as const) {
    opensslSigned(dir, name, {
      subject: `/O=castellan e2e/CN=intermediate ${name}`,
      signer: 'root',
      extensions:
        'basicConstraints=critical,CA:TRUE\nkeyUsage=critical,keyCertSign,cRLSign\nsubjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid\n',
      serial,
    });
    const set = join(dir, name);
    await mkdir(set);
    const cert = await readFile(join(dir, `${name}.pem`), 'utf8');
    await copyFile(join(dir, `${name}.key`), join(set, 'ca-key.pem'));
    await writeFile(join(set, 'ca-cert.pem'), cert);
    await writeFile(join(set, 'cert-chain.pem'), cert + root);
    await writeFile(join(set, 'root-cert.pem'), root);
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
    const port = serve.grpcPort;
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
        '--grace-ratio',
        GRACE_RATIO,
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
    /**
     * After the CA changed: waits for `n` certificates `isNew` accepts. The previous CA's may come
     * first (a renewal in flight when serve stopped, or issued before serve re-read its folder:
     * the agent renews every second); from the first new one on, every one must be new.
     * Returns those from the first new one on, and the last one before it, if any.
     */
    const takeAfterChange = async (
      n: number,
      isNew: (c: Seen) => boolean,
      isOld: (c: Seen) => boolean,
    ): Promise<{ certs: Seen[]; lastOld?: Seen }> => {
      const found: Seen[] = [];
      await waitFor(
        `${n} certificates from the new CA`,
        async () => {
          const cert = await newCertificate(out, seen);
          if (cert) {
            keys.add(cert.key);
            found.push(cert);
          }
          return found.filter(isNew).length >= n;
        },
        40_000,
      );
      const firstNew = found.findIndex(isNew);
      const before = found.slice(0, firstNew);
      assert.ok(
        before.every(isOld),
        `before the first new one, only the previous CA's: ${before.map((c) => c.issuer).join()}`,
      );
      return { certs: found.slice(firstNew), lastOld: before.at(-1) };
    };
    const unavailableLogged = (): number =>
      agentLog.join('').match(/"kind":"unavailable".*keeping the current certificate/g)?.length ??
      0;

    // 1. Self-signed root in the data dir: at least two renewals.
    const first = await take(3);
    const selfSignedRoot = first[0]!.rootPem;
    assert.ok(first.every((c) => c.rootPem === selfSignedRoot));

    // 2. Server restart (same data dir, same port): the agent rides it out and renews again.
    // Down until the agent has tried to renew twice: it keeps its certificate and retries.
    await stopServe(serve);
    await waitFor('a renewal refused while the CA is down', () => unavailableLogged() >= 1);
    // The last one from the stopped server (perhaps a renewal after `first`), checked.
    const heldDuringOutage = (await newCertificate(out, seen)) ?? first.at(-1)!;
    keys.add(heldDuringOutage.key);
    await waitFor('a second renewal refused', () => unavailableLogged() >= 2);
    const onDisk = await readFile(join(out, 'cert-chain.pem'), 'utf8');
    assert.equal(new X509Certificate(onDisk).serialNumber, heldDuringOutage.serial);
    serve = await startServe(port);
    const afterRestart = await take(2);
    assert.ok(
      afterRestart.every((c) => c.rootPem === selfSignedRoot),
      'same root after restart',
    );

    // 3. The self-signed root re-issued with the same key (new validity, new serial).
    await stopServe(serve);
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
    const { certs: reissued } = await takeAfterChange(
      2,
      (c) => c.rootPem !== selfSignedRoot,
      (c) => c.rootPem === selfSignedRoot,
    );
    const newRoot = reissued.at(-1)!.rootPem;
    assert.ok(reissued.every((c) => c.rootPem === newRoot));
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
    await stopServe(serve);
    // Re-read often: the swap below is waited for through the agent's renewals.
    serve = await startServe(port, ['--cacerts-dir', cacerts, '--cacerts-poll-interval', '200ms']);
    const { certs: underA } = await takeAfterChange(
      2,
      (c) => /CN=intermediate a/.test(c.issuer),
      (c) => c.rootPem === newRoot,
    );
    assert.ok(
      underA.every((c) => /CN=intermediate a/.test(c.issuer)),
      underA.map((c) => c.issuer).join(),
    );
    // Swapped under the running server: serve re-reads --cacerts-dir and swaps the verified
    // set in place (a half-copied set is refused and re-read on the next poll).
    const pidBeforeSwap = serve.child.pid;
    await useSet(sets.b, cacerts);
    const { certs: underB, lastOld: lastBeforeB } = await takeAfterChange(
      2,
      (c) => /CN=intermediate b/.test(c.issuer),
      (c) => /CN=intermediate a/.test(c.issuer),
    );
    assert.equal(serve.child.pid, pidBeforeSwap, 'no restart for the intermediate swap');
    assert.equal(serve.child.exitCode, null, 'serve kept running through the swap');
    assert.ok(underB.every((c) => /CN=intermediate b/.test(c.issuer)));
    // Earlier certificates (under A) were still valid when the first one under B arrived.
    const lastA = lastBeforeB ?? underA.at(-1)!;
    const firstB = underB[0]!;
    assert.ok(lastA.notAfter > firstB.seenAt - 1000, 'A leaf outlived the swap');
    assertVerifies(
      await readFile(join(sets.a, 'root-cert.pem'), 'utf8'),
      lastA.chainPem,
      new Date(firstB.seenAt),
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
    await stopServe(serve);
  },
);
