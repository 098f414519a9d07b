/**
 * Proxy authentication that costs the attacker, not the proxy: the HTTP and SOCKS front ends on
 * one mixed loopback port (test/socks/harness.ts), driven by Node's http client, the `socks`
 * package and raw sockets from several 127.0.0.x client addresses. scrypt runs are counted by
 * wrapping crypto.scrypt/scryptSync (the real functions still do the work) and by the metrics.
 * Nothing here asserts a duration: blocking shows as an order of answers, cost as a count.
 */
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import http from 'node:http';
import type net from 'node:net';
import { after, afterEach, before, describe, it } from 'node:test';
import { SocksClient } from 'socks';
import { AccessControl } from '../../src/access/access';
import { AUTH_GUARD_DEFAULTS, AuthGuard } from '../../src/access/auth-guard';
import { hashPassword } from '../../src/access/passwords';
import { validateConfig } from '../../src/config/schema';
import { ErrorCode } from '../../src/core/errors';
import { ProxyMetrics } from '../../src/metrics/metrics';
import { currentThreadId, threadNice } from '../../src/sys/sched';
import { rawExchange, startSocksProxy, type SocksProxy } from '../socks/harness';

/** Every scrypt the process runs, with its cost parameter N. */
const scryptCalls: number[] = [];
const realScrypt = crypto.scrypt;
const realScryptSync = crypto.scryptSync;
before(() => {
  const n = (o: unknown): number => (o as crypto.ScryptOptions | undefined)?.N ?? (o as crypto.ScryptOptions | undefined)?.cost ?? 16384;
  Object.assign(crypto, {
    scrypt: (...a: Parameters<typeof crypto.scrypt>) => {
      scryptCalls.push(n(typeof a[3] === 'function' ? undefined : a[3]));
      return (realScrypt as (...x: unknown[]) => void)(...a);
    },
    scryptSync: (...a: Parameters<typeof crypto.scryptSync>) => {
      scryptCalls.push(n(a[3]));
      return realScryptSync(...a);
    },
  });
});
after(() => Object.assign(crypto, { scrypt: realScrypt, scryptSync: realScryptSync }));

const COST = 32768;
const ALICE_HASH = hashPassword('secret', COST);
const basic = (user: string, password: string): string => `Basic ${Buffer.from(`${user}:${password}`).toString('base64')}`;

let origin: http.Server;
let originPort: number;
/** Paths the origin was asked for. */
const originSaw: string[] = [];
before(async () => {
  origin = http.createServer((req, res) => {
    originSaw.push(req.url ?? '');
    res.end(`origin ${req.url}`);
  });
  await new Promise<void>((r) => origin.listen(0, '127.0.0.1', () => r()));
  originPort = (origin.address() as net.AddressInfo).port;
});
after(() => new Promise<void>((r) => origin.close(() => r())));

interface Answer {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: string;
}

/** One proxied GET on a new connection from `from` (a 127.0.0.x address). */
function get(proxy: SocksProxy, auth: string | null, from = '127.0.0.1', agent: http.Agent | false = false): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port: proxy.port, localAddress: from, agent, path: `http://127.0.0.1:${originPort}/x`, headers: auth ? { 'Proxy-Authorization': auth } : {} }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (body += c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body }));
    });
    req.on('error', reject);
    req.end();
  });
}

function socksConnect(proxy: SocksProxy, user: string, password: string): Promise<net.Socket> {
  return SocksClient.createConnection({
    proxy: { host: '127.0.0.1', port: proxy.port, type: 5, userId: user, password },
    command: 'connect',
    destination: { host: '127.0.0.1', port: originPort },
  }).then((c) => c.socket);
}

/** The proxy under test, with the metrics a running proxy exports. */
async function startProxy(access: object, guard?: AuthGuard): Promise<{ proxy: SocksProxy; metrics: ProxyMetrics }> {
  const raw = { access: { allowDest: ['127.0.0.0/8'], ...access } };
  const proxy = await startSocksProxy(raw, { mixed: true });
  if (guard) proxy.ctx.access = new AccessControl(validateConfig(raw).access, guard);
  const metrics = new ProxyMetrics();
  metrics.observeAuth(proxy.ctx.access.guard);
  return { proxy, metrics };
}

