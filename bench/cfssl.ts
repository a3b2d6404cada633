// The peer: cfssl (Cloudflare's CA, Go; Debian's golang-cfssl 1.2) signing the same CSR with a
// P-256 CA, driven by the same h2load with the same concurrency as Castellan's primary case, so
// that `castellan / cfssl` in one run says how close Castellan is to a Go CA on this machine
// whatever its neighbours are doing (bench/main.ts prints that ratio beside the Castellan rows).
//
// Two cases:
// - `peer cfssl authsign tls+h2 p256 c=<n>`: `cfssl serve` with TLS (Go's net/http negotiates
//   HTTP/2 through ALPN, checked: h2load must report h2), POST /api/v1/cfssl/authsign, whose body
//   carries an HMAC-SHA256 token over the sign request (cfssl's "standard" auth provider). This
//   is the one that does what a Castellan call does: TLS, HTTP/2, authenticate the caller, parse
//   and check the CSR, sign. The body is the same every time (one CSR, one token, precomputed):
//   cfssl keeps no replay state, so each call still verifies the HMAC, checks the CSR's
//   signature and signs a new certificate.
// - `peer cfssl sign http/1.1 p256 c=<n>`: plain HTTP, POST /api/v1/cfssl/sign, no
//   authentication. Go's server speaks HTTP/2 only over TLS (no h2c), so h2load drives it with
//   --h1: HTTP/1.1, keep-alive, one request in flight per connection.
//
// cfssl answers 200 with {"success":true,…} or 4xx with the errors; h2load counts non-2xx as
// failed, and one call is checked by hand before the load (a certificate comes back).
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { createHmac, randomBytes } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { stopOnInterrupt, temporaryDir } from './interrupt.js';
import { request as httpRequest } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { createKeyAndCsr } from '../src/pki/csr-builder.js';
import {
  RAMP_SECONDS,
  warmUpDuration,
  parseStats,
  readLog,
  runH2load,
  steadyWindow,
  type H2loadStats,
} from './h2load.js';
import { peakRssDuring, serverCpuSeconds } from './server.js';
import type { BenchCase, BenchOptions, Measurement } from './types.js';

const NOT_FOUND = 'cfssl not found: run scripts/setup-bench-deps.sh (Debian golang-cfssl)';

/** The name of the peer case the Castellan P-256 rows are compared with (bench/main.ts). */
export const CFSSL_AUTHSIGN_CASE = (c: number): string => `peer cfssl authsign tls+h2 p256 c=${c}`;

function openssl(dir: string, args: string[]): void {
  const r = spawnSync('openssl', args, { cwd: dir, encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`openssl ${args[0]}: ${r.stderr || r.error?.message}`);
}

/** A P-256 CA and a TLS certificate for 127.0.0.1 signed by it, made with openssl in `dir`. */
function makeCa(dir: string): void {
  openssl(dir, ['ecparam', '-name', 'prime256v1', '-genkey', '-noout', '-out', 'ca-key.pem']);
  openssl(dir, [
    ...['req', '-x509', '-new', '-key', 'ca-key.pem', '-subj', '/CN=cfssl bench CA'],
    ...['-days', '2', '-out', 'ca.pem'],
    ...['-addext', 'basicConstraints=critical,CA:TRUE'],
    ...['-addext', 'keyUsage=critical,keyCertSign,cRLSign'],
  ]);
  openssl(dir, ['ecparam', '-name', 'prime256v1', '-genkey', '-noout', '-out', 'tls-key.pem']);
  openssl(dir, ['req', '-new', '-key', 'tls-key.pem', '-subj', '/CN=localhost', '-out', 'tls.csr']);
  writeFileSync(join(dir, 'tls.ext'), 'subjectAltName=DNS:localhost,IP:127.0.0.1\n');
  openssl(dir, [
    ...['x509', '-req', '-in', 'tls.csr', '-CA', 'ca.pem', '-CAkey', 'ca-key.pem'],
    ...['-CAcreateserial', '-days', '2', '-out', 'tls.pem', '-extfile', 'tls.ext'],
  ]);
}

const USAGES = ['digital signature', 'key encipherment', 'client auth', 'server auth'];

/**
 * cfssl's signing config: the default profile unauthenticated (for /sign), the `authn` profile
 * behind an HMAC key (for /authsign). cfssl refuses /authsign for a profile without a key and
 * /sign for one with a key.
 */
function writeConfig(dir: string, authKeyHex: string): void {
  const profile = { expiry: '1h', usages: USAGES };
  writeFileSync(
    join(dir, 'config.json'),
    JSON.stringify({
      signing: { default: profile, profiles: { authn: { ...profile, auth_key: 'primary' } } },
      auth_keys: { primary: { type: 'standard', key: authKeyHex } },
    }),
  );
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address() as { port: number };
      s.close(() => resolve(port));
    });
  });
}

