/**
 * The handshakes with a parent, on loopback against scripted parents (real sockets) and this
 * proxy's own SOCKS5 front end: what each answer means (a parent failure that the next parent may
 * do better on, or the destination's refusal that ends the connection), credentials sent, and
 * bytes the destination sent right behind the answer kept for the tunnel. Then the router: every
 * parent failing gives MPX_PARENTS_DOWN; a parent's refusal about the destination is not failed over.
 */
import assert from 'node:assert/strict';
import net from 'node:net';
import { after, before, test } from 'node:test';
import { AccessControl } from '../../src/access/access';
import { validateConfig } from '../../src/config/schema';
import type { ParentConfig } from '../../src/config/upstream';
import { ClientConnection } from '../../src/core/connection';
import { ErrorCode, ProxyError } from '../../src/core/errors';
import { ProxyEvents } from '../../src/core/events';
import { silentLogger } from '../../src/log/logger';
import { dialParent, ParentFailure } from '../../src/upstream/dial';
import { httpConnect } from '../../src/upstream/http-parent';
import { UpstreamRouter } from '../../src/upstream/router';
import { socks5Connect } from '../../src/upstream/socks-parent';
import { startSocksProxy, type SocksProxy } from '../socks/harness';

/** A parent that reads one request head and answers `reply` (then keeps the socket open); its heads are kept. */
async function scriptedParent(reply: string): Promise<{ port: number; heads: string[]; close(): Promise<void> }> {
  const heads: string[] = [];
  const sockets = new Set<net.Socket>();
  const server = net.createServer((s) => {
    sockets.add(s);
    s.on('error', () => {});
    let head = '';
    s.on('data', (d: Buffer) => {
      head += d.toString('latin1');
      if (!head.includes('\r\n\r\n')) return;
      heads.push(head);
      if (reply === 'close') s.destroy();
      else s.write(reply);
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return {
    port: (server.address() as net.AddressInfo).port,
    heads,
    close: () => {
      for (const s of sockets) s.destroy();
      return new Promise((r) => server.close(() => r()));
    },
  };
}

const parent = (port: number, o: Partial<ParentConfig> = {}): ParentConfig => ({ name: `p${port}`, protocol: 'http', host: '127.0.0.1', port, mptcp: false, ...o });
const DEST = { host: 'origin.example', port: 443 };

async function viaHttp(reply: string, o: Partial<ParentConfig> = {}): Promise<{ result: net.Socket | ProxyError | ParentFailure; heads: string[] }> {
  const p = await scriptedParent(reply);
  try {
    const cfg = parent(p.port, o);
    const result = await httpConnect(await dialParent(cfg, 1000), cfg, DEST, 1000).catch((e: ProxyError | ParentFailure) => e);
    return { result, heads: p.heads };
  } finally {
    await p.close();
  }
}

const codeOf = (r: unknown): string => (r instanceof ParentFailure ? `parent-failure ${r.error.code}` : r instanceof ProxyError ? r.code : 'socket');

test('HTTP parent: CONNECT with Basic credentials; early bytes behind the 200 stay for the tunnel', async () => {
  const { result, heads } = await viaHttp('HTTP/1.1 200 Connection established\r\nX: y\r\n\r\nEARLY', { user: 'edge', password: 'pa:ss' });
  assert.match(heads[0]!, /^CONNECT origin\.example:443 HTTP\/1\.1\r\nHost: origin\.example:443\r\nProxy-Authorization: Basic ZWRnZTpwYTpzcw==\r\n\r\n$/);
  assert.ok(result instanceof net.Socket);
  assert.equal(result.isPaused(), true);
  assert.equal(result.read()?.toString(), 'EARLY');
  result.destroy();
});

test('HTTP parent answers: 407, garbage, an early close fail the parent; 403, 504, 503 are about the destination', async () => {
  const cases: [string, string][] = [
    ['HTTP/1.1 407 Proxy Authentication Required\r\n\r\n', `parent-failure ${ErrorCode.ParentRefused}`],
    ['SSH-2.0-OpenSSH\r\n\r\n', `parent-failure ${ErrorCode.ParentRefused}`],
    ['close', `parent-failure ${ErrorCode.UpstreamReset}`],
    ['HTTP/1.1 403 Forbidden\r\n\r\n', ErrorCode.DestDenied],
    ['HTTP/1.0 504 Gateway Timeout\r\n\r\n', ErrorCode.ConnectTimeout],
    ['HTTP/1.1 503 Service Unavailable\r\n\r\n', ErrorCode.ParentRefused],
  ];
  for (const [reply, want] of cases) assert.equal(codeOf((await viaHttp(reply)).result), want, reply);
});

test('a parent that does not answer the CONNECT in time: the destination is slow, not the parent', async () => {
  const { result } = await viaHttp('HTTP/1.1 200 OK\r\n');
  assert.equal(codeOf(result), ErrorCode.ConnectTimeout);
});

let socksParent: SocksProxy;
let banner: net.Server;
let bannerPort: number;
before(async () => {
  // This proxy's own SOCKS5 front end with a user, as the parent; loopback destinations opened.
  socksParent = await startSocksProxy({ access: { allowDest: ['127.0.0.0/8'], users: [{ name: 'edge', password: 'plain$pw' }] } });
  // A destination that speaks first, so its bytes may ride right behind the parent's reply.
  banner = net.createServer((s) => s.end('BANNER'));
  await new Promise<void>((r) => banner.listen(0, '127.0.0.1', r));
  bannerPort = (banner.address() as net.AddressInfo).port;
});
after(async () => {
  await socksParent.close();
  await new Promise((r) => banner.close(r));
});

test('SOCKS5 parent: RFC 1929 credentials, the destination speaking first keeps its bytes; refusals mapped', async () => {
  const cfg = parent(socksParent.port, { protocol: 'socks5', user: 'edge', password: 'pw' });
  for (let i = 0; i < 20; i++) {
    const s = await socks5Connect(await dialParent(cfg, 1000), cfg, { host: '127.0.0.1', port: bannerPort }, 2000);
    let got = '';
    s.on('data', (d: Buffer) => (got += d.toString()));
    s.resume();
    await new Promise((r) => s.once('end', r));
    assert.equal(got, 'BANNER', `round ${i}`);
    s.destroy();
  }
  const closed = await new Promise<number>((r) => {
    const t = net.createServer();
    t.listen(0, '127.0.0.1', () => {
      const port = (t.address() as net.AddressInfo).port;
      t.close(() => r(port));
    });
  });
  const refused = await socks5Connect(await dialParent(cfg, 1000), cfg, { host: '127.0.0.1', port: closed }, 2000).catch((e: unknown) => e);
  assert.equal(codeOf(refused), ErrorCode.ConnectRefused);
  const bad = { ...cfg, password: 'wrong' };
  const denied = await socks5Connect(await dialParent(bad, 1000), bad, { host: '127.0.0.1', port: bannerPort }, 2000).catch((e: unknown) => e);
  assert.equal(codeOf(denied), `parent-failure ${ErrorCode.ParentRefused}`);
  // A parent that hangs up at once fails now, not at the handshake's timeout.
  const hangUp = net.createServer((s) => s.once('data', () => s.end()));
  await new Promise<void>((r) => hangUp.listen(0, '127.0.0.1', r));
  const gone = parent((hangUp.address() as net.AddressInfo).port, { protocol: 'socks5' });
  const started = Date.now();
  const failed = await socks5Connect(await dialParent(gone, 1000), gone, { host: '127.0.0.1', port: bannerPort }, 10_000).catch((e: unknown) => e);
  assert.equal(codeOf(failed), `parent-failure ${ErrorCode.ParentRefused}`);
  assert.ok(Date.now() - started < 5000, `${Date.now() - started} ms`);
  await new Promise((r) => hangUp.close(r));
});

test('router: every parent failing is MPX_PARENTS_DOWN naming each; a refusal about the destination is not failed over', async () => {
  const [a, b, c] = [await scriptedParent('HTTP/1.1 407 No\r\n\r\n'), await scriptedParent('close'), await scriptedParent('HTTP/1.1 503 No\r\n\r\n')];
  const config = validateConfig({
    upstream: {
      parents: [{ name: 'a', url: `http://127.0.0.1:${a.port}` }, { name: 'b', url: `http://127.0.0.1:${b.port}` }, { name: 'c', url: `http://127.0.0.1:${c.port}` }],
      routes: [{ match: { listener: 'only-c' }, via: 'c' }, { via: ['a', 'b'] }],
      probe: { intervalMs: 3_600_000 },
    },
  });
  const events = new ProxyEvents();
  const health: string[] = [];
  events.on('parent-health', (p, state) => health.push(`${p} ${state}`));
  const router = new UpstreamRouter(config.upstream, new AccessControl(config.access), events, silentLogger());
  try {
    const conn = new ClientConnection(new net.Socket(), 'any', -1);
    const down = await router.connect(DEST, conn).catch((e: unknown) => e);
    assert.ok(down instanceof ProxyError && down.code === ErrorCode.ParentsDown, String(down));
    assert.match(down.message, /a: .*407/);
    assert.match(down.message, /b: .*closed before answering/);
    assert.ok(health.includes('a down') && health.includes('b down'), health.join(', '));
    // Both down now: refused without a connection attempt.
    const heads = a.heads.length + b.heads.length;
    assert.equal(codeOf(await router.connect(DEST, conn).catch((e: unknown) => e)), ErrorCode.ParentsDown);
    assert.equal(a.heads.length + b.heads.length, heads);

    const onlyC = new ClientConnection(new net.Socket(), 'only-c', -1);
    assert.equal(codeOf(await router.connect(DEST, onlyC).catch((e: unknown) => e)), ErrorCode.ParentRefused);
    assert.equal(onlyC.parent, 'c');
    assert.ok(!health.includes('c down'), health.join(', '));
    // The destination policy runs first: a denied literal never reaches a parent.
    const before = c.heads.length;
    assert.equal(codeOf(await router.connect({ host: '127.0.0.1', port: 80 }, onlyC).catch((e: unknown) => e)), ErrorCode.DestDenied);
    assert.equal(c.heads.length, before);
  } finally {
    router.close();
    await Promise.all([a.close(), b.close(), c.close()]);
  }
  assert.ok(health.includes('a removed'));
});