async function counter(metrics: ProxyMetrics, name: string, labels: Record<string, string> = {}): Promise<number> {
  const m = (await metrics.registry.getSingleMetric(name)?.get())?.values ?? [];
  return m.filter((v) => Object.entries(labels).every(([k, x]) => v.labels[k] === x)).reduce((s, v) => s + v.value, 0);
}

let running: SocksProxy | null = null;
afterEach(async () => {
  await running?.drained(5000);
  await running?.close();
  running = null;
});

describe('password checks do not hold up other clients', () => {
  it('while wrong passwords are being hashed, a client with cached credentials is answered first', async () => {
    const { proxy } = await startProxy({ users: [{ name: 'alice', password: ALICE_HASH }] });
    running = proxy;
    assert.equal((await get(proxy, basic('alice', 'secret'))).status, 200); // verified once, now cached
    const order: string[] = [];
    // Six guesses from six addresses (no per-client slow-down involved), each an scrypt of N=32768.
    const guesses = [2, 3, 4, 5, 6, 7].map((i) => get(proxy, basic('alice', `guess${i}`), `127.0.0.${i}`).then((a) => order.push(`refused ${a.status}`)));
    await new Promise((r) => setImmediate(r));
    // Three requests one after the other, each on a new connection, each needing the proxy's event loop.
    for (let i = 0; i < 3; i++) {
      assert.equal((await get(proxy, basic('alice', 'secret'))).status, 200);
      order.push('served');
    }
    await Promise.all(guesses);
    assert.deepEqual(order.slice(0, 3), ['served', 'served', 'served'], `order of answers: ${order.join(', ')}`);
    assert.deepEqual(order.slice(3), new Array(6).fill('refused 407'));
  });
});

describe('pipelined requests', () => {
  it('a request behind a refusal that closes the connection is not forwarded, even when its own check ends first', async () => {
    const { proxy } = await startProxy({ users: [{ name: 'alice', password: ALICE_HASH }] });
    running = proxy;
    assert.equal((await get(proxy, basic('alice', 'secret'))).status, 200); // cached: the second check ends first
    const target = `127.0.0.1:${originPort}`;
    const first = `POST http://${target}/first HTTP/1.1\r\nHost: ${target}\r\nProxy-Authorization: ${basic('alice', 'wrong')}\r\nContent-Length: 5\r\n\r\nhello\r\n`; // an empty line before the next request line (RFC 9112 §2.2)
    const second = `GET http://${target}/second HTTP/1.1\r\nHost: ${target}\r\nProxy-Authorization: ${basic('alice', 'secret')}\r\n\r\n`;
    const r = await rawExchange(proxy.port, Buffer.from(first + second));
    assert.match(r.received.toString(), /^HTTP\/1\.1 407 /);
    assert.equal(r.received.toString().match(/HTTP\/1\.1 /g)?.length, 1, r.received.toString());
    assert.ok(r.closed);
    assert.deepEqual(originSaw.filter((p) => p.endsWith('/second')), []);
  });
});