interface Answer {
  status: number;
  body: string;
}

function post(url: string, body: string, caPem?: string): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const options = {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      ...(caPem !== undefined ? { ca: caPem, servername: 'localhost' } : {}),
    };
    const req = (url.startsWith('https:') ? httpsRequest : httpRequest)(url, options, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => (text += d));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: text }));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.setTimeout(5000, () => req.destroy(new Error(`POST ${url}: no answer in 5 s`)));
    req.end(body);
  });
}

interface Cfssl {
  child: ChildProcess;
  port: number;
  stderr(): string;
  stop(): Promise<void>;
}

/** `cfssl serve` on a free loopback port, TLS or not; resolves once it answers. */
async function startCfssl(dir: string, tls: boolean, probe: (port: number) => Promise<Answer>) {
  const port = await freePort();
  const child = spawn(
    'cfssl',
    [
      'serve',
      ...['-address', '127.0.0.1', '-port', String(port)],
      ...['-ca', 'ca.pem', '-ca-key', 'ca-key.pem', '-config', 'config.json'],
      ...(tls ? ['-tls-cert', 'tls.pem', '-tls-key', 'tls-key.pem'] : []),
      ...['-loglevel', '3'],
    ],
    { cwd: dir, stdio: ['ignore', 'ignore', 'pipe'] },
  );
  stopOnInterrupt(child);
  let err = '';
  child.stderr.on('data', (d: Buffer) => (err = (err + d.toString()).slice(-4000)));
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const server: Cfssl = {
    child,
    port,
    stderr: () => err,
    async stop() {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
      await exited;
    },
  };
  try {
    const deadline = performance.now() + 15_000;
    for (;;) {
      if (child.exitCode !== null) throw new Error(`cfssl serve exited: ${err.slice(-2000)}`);
      try {
        const answer = await probe(port);
        if (answer.status !== 200 || !/"success":\s*true/.test(answer.body)) {
          throw new Error(`cfssl refused the bench request (${answer.status}): ${answer.body}`);
        }
        if (!answer.body.includes('BEGIN CERTIFICATE')) {
          throw new Error(`cfssl answered without a certificate: ${answer.body.slice(0, 500)}`);
        }
        return server;
      } catch (e) {
        const refused = (e as NodeJS.ErrnoException).code === 'ECONNREFUSED';
        if (!refused || performance.now() > deadline) throw e;
        await new Promise((r) => setTimeout(r, 50));
      }
    }
  } catch (e) {
    await server.stop();
    throw e;
  }
}

/** h2load's outcome must be all 2xx: cfssl answers a refused call with 4xx. */
function checkAllSucceeded(run: string, s: H2loadStats): void {
  if (s.failed || s.errored || s.timeout || s.succeeded !== s.done || s.succeeded === 0) {
    throw new Error(
      `${run}: h2load saw ${s.succeeded} succeeded of ${s.done} done, ${s.failed} failed, ${s.errored} errored, ${s.timeout} timed out`,
    );
  }
}

