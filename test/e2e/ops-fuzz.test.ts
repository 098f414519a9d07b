/**
 * Live fuzz and abuse suite against the real proxy CLI (HTTP, SOCKS, mixed and convert ports), run in a
 * namespace of its own so that no mistaken connect can leave the machine: fast-check cases
 * (random bytes, HTTP-shaped, SOCKS-shaped, Convert-shaped; whole and in small delayed pieces), request
 * smuggling vectors, every SSRF spelling with a tripwire listener on the target, and slowloris.
 * The proxy must never crash or hang, must answer with the protocol's refusal, and its open
 * file descriptors must come back to the baseline. FUZZ_RUNS sets cases per generator and port
 * (CI default below; nightly: FUZZ_RUNS=100000); FUZZ_SEED replays a run.
 */
import { after, before, describe, test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { once } from 'node:events';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { randomInt } from 'node:crypto';
import readline from 'node:readline';
import fc from 'fast-check';
import { SocksClient } from 'socks';
import { expandIPv6 } from '../../src/core/address';
import { parseConvertMessage } from '../../src/proxy/convert/codec';
import { createTestbed, firstLine, type ProxyHandle, type Testbed } from '../../testkit/testbed';
import { startLegacyServer, type LegacyServer } from '../../testkit/legacy-server';
import { pickPorts } from '../ops/ports';
import { exchange, httpStatus, splitAt, type Exchange } from '../ops/wire-client';
import { convertCase, httpCase, judgeConvert, judgeHttp, judgeSocks, randomBytesCase, socks5Command, socksCase, SMUGGLING, SSRF_HOSTS, type FuzzCase } from '../ops/fuzz-cases';
import { sleep } from '../../testkit/sleep';

const RUNS = Number(process.env.FUZZ_RUNS ?? 700);
const SEED = Number(process.env.FUZZ_SEED ?? randomInt(1, 2 ** 31 - 1));
const CONCURRENCY = 16;
/** The proxy's handshake timeout in this suite (shorter than the default, to keep it quick). */
const HANDSHAKE_MS = 5000;
/** A hostile client that half-closed must be let go within this: before the handshake timeout
 *  could do it, so a proxy that ignores the client's FIN shows up as a hang. */
const CLOSE_WITHIN_MS = 3000;
const STALLED = 250;
/** Handshake timeout plus slack for timers that are checked periodically. */
const STALL_WAIT_MS = HANDSHAKE_MS + 10_000;

type Port = 'http' | 'socks' | 'mixed' | 'convert';

interface Failure {
  what: string;
  input: string;
  detail: string;
}

async function pool<T>(items: readonly T[], n: number, fn: (item: T) => Promise<void>): Promise<void> {
  let next = 0;
  await Promise.all(
    Array.from({ length: n }, async () => {
      while (next < items.length) await fn(items[next++]!);
    }),
  );
}

/** 4 or 16 address bytes of a canonical literal, or null for other spellings. */
function literalBytes(host: string): Buffer | null {
  if (/^\d{1,3}(\.\d{1,3}){3}$/.test(host) && host.split('.').every((p) => Number(p) < 256 && String(Number(p)) === p)) return Buffer.from(host.split('.').map(Number));
  const v6 = /^\[(.+)\]$/.exec(host)?.[1];
  if (!v6) return null;
  const full = expandIPv6(v6);
  return Buffer.from(full.split(':').join(''), 'hex');
}

describe('live fuzz and abuse', { timeout: 30 * 60_000 }, () => {
  let tb: Testbed;
  let proxy: ProxyHandle;
  let legacy: LegacyServer;
  let pid: number;
  const bridges = {} as Record<Port, string>;
  let tripPort: number;
  const usedPorts: number[] = [];
  const tripped: string[] = [];
  let baselineFds = 0;
  const failures: Failure[] = [];
  let cases = 0;

  const fdCount = (): number => fs.readdirSync(`/proc/${pid}/fd`).length;
  /** What the open fds are ("socket" ×12, "pipe" ×4, ...), for failure messages. */
  const fdKinds = (): string => {
    const kinds = new Map<string, number>();
    for (const fd of fs.readdirSync(`/proc/${pid}/fd`)) {
      let target: string;
      try {
        target = fs.readlinkSync(`/proc/${pid}/fd/${fd}`).replace(/:\[\d+\]$/, '').replace(/^\/.*/, 'file');
      } catch {
        continue;
      }
      kinds.set(target, (kinds.get(target) ?? 0) + 1);
    }
    return [...kinds].map(([k, n]) => `${k} ×${n}`).join(', ');
  };
  let baselineKinds = '';
  const alive = (): boolean => proxy.proc.exitCode === null && proxy.proc.signalCode === null;

  /** Wait for the proxy's fds to come back to the baseline; returns the last count. */
  async function settleFds(timeoutMs = 15_000): Promise<number> {
    const deadline = Date.now() + timeoutMs;
    let n = fdCount();
    while (n > baselineFds && Date.now() < deadline) {
      await sleep(100);
      n = fdCount();
    }
    return n;
  }

  async function assertHealthy(t: TestContext, label: string): Promise<void> {
    assert.ok(alive(), `proxy died during ${label}: ${proxy.stderr.slice(-3000)}`);
    const n = await settleFds();
    t.diagnostic(`${label}: fds ${n} (baseline ${baselineFds})`);
    assert.ok(n <= baselineFds, `fd count ${n} did not return to baseline ${baselineFds} after ${label}: now ${fdKinds()}; baseline ${baselineKinds}`);
    const t0 = Date.now();
    const r = await normalGet();
    assert.equal(r, 200, `normal request after ${label}`);
    t.diagnostic(`${label}: normal request served in ${Date.now() - t0} ms`);
  }

  /** A well-formed request through the HTTP port to the legacy server; the status (or null). */
  async function normalGet(port: Port = 'http'): Promise<number | null> {
    const req = `GET ${legacy.url('/bytes/1000')} HTTP/1.1\r\nHost: ${legacy.host}:${legacy.httpPort}\r\nConnection: close\r\n\r\n`;
    const x = await exchange({ path: bridges[port] }, [Buffer.from(req)], { waitMs: 5000 });
    return httpStatus(x.data);
  }

  function record(what: string, input: Buffer | string, detail: string): void {
    failures.push({ what, input: typeof input === 'string' ? JSON.stringify(input) : input.toString('hex'), detail });
  }

  before(async () => {
    tb = await createTestbed({ shapeMbit: 0 });
    legacy = await startLegacyServer(tb);
    // The metadata address is local in the proxy's namespace, so a connect to it would reach
    // the tripwire instead of leaving the machine.
    await tb.exec('proxy', ['ip', 'addr', 'add', '169.254.169.254/32', 'dev', 'lo']);
    const [pHttp, pSocks, pMixed, pTrip, pConvert] = pickPorts(5) as [number, number, number, number, number];
    usedPorts.push(pHttp, pSocks, pMixed, pTrip, pConvert);
    const trip = tb.spawnNode('proxy', 'dist/test/ops/tripwire.js', [String(pTrip)]);
    assert.deepEqual(JSON.parse(await firstLine(trip, 10_000)), { port: pTrip });
    readline.createInterface({ input: trip.stdout! }).on('line', (l) => tripped.push(l));
    tripPort = pTrip;
    const configFile = path.join(tb.tmpDir, 'fuzz.yaml');
    fs.writeFileSync(configFile, `timeouts:\n  handshakeMs: ${HANDSHAKE_MS}\n`);
    proxy = await tb.startProxy(['--config', configFile, '--http', `127.0.0.1:${pHttp}`, '--socks', `127.0.0.1:${pSocks}`, '--mixed', `127.0.0.1:${pMixed}`, '--convert', `127.0.0.1:${pConvert}`, '--no-metrics', '--log-level', 'warn', '--log-format', 'json']);
    pid = proxy.proc.pid!;
    assert.equal(fs.readFileSync(`/proc/${pid}/comm`, 'utf8').trim(), 'node', 'the spawned pid is the proxy itself (ip netns exec execs)');
    bridges.http = await tb.bridge('proxy', '127.0.0.1', pHttp);
    bridges.socks = await tb.bridge('proxy', '127.0.0.1', pSocks);
    bridges.mixed = await tb.bridge('proxy', '127.0.0.1', pMixed);
    bridges.convert = await tb.bridge('proxy', '127.0.0.1', pConvert);
    // Warm up every path once (agent pool, lazy modules, the relay engine's event loop) before
    // taking the baseline: those are opened once, not per connection.
    assert.equal(await normalGet('http'), 200);
    assert.equal(await normalGet('mixed'), 200);
    const target = `${legacy.host}:${legacy.httpPort}`;
    const tunnel = await exchange({ path: bridges.http }, [Buffer.from(`CONNECT ${target} HTTP/1.1\r\nHost: ${target}\r\n\r\n`), Buffer.from(`GET /bytes/10 HTTP/1.1\r\nHost: ${target}\r\nConnection: close\r\n\r\n`)], { delayMs: 200, waitMs: 5000 });
    assert.match(tunnel.data.toString('latin1'), /^HTTP\/1\.1 200 [^\r]*\r\n\r\nHTTP\/1\.1 200 /, 'CONNECT tunnel warm-up');
    await sleep(500);
    baselineFds = fdCount();
    baselineKinds = fdKinds();
  });

  after(async () => {
    if (failures.length > 0) {
      process.stderr.write(`\nops-fuzz: ${failures.length} failure(s), seed ${SEED}:\n`);
      for (const f of failures.slice(0, 200)) process.stderr.write(`  [${f.what}] ${f.detail}\n    input: ${f.input}\n`);
    }
    await proxy?.stop();
    await tb?.destroy();
  });

  async function fuzz(t: TestContext, name: string, arb: fc.Arbitrary<FuzzCase>, ports: Port[], runs: number): Promise<void> {
    const samples = fc.sample(arb, { numRuns: runs, seed: SEED });
    const failedBefore = failures.length;
    for (const port of ports) {
      await pool(samples, CONCURRENCY, async (c) => {
        cases++;
        const chunks = splitAt(c.bytes, c.cuts);
        const x: Exchange = await exchange({ path: bridges[port] }, chunks, { delayMs: c.delayMs, end: true, waitMs: CLOSE_WITHIN_MS });
        if (!x.closed) record(`${name}@${port}`, c.bytes, `connection still open ${CLOSE_WITHIN_MS} ms after the client's FIN (hang); got ${x.data.length} B`);
        const socksish = port === 'socks' || (port === 'mixed' && (c.bytes[0] === 4 || c.bytes[0] === 5));
        // UDP ASSOCIATE needs no reachable destination: its success is a proper reply.
        const verdict = port === 'convert' ? judgeConvert(x.data) : socksish ? judgeSocks(x.data, socks5Command(c.bytes) === 3) : judgeHttp(x.data);
        if (verdict) record(`${name}@${port}`, c.bytes, verdict);
      });
      assert.ok(alive(), `proxy crashed during ${name}@${port}; seed ${SEED}\n${proxy.stderr.slice(-3000)}`);
    }
    t.diagnostic(`${name}: ${runs} cases × ${ports.join('/')} (seed ${SEED}), ${failures.length - failedBefore} failure(s)`);
    assert.deepEqual(failures.slice(failedBefore), [], `failures in ${name}`);
    await assertHealthy(t, name);
  }

  test('random bytes, whole and split, on every port', (t) => fuzz(t, 'random-bytes', randomBytesCase, ['http', 'socks', 'mixed', 'convert'], RUNS));
  test('HTTP-shaped garbage on the HTTP and mixed ports', (t) => fuzz(t, 'http-shaped', httpCase, ['http', 'mixed'], RUNS));
  test('SOCKS-shaped garbage on the SOCKS and mixed ports', (t) => fuzz(t, 'socks-shaped', socksCase, ['socks', 'mixed'], RUNS));
  test('Convert-shaped (RFC 8803) garbage on the convert port', (t) => fuzz(t, 'convert-shaped', convertCase, ['convert'], RUNS));

  test('request smuggling vectors: 400 and close; oversize header blocks refused', async (t) => {
    const target = `${legacy.host}:${legacy.httpPort}`;
    const failedBefore = failures.length;
    for (const port of ['http', 'mixed'] as const) {
      for (const [name, template] of SMUGGLING) {
        const req = template.replaceAll('{T}', target);
        // No FIN from us: the proxy itself must close after refusing.
        const x = await exchange({ path: bridges[port] }, [Buffer.from(req, 'latin1')], { waitMs: 4000 });
        const status = httpStatus(x.data);
        if (status !== 400 || !x.closed) record(`smuggling@${port}`, req, `${name}: status ${status}, ${x.closed ? 'closed' : 'left open'}`);
      }
    }
    // Header block over limits.maxHeaderBytes (32 KiB default): 431, then close.
    for (const [name, req] of [
      ['one huge header', `GET ${legacy.url('/')} HTTP/1.1\r\nHost: x\r\nX-Big: ${'a'.repeat(100_000)}\r\n\r\n`],
      ['many headers', `GET ${legacy.url('/')} HTTP/1.1\r\nHost: x\r\n${'X-N: 1\r\n'.repeat(10_000)}\r\n`],
      ['huge request line', `GET ${legacy.url('/')}${'a'.repeat(100_000)} HTTP/1.1\r\nHost: x\r\n\r\n`],
    ] as const) {
      const x = await exchange({ path: bridges.http }, [Buffer.from(req)], { waitMs: 4000 });
      const status = httpStatus(x.data);
      if (status !== 431 && status !== 414 && status !== 400) record('limits@http', req.slice(0, 120) + '…', `${name}: status ${status} (want 431)`);
      if (!x.closed) record('limits@http', req.slice(0, 120) + '…', `${name}: left open`);
    }
    t.diagnostic(`${SMUGGLING.length} vectors × 2 ports + 3 oversize requests, ${failures.length - failedBefore} failure(s)`);
    assert.deepEqual(failures.slice(failedBefore), []);
    await assertHealthy(t, 'smuggling');
  });

  test('SSRF spellings: HTTP 403, SOCKS5 0x02, SOCKS4 0x5B, Convert Error TLV 1/32, and no connection reaches the target', async (t) => {
    const failedBefore = failures.length;
    const P = tripPort;
    let probes = 0;
    const httpProbe = async (label: string, req: string): Promise<void> => {
      probes++;
      const x = await exchange({ path: bridges.http }, [Buffer.from(req, 'latin1')], { waitMs: 4000 });
      const status = httpStatus(x.data);
      if (status !== 403) record(`ssrf-http`, req, `${label}: status ${status} (want 403)`);
    };
    const socksProbe = async (label: string, bytes: Buffer, replyAt: number, want: number): Promise<void> => {
      probes++;
      const x = await exchange({ path: bridges.socks }, [bytes], { waitMs: 4000 });
      if (x.data[replyAt + 1] !== want) record(`ssrf-socks`, bytes, `${label}: reply ${x.data.toString('hex')} (want code 0x${want.toString(16)})`);
    };
    const port = Buffer.from([P >> 8, P & 255]);
    for (const h of SSRF_HOSTS) {
      await httpProbe(`GET ${h}`, `GET http://${h}:${P}/ HTTP/1.1\r\nHost: ${h}:${P}\r\nConnection: close\r\n\r\n`);
      await httpProbe(`CONNECT ${h}`, `CONNECT ${h}:${P} HTTP/1.1\r\nHost: ${h}:${P}\r\n\r\n`);
      const name = Buffer.from(h.replace(/^\[|\]$/g, ''));
      // SOCKS5: greeting (no auth), then CONNECT by name; by address too when it is canonical.
      await socksProbe(`SOCKS5 name ${h}`, Buffer.concat([Buffer.from([5, 1, 0, 5, 1, 0, 3, name.length]), name, port]), 2, 0x02);
      const lit = literalBytes(h);
      if (lit) await socksProbe(`SOCKS5 address ${h}`, Buffer.concat([Buffer.from([5, 1, 0, 5, 1, 0, lit.length === 4 ? 1 : 4]), lit, port]), 2, 0x02);
      // SOCKS4a by name (0.0.0.1 + name); SOCKS4 by IPv4 address.
      await socksProbe(`SOCKS4a ${h}`, Buffer.concat([Buffer.from([4, 1]), port, Buffer.from([0, 0, 0, 1]), Buffer.from('u\0'), name, Buffer.from([0])]), 0, 0x5b);
      if (lit?.length === 4) await socksProbe(`SOCKS4 ${h}`, Buffer.concat([Buffer.from([4, 1]), port, lit, Buffer.from('u\0')]), 0, 0x5b);
    }
    // Convert: a Connect TLV carries only addresses; loopback and unspecified are Malformed (1), the rest Not Authorized (32).
    for (const h of SSRF_HOSTS) {
      const lit = literalBytes(h);
      if (!lit) continue;
      probes++;
      const addr = lit.length === 4 ? Buffer.concat([Buffer.from('00000000000000000000ffff', 'hex'), lit]) : lit;
      const msg = Buffer.concat([Buffer.from([1, 6, 0x22, 0x63, 10, 5]), port, addr]);
      const x = await exchange({ path: bridges.convert }, [msg], { waitMs: 4000 });
      // One whole message with one Error TLV (its value may echo the Connect, RFC 8803 §6.2.8).
      const reply = parseConvertMessage(x.data);
      const only = reply.kind === 'ok' && reply.consumed === x.data.length && reply.value.length === 1 ? reply.value[0] : null;
      const code = only?.type === 'error' ? only.code : null;
      if (code !== 1 && code !== 32) record('ssrf-convert', msg, `Connect ${h}: reply ${x.data.toString('hex')} (want Error TLV 1 or 32)`);
    }
    await sleep(300);
    t.diagnostic(`${SSRF_HOSTS.length} spellings, ${probes} probes, ${failures.length - failedBefore} failure(s), tripwire: ${tripped.length}`);
    assert.deepEqual(tripped, [], 'a connection reached the SSRF target');
    assert.deepEqual(failures.slice(failedBefore), []);
    await assertHealthy(t, 'ssrf');
  });

  test(`slowloris: ${STALLED} stalled handshakes while normal clients are served promptly`, async (t) => {
    const stalled: Promise<Exchange>[] = [];
    const partial: [Port, Buffer][] = [
      ['http', Buffer.from(`GET ${legacy.url('/')} HTTP/1.1\r\nHost: x\r\nX-Slow: `)],
      ['socks', Buffer.from([5, 2, 0])],
      ['mixed', Buffer.from('CONNECT example.invalid:443 HTTP/1.1\r\n')],
      ['socks', Buffer.from([4, 1, 0, 80, 0, 0, 0, 1, 0x75])],
    ];
    for (let i = 0; i < STALLED; i++) {
      const [port, bytes] = partial[i % partial.length]!;
      // These stay open until the proxy's handshake timeout closes them (or the wait runs out).
      stalled.push(exchange({ path: bridges[port] }, [bytes], { waitMs: STALL_WAIT_MS }));
    }
    await sleep(1000);
    const open = fdCount();
    t.diagnostic(`proxy fds with ${STALLED} stalled clients: ${open}`);
    assert.ok(open >= baselineFds + STALLED * 0.9, `the stalled connections are open at the proxy (${open} fds)`);

    const latencies: number[] = [];
    for (let i = 0; i < 10; i++) {
      const t0 = Date.now();
      assert.equal(await normalGet(i % 2 ? 'mixed' : 'http'), 200);
      latencies.push(Date.now() - t0);
    }
    const t0 = Date.now();
    const info = await SocksClient.createConnection({
      proxy: { host: '127.0.0.1', port: 1, type: 5 },
      destination: { host: legacy.host, port: legacy.echoPort },
      command: 'connect',
      existing_socket: net.connect(bridges.socks),
      timeout: 5000,
    });
    info.socket.write('ping');
    const [echo] = (await once(info.socket, 'data')) as [Buffer];
    info.socket.destroy();
    latencies.push(Date.now() - t0);
    assert.equal(echo.toString(), 'ping');
    t.diagnostic(`normal requests during slowloris: ${latencies.join(', ')} ms`);
    assert.ok(Math.max(...latencies) < 1000, `a normal client waited ${Math.max(...latencies)} ms`);

    // The stalled clients are still connected (not starved into a close by the normal ones).
    assert.ok(fdCount() >= baselineFds + STALLED * 0.9);
    // The proxy's handshake timeout must free every one of them.
    const results = await Promise.all(stalled);
    const left = results.filter((r) => !r.closed).length;
    const byPattern = partial.map(([port, bytes], k) => `${port} ${JSON.stringify(bytes.toString('latin1'))}: ${results.filter((r, i) => i % partial.length === k && !r.closed).length} open`);
    t.diagnostic(`still open after ${STALL_WAIT_MS} ms by pattern: ${byPattern.join('; ')}`);
    t.diagnostic(`stalled clients closed by the proxy: ${results.length - left}/${results.length}, after ≤ ${Math.max(...results.map((r) => r.closeAfterMs))} ms`);
    assert.equal(left, 0, `stalled handshakes still open ${STALL_WAIT_MS} ms after the ${HANDSHAKE_MS} ms handshake timeout`);
    await assertHealthy(t, 'slowloris');
  });

  test('slow-read: clients that stop reading big downloads do not make the proxy buffer them', async (t) => {
    const rss = (): number => Number(/^VmRSS:\s+(\d+) kB/m.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'))![1]) * 1024;
    const size = 300_000_000;
    const target = `${legacy.host}:${legacy.httpPort}`;
    const readers: net.Socket[] = [];
    const received: number[] = [];
    const open = (first: string, then?: string): void => {
      const s = net.connect(bridges.http);
      const i = received.push(0) - 1;
      s.on('error', () => undefined);
      s.on('data', (d: Buffer) => {
        received[i]! += d.length;
        // Read the first bytes (the reply has started), then stop reading for good.
        if (received[i]! > 4096) s.pause();
        if (then && /^HTTP\/1\.1 200/.test(d.toString('latin1'))) {
          s.write(then);
          then = undefined;
        }
      });
      s.write(first);
      readers.push(s);
    };
    const rss0 = rss();
    for (let i = 0; i < 4; i++) open(`GET http://${target}/bytes/${size} HTTP/1.1\r\nHost: ${target}\r\n\r\n`);
    for (let i = 0; i < 4; i++) open(`CONNECT ${target} HTTP/1.1\r\nHost: ${target}\r\n\r\n`, `GET /bytes/${size} HTTP/1.1\r\nHost: ${target}\r\n\r\n`);
    await sleep(3000);
    const rss1 = rss();
    await sleep(3000);
    const grown = rss() - rss0;
    const late = rss() - rss1;
    t.diagnostic(`8 stalled readers of ${size / 1e6} MB each: received ${received.map((n) => (n / 1e6).toFixed(1)).join('/')} MB, proxy RSS +${(grown / 1e6).toFixed(1)} MB (+${(late / 1e6).toFixed(1)} MB in the last 3 s)`);
    const t0 = Date.now();
    assert.equal(await normalGet(), 200);
    t.diagnostic(`normal request during slow-read: ${Date.now() - t0} ms`);
    assert.ok(received.every((n) => n < size / 10), 'the readers really stalled');
    assert.ok(grown < 100e6 && late < 16e6, `proxy RSS grew by ${(grown / 1e6).toFixed(1)} MB (${(late / 1e6).toFixed(1)} MB late) for stalled readers: it buffers instead of applying backpressure`);
    for (const s of readers) s.destroy();
    await assertHealthy(t, 'slow-read');
  });

  test('auth failures: 407 with Proxy-Authenticate, SOCKS5 0xFF / auth status, SOCKS4 0x5B; fuzzed credentials never pass', async (t) => {
    const [qHttp, qSocks] = pickPorts(2, usedPorts) as [number, number];
    const authed = await tb.startProxy(['--http', `127.0.0.1:${qHttp}`, '--socks', `127.0.0.1:${qSocks}`, '--user', 'alice:plain$wonderland', '--no-metrics', '--log-level', 'error']);
    try {
      const httpB = await tb.bridge('proxy', '127.0.0.1', qHttp);
      const socksB = await tb.bridge('proxy', '127.0.0.1', qSocks);
      const failedBefore = failures.length;
      const target = `${legacy.host}:${legacy.httpPort}`;
      const b64 = (s: string): string => Buffer.from(s, 'latin1').toString('base64');
      const httpWith = async (label: string, auth: string | null, connect = false): Promise<number | null> => {
        const head = connect ? `CONNECT ${target} HTTP/1.1\r\nHost: ${target}\r\n` : `GET ${legacy.url('/bytes/10')} HTTP/1.1\r\nHost: ${target}\r\nConnection: close\r\n`;
        const req = `${head}${auth === null ? '' : `Proxy-Authorization: ${auth}\r\n`}\r\n`;
        const x = await exchange({ path: httpB }, [Buffer.from(req, 'latin1')], { waitMs: 4000 });
        const status = httpStatus(x.data);
        if (status === 407 && !/\r\nProxy-Authenticate: Basic realm="[^"]*"/i.test(x.data.toString('latin1'))) record('auth-http', req, `${label}: 407 without Proxy-Authenticate`);
        return status;
      };
      const fixed: [string, string | null][] = [
        ['no credentials', null],
        ['wrong password', `Basic ${b64('alice:wrong')}`],
        ['unknown user', `Basic ${b64('bob:wonderland')}`],
        ['no colon', `Basic ${b64('alicewonderland')}`],
        ['password prefix', `Basic ${b64('alice:wonder')}`],
        ['password with suffix', `Basic ${b64('alice:wonderland2')}`],
        ['not base64', 'Basic !!!'],
        ['other scheme', 'Bearer abc'],
        ['empty', ''],
      ];
      for (const [label, auth] of fixed) {
        for (const connect of [false, true]) {
          const status = await httpWith(label, auth, connect);
          if (status !== 407) record('auth-http', `${connect ? 'CONNECT' : 'GET'} ${label}`, `status ${status} (want 407)`);
        }
      }
      assert.equal(await httpWith('right', `Basic ${b64('alice:wonderland')}`), 200, 'the right credentials pass (control)');
      const creds = fc.sample(
        fc.oneof(
          fc.tuple(fc.string({ unit: 'binary', maxLength: 20 }), fc.string({ unit: 'binary', maxLength: 20 })).map(([u, p]) => `Basic ${b64(`${u}:${p}`)}`),
          fc.string({ unit: 'binary', maxLength: 60 }).map((s) => s.replace(/[\r\n]/g, '')),
        ),
        { numRuns: Math.min(RUNS, 500), seed: SEED },
      );
      await pool(creds, CONCURRENCY, async (auth) => {
        cases++;
        const status = await httpWith('fuzzed', auth);
        // 503: a check refused unrun (this one client already failed and has a check in flight).
        if (status !== 407 && status !== 400 && status !== 503) record('auth-http', auth, `fuzzed credentials: status ${status}`);
      });

      const socks = async (label: string, bytes: Buffer, want: (d: Buffer) => boolean): Promise<void> => {
        const x = await exchange({ path: socksB }, [bytes], { waitMs: 4000 });
        if (!want(x.data) || !x.closed) record('auth-socks', bytes, `${label}: got ${x.data.toString('hex')}, ${x.closed ? 'closed' : 'left open'}`);
      };
      const up = (u: string, p: string, ver = 1): Buffer => Buffer.concat([Buffer.from([ver, u.length]), Buffer.from(u), Buffer.from([p.length]), Buffer.from(p)]);
      await socks('no-auth method only', Buffer.from([5, 1, 0]), (d) => d.equals(Buffer.from([5, 0xff])));
      await socks('wrong password', Buffer.concat([Buffer.from([5, 1, 2]), up('alice', 'wrong')]), (d) => d.length === 4 && d[1] === 2 && d[2] === 1 && d[3] !== 0);
      await socks('unknown user', Buffer.concat([Buffer.from([5, 1, 2]), up('bob', 'wonderland')]), (d) => d.length === 4 && d[3] !== 0);
      await socks('empty user and password', Buffer.concat([Buffer.from([5, 1, 2]), up('', '')]), (d) => d.length === 4 && d[3] !== 0);
      await socks('auth version 5', Buffer.concat([Buffer.from([5, 1, 2]), up('alice', 'wonderland', 5)]), (d) => d.length <= 2 || d[3] !== 0);
      await socks('SOCKS4 cannot authenticate', Buffer.from([4, 1, 0, 80, 10, 0, 0, 1, 0x75, 0]), (d) => d.length === 8 && d[1] === 0x5b);
      const sub = fc.sample(fc.uint8Array({ maxLength: 40 }), { numRuns: Math.min(RUNS, 500), seed: SEED });
      await pool(sub, CONCURRENCY, async (tail) => {
        cases++;
        const bytes = Buffer.concat([Buffer.from([5, 1, 2]), Buffer.from(tail)]);
        const x = await exchange({ path: socksB }, [bytes], { end: true, waitMs: CLOSE_WITHIN_MS });
        const verdict = judgeSocks(x.data);
        // Only alice/wonderland gets auth status 0: random bytes must not.
        if (verdict || (x.data.length >= 4 && x.data[2] === 1 && x.data[3] === 0)) record('auth-socks-fuzz', bytes, verdict ?? 'authenticated with fuzzed credentials');
        if (!x.closed) record('auth-socks-fuzz', bytes, 'hang after FIN');
      });
      const info = await SocksClient.createConnection({
        proxy: { host: '127.0.0.1', port: 1, type: 5, userId: 'alice', password: 'wonderland' },
        destination: { host: legacy.host, port: legacy.echoPort },
        command: 'connect',
        existing_socket: net.connect(socksB),
        timeout: 5000,
      });
      info.socket.write('hi');
      const [echo] = (await once(info.socket, 'data')) as [Buffer];
      info.socket.destroy();
      assert.equal(echo.toString(), 'hi', 'the right SOCKS5 credentials pass (control)');
      t.diagnostic(`${fixed.length * 2} HTTP + 6 SOCKS fixed auth failures, ${creds.length} + ${sub.length} fuzzed; ${failures.length - failedBefore} failure(s)`);
      assert.deepEqual(failures.slice(failedBefore), []);
      assert.equal(authed.proc.exitCode, null, 'auth proxy alive');
    } finally {
      await authed.stop();
    }
  });

  test('summary', (t) => {
    t.diagnostic(`cases run: ${cases} (FUZZ_RUNS=${RUNS}, seed ${SEED}); failures: ${failures.length}`);
    assert.equal(failures.length, 0);
  });
});