describe('credential cache', () => {
  it('a new connection with verified credentials is admitted without hashing again (HTTP and SOCKS share it)', async () => {
    const { proxy, metrics } = await startProxy({ users: [{ name: 'alice', password: ALICE_HASH }] });
    running = proxy;
    const before = scryptCalls.length;
    for (let i = 0; i < 3; i++) assert.equal((await get(proxy, basic('alice', 'secret'))).status, 200);
    const socket = await socksConnect(proxy, 'alice', 'secret');
    socket.destroy();
    assert.equal(scryptCalls.length - before, 1, 'one scrypt for four connections');
    assert.equal(await counter(metrics, 'mptcp_proxy_auth_hashes_total'), 1);
    assert.equal(await counter(metrics, 'mptcp_proxy_auth_cache_hits_total'), 3);
  });

  it('a reload that changes the password drops the cached credentials; ttl 0 hashes every time', async () => {
    const first = new AccessControl(validateConfig({ access: { users: [{ name: 'u', password: 'plain$one' }] } }).access);
    let hashes = 0;
    first.guard.on('hash', () => hashes++);
    assert.equal(await first.authenticate('u', 'one', '127.0.0.1'), null);
    assert.equal(await first.authenticate('u', 'one', '127.0.0.1'), null);
    assert.equal(hashes, 1);
    const changed = new AccessControl(validateConfig({ access: { users: [{ name: 'u', password: 'plain$two' }] } }).access, first.guard);
    assert.equal((await changed.authenticate('u', 'one', '127.0.0.1'))?.code, ErrorCode.AuthFailed);
    assert.equal(await changed.authenticate('u', 'two', '127.0.0.1'), null);
    const uncached = new AccessControl(validateConfig({ access: { users: [{ name: 'u', password: 'plain$two' }], credentialsTtlMs: 0 } }).access, first.guard);
    hashes = 0;
    for (let i = 0; i < 3; i++) assert.equal(await uncached.authenticate('u', 'two', '127.0.0.1'), null);
    assert.equal(hashes, 3);
  });

  it('cache and client table stay within their bounds', async () => {
    const users = Array.from({ length: 40 }, (_, i) => ({ name: `u${i}`, password: `plain$p${i}` }));
    const guard = new AuthGuard({ ...AUTH_GUARD_DEFAULTS, cacheEntries: 10, clients: 10 });
    const a = new AccessControl(validateConfig({ access: { users } }).access, guard);
    for (let i = 0; i < 40; i++) {
      assert.equal(await a.authenticate(`u${i}`, `p${i}`, `10.0.0.${i}`), null);
      assert.equal((await a.authenticate(`u${i}`, 'wrong', `10.0.1.${i}`))?.code, ErrorCode.AuthFailed);
    }
    assert.deepEqual(guard.sizes, { cache: 10, clients: 10 });
  });
});

describe('unknown users and wrong passwords', () => {
  it('get the same answer and cost the same scrypt', async () => {
    const { proxy, metrics } = await startProxy({ users: [{ name: 'alice', password: ALICE_HASH }] });
    running = proxy;
    const strip = (a: Answer): unknown => ({ ...a, headers: { ...a.headers, date: undefined } });
    let before = scryptCalls.length;
    const wrong = await get(proxy, basic('alice', 'nope'), '127.0.0.2');
    assert.deepEqual(scryptCalls.slice(before), [COST], 'wrong password: one scrypt at the user cost');
    before = scryptCalls.length;
    const unknown = await get(proxy, basic('mallory', 'nope'), '127.0.0.3');
    assert.deepEqual(scryptCalls.slice(before), [COST], 'unknown user: one scrypt at the same cost');
    assert.equal(wrong.status, 407);
    assert.deepEqual(strip(unknown), strip(wrong));
    const auth = (user: string): Buffer => Buffer.concat([Buffer.from([5, 1, 2, 1, user.length]), Buffer.from(user), Buffer.from([4]), Buffer.from('nope')]);
    const socksWrong = await rawExchange(proxy.port, auth('alice'));
    const socksUnknown = await rawExchange(proxy.port, auth('mallory'));
    assert.deepEqual(socksUnknown, socksWrong);
    assert.deepEqual(socksWrong.received, Buffer.from([5, 2, 1, 1]));
    assert.equal(await counter(metrics, 'mptcp_proxy_auth_failures_total', { reason: 'wrong_password' }), 2);
    assert.equal(await counter(metrics, 'mptcp_proxy_auth_failures_total', { reason: 'unknown_user' }), 2);
    assert.deepEqual(
      proxy.errors.map((e) => e.err.code),
      new Array(4).fill(ErrorCode.AuthFailed),
    );
  });
});