function cfsslCase(mode: 'authsign' | 'sign', concurrency: number): BenchCase {
  const tls = mode === 'authsign';
  return {
    name:
      mode === 'authsign'
        ? CFSSL_AUTHSIGN_CASE(concurrency)
        : `peer cfssl sign http/1.1 p256 c=${concurrency}`,
    limit: 'ecdsap256',
    target: '-',
    async run(options: BenchOptions): Promise<Measurement> {
      if (spawnSync('cfssl', ['version'], { stdio: 'ignore' }).error) throw new Error(NOT_FOUND);
      const temp = temporaryDir('castellan-bench-cfssl-');
      const dir = temp.path;
      let server: Cfssl | undefined;
      try {
        makeCa(dir);
        const key = randomBytes(16);
        writeConfig(dir, key.toString('hex'));
        const { csrPem } = await createKeyAndCsr('ec-p256', {
          sans: ['spiffe://cluster.local/ns/bench/sa/sa'],
        });
        const signRequest = JSON.stringify({
          certificate_request: csrPem,
          hosts: ['spiffe://cluster.local/ns/bench/sa/sa'],
          ...(tls ? { profile: 'authn' } : {}),
        });
        // cfssl's standard provider: token = HMAC-SHA256(key, request bytes); []byte fields
        // travel base64 in JSON (auth/auth.go: AuthenticatedRequest).
        const body = tls
          ? JSON.stringify({
              token: createHmac('sha256', key).update(signRequest).digest('base64'),
              request: Buffer.from(signRequest).toString('base64'),
            })
          : signRequest;
        const bodyPath = join(dir, 'body.json');
        writeFileSync(bodyPath, body);
        const path = tls ? '/api/v1/cfssl/authsign' : '/api/v1/cfssl/sign';
        const caPem = tls ? readFileSync(join(dir, 'ca.pem'), 'utf8') : undefined;
        server = await startCfssl(dir, tls, (port) =>
          post(`${tls ? 'https' : 'http'}://127.0.0.1:${port}${path}`, body, caPem),
        );
        const url = `${tls ? 'https' : 'http'}://127.0.0.1:${server.port}${path}`;
        const protocol = tls ? 'h2' : 'http/1.1';
        const args = [
          ...['-c', String(concurrency), '-m', '1', '-t', '1'],
          ...(tls ? [] : ['--h1']),
          ...['-d', bodyPath, '-H', 'content-type: application/json'],
          url,
        ];
        // The same warm-up as Castellan's cases (bench/h2load.ts, step 2).
        const warmUp = await runH2load(['-D', warmUpDuration(options.seconds), ...args], 120_000);
        checkAllSucceeded('warm-up', parseStats(warmUp.output, protocol));

        const pid = server.child.pid!;
        const logPath = join(dir, 'h2load-requests.log');
        const durationMs = Math.round((options.seconds + RAMP_SECONDS) * 1000);
        const cpu0 = serverCpuSeconds(pid);
        const { value: run, peakRssMb } = await peakRssDuring(
          pid,
          runH2load(
            ['-D', `${durationMs}ms`, `--log-file=${logPath}`, ...args],
            durationMs + 60_000,
          ),
        );
        const cpuSeconds = serverCpuSeconds(pid) - cpu0;
        const serverCpu = cpuSeconds / run.wallSeconds;
        const stats = parseStats(run.output, protocol);
        checkAllSucceeded('measured run', stats);
        const rows = readLog(logPath);
        if (rows.length !== stats.done || rows.some((r) => r.status !== 200)) {
          throw new Error(`measured run: the log has ${rows.length} requests, not all HTTP 200`);
        }
        const w = steadyWindow(rows, stats);
        return {
          certs_per_s: w.completed / w.seconds,
          p50_ms: w.p50,
          p99_ms: w.p99,
          rss_mb: peakRssMb,
          processes: 1,
          server_cpu: serverCpu,
          client_cpu: run.cpuSeconds / run.wallSeconds,
          cpu_us_per_cert: (cpuSeconds * 1e6) / stats.succeeded,
        };
      } finally {
        await server?.stop();
        temp.remove();
      }
    },
  };
}

export function cfsslCases(): BenchCase[] {
  return [cfsslCase('authsign', 64), cfsslCase('sign', 64)];
}