describe('repeated failures', () => {
  it('slow down the failing client only, and its parallel guesses are refused at once', async () => {
    // Short delays keep the test quick; the order of answers, not their time, is asserted.
    const guard = new AuthGuard({ ...AUTH_GUARD_DEFAULTS, delayBaseMs: 500 });
    const { proxy, metrics } = await startProxy({ users: [{ name: 'alice', password: 'plain$secret' }] }, guard);
    running = proxy;
    for (let i = 0; i < 3; i++) assert.equal((await get(proxy, basic('alice', `bad${i}`), '127.0.0.2')).status, 407);
    const order: string[] = [];
    const slowed = get(proxy, basic('alice', 'bad3'), '127.0.0.2').then((a) => order.push(`A ${a.status}`));
    await new Promise((r) => setTimeout(r, 20)); // let A's check start before B's and A's second
    const parallel = await get(proxy, basic('alice', 'bad4'), '127.0.0.2');
    order.push(`A parallel ${parallel.status}`);
    const other = await get(proxy, basic('alice', 'bad'), '127.0.0.3');
    order.push(`B ${other.status}`);
    await slowed;
    assert.deepEqual(order, ['A parallel 503', 'B 407', 'A 407']);
    assert.equal(parallel.headers['x-mptcp-proxy-error'], ErrorCode.AuthBusy);
    assert.equal(await counter(metrics, 'mptcp_proxy_auth_failures_total', { reason: 'wrong_password' }), 5);
    assert.equal(await counter(metrics, 'mptcp_proxy_auth_failures_total', { reason: 'throttled' }), 1);
    // The right password from the slowed client still gets in once its check is its only one.
    assert.equal((await get(proxy, basic('alice', 'secret'), '127.0.0.2')).status, 200);
  });

  it('a client that failed twice is hashed on a thread at nice 19; others, and the proxy, keep their priority', async () => {
    // The runner may itself be niced: the proxy's thread must keep the nice it started with.
    const startNice = threadNice(currentThreadId());
    const guard = new AuthGuard({ ...AUTH_GUARD_DEFAULTS, delayBaseMs: 10 });
    const users = [{ name: 'alice', password: ALICE_HASH }, { name: 'bob', password: hashPassword('bobs', COST) }];
    const { proxy, metrics } = await startProxy({ users }, guard);
    running = proxy;
    for (let i = 0; i < 2; i++) assert.equal((await get(proxy, basic('alice', `bad${i}`), '127.0.0.2')).status, 407);
    assert.equal(await counter(metrics, 'mptcp_proxy_auth_hashes_total', { lane: 'idle' }), 0);
    // From now on this client's checks, right or wrong, run on the low-priority thread.
    assert.equal((await get(proxy, basic('alice', 'bad2'), '127.0.0.2')).status, 407);
    assert.equal((await get(proxy, basic('bob', 'bobs'), '127.0.0.2')).status, 200);
    assert.equal((await get(proxy, basic('alice', 'secret'), '127.0.0.3')).status, 200);
    assert.equal(await counter(metrics, 'mptcp_proxy_auth_hashes_total', { lane: 'idle' }), 2);
    assert.equal(await counter(metrics, 'mptcp_proxy_auth_hashes_total', { lane: 'normal' }), 3);
    const tid = guard.idleHasher.threadId;
    assert.ok(tid !== null && tid !== currentThreadId(), 'the idle lane has its own thread');
    assert.equal(threadNice(tid), 19);
    assert.equal(threadNice(currentThreadId()), startNice);
  });

  it('a full hash queue refuses at once with the busy answer, counted', async () => {
    const guard = new AuthGuard({ ...AUTH_GUARD_DEFAULTS, concurrency: 1, queue: 1 });
    const { proxy, metrics } = await startProxy({ users: [{ name: 'alice', password: ALICE_HASH }] }, guard);
    running = proxy;
    const answers = await Promise.all([2, 3, 4, 5].map((i) => get(proxy, basic('alice', `guess${i}`), `127.0.0.${i}`)));
    assert.deepEqual(answers.map((a) => a.status).sort(), [407, 407, 503, 503]);
    assert.equal(await counter(metrics, 'mptcp_proxy_auth_failures_total', { reason: 'busy' }), 2);
    assert.equal(await counter(metrics, 'mptcp_proxy_auth_hashes_total'), 2);
  });
});
