/**
 * Parent proxies end to end: an edge proxy (the CLI, in the proxy namespace) chains through
 * parents in the server namespace — a second instance of this proxy as HTTP parent and as SOCKS5
 * parent (with credentials), a real Squid and a real Dante, and two more instances as a failover
 * pool (one HTTP, one SOCKS5 over MPTCP). Each edge listener is routed to one of them by the
 * upstream routes. Checked: byte-identical payloads through every chain with CONNECT, absolute-form
 * HTTP (both ways), SOCKS5 and SOCKS4; the parent named in the logs and metrics; the destination
 * policy applied before any parent; failover when a parent dies mid-run; refusal with
 * MPX_PARENTS_DOWN in every protocol when all are down; recovery when a parent comes back; a reload
 * that swaps the parents; the edge's descriptors back to where they started.
 */
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { writeFileSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import YAML from 'yaml';
import { connectionLogFor, curl, ProxiedHttp, type CurlResult, type ProxyKind } from '../../testkit/clients';
import { socketFds } from '../../testkit/fds';
import { startLegacyServer, type LegacyServer } from '../../testkit/legacy-server';
import { metricValue } from '../../testkit/metrics';
import { startDante, startSquid, type ThirdPartyProxy } from '../../testkit/parent-proxies';
import { patternSha256 } from '../../testkit/pattern';
import { killGroup } from '../../testkit/run';
import { sleep } from '../../testkit/sleep';
import { useTestbed, type ProxyHandle, type ProxyLogLine } from '../../testkit/testbed';

const PARENT_PORTS = { ours: 3130, b: 3131, c: 3132, squid: 3129, dante: 1085 };
/** Edge listeners (mixed: HTTP and SOCKS on one port), one per route. */
const EDGE = { oursHttp: 3201, oursSocks: 3202, squid: 3203, dante: 3204, pool: 3205, direct: 3206, badAuth: 3207 };
const CONVERT_PORT = 5124;
const CLIENT_KINDS: ProxyKind[] = ['connect', 'http', 'socks5h', 'socks4'];

describe('parent proxies upstream', { timeout: 300_000 }, () => {
  const tb = useTestbed({ before, after }, { shapeMbit: 0 });
  let server: LegacyServer;
  let edge: ProxyHandle;
  let ours: ProxyHandle;
  let poolB: ProxyHandle;
  let poolC: ProxyHandle;
  let squid: ThirdPartyProxy;
  let dante: ThirdPartyProxy;
  let configFile: string;
  let fdBaseline: number;

  const S = (): string => tb().addr.server;
  const parentArgs = (flag: string, port: number, extra: string[] = []): string[] => [flag, `${S()}:${port}`, '--allow-client', tb().addr.serverSubnet, '--log-format', 'json', '--no-metrics', ...extra];
  const startB = (): Promise<ProxyHandle> => tb().startProxy(parentArgs('--mixed', PARENT_PORTS.b), { ns: 'server' });
  const startC = (): Promise<ProxyHandle> => tb().startProxy(parentArgs('--mixed', PARENT_PORTS.c), { ns: 'server' });

  function edgeConfig(directVia: string | string[] = 'direct'): Record<string, unknown> {
    const { addr } = tb();
    const listeners = Object.entries(EDGE).map(([name, port]) => ({ name, protocol: 'mixed', listen: `${addr.proxy1}:${port}` }));
    return {
      listeners: [...listeners, { name: 'convert', protocol: 'convert', listen: `${addr.proxy1}:${CONVERT_PORT}` }],
      access: { allowClients: [addr.path1Subnet, addr.path2Subnet], denyDest: [`${addr.server.replace(/\.\d+$/, '.99')}/32`] },
      upstream: {
        parents: [
          { name: 'ours-http', url: `http://${S()}:${PARENT_PORTS.ours}`, user: 'bob', password: 'pw' },
          { name: 'ours-socks', url: `socks5://${S()}:${PARENT_PORTS.ours}`, user: 'bob', password: 'pw' },
          { name: 'squid', url: `http://${S()}:${PARENT_PORTS.squid}` },
          { name: 'dante', url: `socks5://${S()}:${PARENT_PORTS.dante}` },
          { name: 'b', url: `http://${S()}:${PARENT_PORTS.b}` },
          { name: 'c', url: `socks5://${S()}:${PARENT_PORTS.c}`, mptcp: true },
          { name: 'ours-bad', url: `http://bob:wrong@${S()}:${PARENT_PORTS.ours}` },
        ],
        routes: [
          { match: { listener: 'oursHttp' }, via: 'ours-http' },
          { match: { listener: 'oursSocks' }, via: 'ours-socks' },
          { match: { listener: 'squid' }, via: 'squid' },
          { match: { listener: 'dante' }, via: 'dante' },
          { match: { listener: 'pool' }, via: ['b', 'c'] },
          { match: { listener: 'convert' }, via: ['b', 'c'] },
          { match: { listener: 'badAuth' }, via: 'ours-bad' },
          { match: { listener: 'direct' }, via: directVia },
        ],
        probe: { intervalMs: 200, timeoutMs: 500, downAfter: 2, upAfter: 1 },
      },
      metrics: { listen: `127.0.0.1:9464` },
      log: { level: 'debug', format: 'json' },
    };
  }

  // Sockets: the splice relay keeps a pool of pipes that grows with concurrency, by design.
  const edgeFds = (): number => socketFds(edge.proc.pid!);
  const metrics = async (): Promise<string> => (await tb().exec('proxy', ['curl', '-sS', '--noproxy', '*', 'http://127.0.0.1:9464/metrics'])).stdout;
  const through = (port: number, kind: ProxyKind, size: number, seed: number) => curl(tb(), { url: server.url(`/bytes/${size}?seed=${seed}`), proxy: { kind, host: tb().addr.proxy1, port } });
  /** The edge's connection line for curl's connection, among lines logged since `from` (client ports get reused). */
  const lineSince = (from: number, r: CurlResult): Promise<ProxyLogLine> => {
    const client = `${String(r.writeOut.local_ip)}:${String(r.writeOut.local_port)}`;
    return edge.waitForLog((l) => l.message === 'connection' && l.client === client && edge.logs.indexOf(l) >= from, 5000);
  };
  const parentUp = (name: string, up: boolean) => (l: ProxyLogLine): boolean => l.message === (up ? 'parent proxy up' : 'parent proxy down') && l.parent === name;

  before(async () => {
    // Convert clients put their message and first bytes in the SYN: those bytes must follow the
    // tunnel through the parent.
    await tb().exec('client', ['sysctl', '-qw', 'net.ipv4.tcp_fastopen=5']);
    await tb().exec('proxy', ['sysctl', '-qw', 'net.ipv4.tcp_fastopen=3']);
    server = await startLegacyServer(tb());
    ours = await tb().startProxy(parentArgs('--mixed', PARENT_PORTS.ours, ['--user', 'bob:plain$pw']), { ns: 'server' });
    [poolB, poolC] = [await startB(), await startC()];
    squid = await startSquid(tb(), 'server', S(), PARENT_PORTS.squid);
    dante = await startDante(tb(), 'server', S(), PARENT_PORTS.dante);
    configFile = path.join(tb().tmpDir, 'edge.yaml');
    writeFileSync(configFile, YAML.stringify(edgeConfig()));
    edge = await tb().startProxy(['--config', configFile]);
    await edge.waitForLog((l) => l.message === 'listening', 15_000);
    // Warm up once (first-use allocations), then take the descriptor baseline.
    const warm = await through(EDGE.pool, 'connect', 1000, 1);
    assert.equal(warm.exitCode, 0, `${warm.errorMessage} ${warm.stderr} ${edge.stderr.slice(-3000)} ${poolB.stderr.slice(-2000)}`);
    await sleep(300);
    fdBaseline = edgeFds();
  });
  after(async () => {
    await Promise.all([edge, ours, poolB, poolC].map((h) => h?.stop()));
  });

  /** Lines of a parent's log that name the legacy server's HTTP port (not the probes' visits); Dante writes "ADDR.PORT". */
  const mentions = (text: () => string) => (): number => text().split('\n').filter((l) => l.includes(`${server.host}:${server.httpPort}`) || l.includes(`${server.host}.${server.httpPort}`)).length;
  const chains: { listener: keyof typeof EDGE; parent: string; log: () => number }[] = [
    { listener: 'oursHttp', parent: 'ours-http', log: mentions(() => ours.stderr) },
    { listener: 'oursSocks', parent: 'ours-socks', log: mentions(() => ours.stderr) },
    { listener: 'squid', parent: 'squid', log: mentions(() => squid.log()) },
    { listener: 'dante', parent: 'dante', log: mentions(() => dante.log()) },
  ];
  for (const { listener, parent, log } of chains) {
    test(`through ${parent}: CONNECT, absolute-form HTTP, SOCKS5, SOCKS4 deliver the exact bytes`, async () => {
      for (const [i, kind] of CLIENT_KINDS.entries()) {
        const seed = 10 + i;
        const size = 1_000_003;
        const before = log();
        const r = await through(EDGE[listener], kind, size, seed);
        assert.equal(r.exitCode, 0, `${kind}: ${r.errorMessage} ${r.stderr}`);
        assert.equal(r.sha256, patternSha256(seed, size), kind);
        const line = await connectionLogFor(edge, r);
        assert.equal(line.parent, parent, `${kind}: ${JSON.stringify(line)}`);
        assert.equal(line.result, 'ok', kind);
        // The parent itself carried it: its own log grows (parents write at the end of a transaction).
        for (let t = 0; t < 50 && log() === before; t++) await sleep(100);
        assert.ok(log() > before, `${kind}: nothing in ${parent}'s log`);
      }
      // Upload and download in one request, absolute-form: the body comes back byte for byte.
      const body = randomBytes(1 << 20);
      const client = await ProxiedHttp.open(tb(), tb().addr.proxy1, EDGE[listener]);
      const echoed = await client.request('POST', server.url('/echo'), { body: [body], contentLength: body.length });
      assert.equal(echoed.status, 200);
      assert.equal(echoed.sha256, createHash('sha256').update(body).digest('hex'));
      client.agent.destroy();
    });
  }

  test('the parent instance saw the edge authenticate and the destination the client asked for', async () => {
    const lines = ours.logs.filter((l) => l.message === 'connection' && l.result === 'ok');
    assert.ok(lines.some((l) => l.user === 'bob' && l.protocol === 'connect' && l.destination === `${server.host}:${server.httpPort}`), 'no CONNECT by bob');
    assert.ok(lines.some((l) => l.user === 'bob' && l.protocol === 'http'), 'no absolute-form request by bob');
    assert.ok(lines.some((l) => l.user === 'bob' && l.protocol === 'socks5'), 'no SOCKS5 by bob');
  });

  test('the parent over MPTCP when configured (c), plain TCP otherwise (b)', async () => {
    for (let i = 0; i < 6; i++) assert.equal((await through(EDGE.pool, 'connect', 1000, 2)).exitCode, 0);
    const mptcpOf = (h: ProxyHandle): Set<unknown> => new Set(h.logs.filter((l) => l.message === 'connection' && l.result === 'ok').map((l) => l.mptcp));
    // Both served some (probe latencies decide the order); whichever did shows its transport.
    const [b, c] = [mptcpOf(poolB), mptcpOf(poolC)];
    assert.ok(b.size + c.size > 0);
    if (b.size > 0) assert.deepEqual([...b], [false]);
    if (c.size > 0) assert.deepEqual([...c], [true]);
  });

  test('the destination policy applies before a parent: denied literals are refused at the edge', async () => {
    // Lines for what a client asked for (the probes' visits name no destination).
    const parentLines = (): number => ours.logs.filter((l) => l.message === 'connection' && l.destination !== undefined).length;
    const served = parentLines();
    for (const url of ['http://127.0.0.1:80/', `http://${S().replace(/\.\d+$/, '.99')}:80/`]) {
      for (const kind of ['connect', 'http'] as const) {
        const r = await curl(tb(), { url, proxy: { kind, host: tb().addr.proxy1, port: EDGE.oursHttp } });
        assert.equal(kind === 'connect' ? r.httpConnect : r.httpCode, 403, `${kind} ${url}`);
        assert.equal((await connectionLogFor(edge, r)).result, 'MPX_DEST_DENIED');
      }
    }
    await sleep(200);
    assert.equal(parentLines(), served, 'the parent was asked');
  });

  test('wrong credentials for the only parent: MPX_PARENTS_DOWN, and that parent marked down; a forward gets 502, not the 407', async () => {
    const r = await through(EDGE.badAuth, 'connect', 1000, 3);
    assert.equal(r.httpConnect, 502);
    assert.equal((await connectionLogFor(edge, r)).result, 'MPX_PARENTS_DOWN');
    await edge.waitForLog(parentUp('ours-bad', false), 5000);
    // The probe (a TCP connect) brings it back; the forwarded request then meets the parent's 407.
    await edge.waitForLog(parentUp('ours-bad', true), 5000);
    const f = await through(EDGE.badAuth, 'http', 1000, 3);
    assert.equal(f.httpCode, 502);
    assert.equal((await connectionLogFor(edge, f)).result, 'MPX_PARENT_REFUSED');
  });

  test('direct route: no parent', async () => {
    const r = await through(EDGE.direct, 'socks5h', 5000, 4);
    assert.equal(r.exitCode, 0, r.errorMessage);
    const line = await connectionLogFor(edge, r);
    assert.equal(line.parent, undefined);
    assert.equal(line.upstream, server.host);
  });

  test('failover: a parent dies mid-run, new connections go to the other; refusal when all are down; recovery', async () => {
    // 30 downloads, 3 at a time, through the pool; b is killed after the first 10 are done.
    let done = 0;
    const results: { ok: boolean; parent: unknown; err: string }[] = [];
    let killed = false;
    const worker = async (w: number): Promise<void> => {
      for (let i = w; i < 30; i += 3) {
        const from = edge.logs.length;
        const r = await through(EDGE.pool, i % 2 === 0 ? 'connect' : 'socks5h', 200_000, 20 + i);
        const ok = r.exitCode === 0 && r.sha256 === patternSha256(20 + i, 200_000);
        const line = await lineSince(from, r);
        results.push({ ok, parent: line.parent, err: `${r.errorMessage} ${String(line.result)}` });
        if (++done === 10 && !killed) {
          killed = true;
          killGroup(poolB.proc.pid!, 'SIGKILL');
          await poolB.exited;
        }
      }
    };
    await Promise.all([0, 1, 2].map(worker));
    const failed = results.filter((r) => !r.ok);
    // At most the three in flight when b died.
    assert.ok(failed.length <= 3, JSON.stringify(failed));
    assert.ok(results.slice(15).every((r) => r.ok && r.parent === 'c'), JSON.stringify(results.slice(15)));
    await edge.waitForLog(parentUp('b', false), 5000);

    // All down: every protocol refuses with its code for MPX_PARENTS_DOWN.
    killGroup(poolC.proc.pid!, 'SIGKILL');
    await poolC.exited;
    await edge.waitForLog(parentUp('c', false), 5000);
    const viaConnect = await through(EDGE.pool, 'connect', 1000, 5);
    assert.equal(viaConnect.httpConnect, 502);
    assert.equal((await connectionLogFor(edge, viaConnect)).result, 'MPX_PARENTS_DOWN');
    const client = await ProxiedHttp.open(tb(), tb().addr.proxy1, EDGE.pool);
    const forward = await client.request('GET', server.url('/bytes/10'));
    assert.equal(forward.status, 502);
    assert.equal(forward.headers['x-mptcp-proxy-error'], 'MPX_PARENTS_DOWN');
    client.agent.destroy();
    const dest = Buffer.from([...S().split('.').map(Number), server.httpPort >> 8, server.httpPort & 0xff]);
    const socks5 = await rawExchange(await tb().bridge('client', tb().addr.proxy1, EDGE.pool), [Buffer.from([5, 1, 0]), Buffer.concat([Buffer.from([5, 1, 0, 1]), dest])], 10);
    assert.equal(socks5[1], 0x01, `SOCKS5 reply ${socks5.toString('hex')}`);
    const socks4 = await rawExchange(await tb().bridge('client', tb().addr.proxy1, EDGE.pool), [Buffer.concat([Buffer.from([4, 1]), dest.subarray(4), dest.subarray(0, 4), Buffer.from([0])])], 8);
    assert.equal(socks4[1], 0x5b, `SOCKS4 reply ${socks4.toString('hex')}`);
    const conv = await tb().exec('client', ['python3', 'bench/tools/convert-client.py', `${tb().addr.proxy1}:${CONVERT_PORT}`, `${S()}:${server.echoPort}`, '--summary', '--data-file', '/dev/null'], { timeoutMs: 30_000 });
    const summary = JSON.parse(conv.stdout) as { reply: { type: string; code?: number }[] | null };
    assert.deepEqual(summary.reply?.map((t) => [t.type, t.code]), [['error', 65]], conv.stdout);
    assert.ok(metricValue(await metrics(), 'mptcp_proxy_errors_total', 'code="MPX_PARENTS_DOWN"') >= 5);
    const m = await metrics();
    assert.equal(metricValue(m, 'mptcp_proxy_parent_up', 'parent="b"'), 0);
    assert.equal(metricValue(m, 'mptcp_proxy_parent_up', 'parent="c"'), 0);
    assert.ok(metricValue(m, 'mptcp_proxy_parent_failures_total', 'parent="b"', 'stage="probe"') >= 2);

    // b comes back on its port: the probe marks it up and it carries again, convert included.
    poolB = await startB();
    await edge.waitForLog(parentUp('b', true), 5000);
    const back = await through(EDGE.pool, 'socks5h', 100_000, 6);
    assert.equal(back.exitCode, 0, back.errorMessage);
    assert.equal(back.sha256, patternSha256(6, 100_000));
    assert.equal((await connectionLogFor(edge, back)).parent, 'b');
    const data = path.join(tb().tmpDir, 'convert.bin');
    const payload = randomBytes(1 << 20);
    writeFileSync(data, payload);
    const conv2 = await tb().exec('client', ['python3', 'bench/tools/convert-client.py', `${tb().addr.proxy1}:${CONVERT_PORT}`, `${S()}:${server.echoPort}`, '--summary', '--data-file', data], { timeoutMs: 30_000 });
    const s2 = JSON.parse(conv2.stdout) as { reply: { type: string }[]; received: number; sha256: string };
    assert.deepEqual(s2.reply.map((t) => t.type), ['extended-tcp-header']);
    assert.equal(s2.received, payload.length);
    assert.equal(s2.sha256, createHash('sha256').update(payload).digest('hex'));
    assert.ok(metricValue(await metrics(), 'mptcp_proxy_parent_connections_total', 'parent="b"') >= 2);
  });

  test('SIGHUP swaps the parents: the direct listener now goes through squid', async () => {
    writeFileSync(configFile, YAML.stringify(edgeConfig('squid')));
    const reloads = edge.logs.filter((l) => l.message === 'config reloaded').length;
    edge.proc.kill('SIGHUP');
    await edge.waitForLog(() => edge.logs.filter((l) => l.message === 'config reloaded').length > reloads, 10_000);
    const r = await through(EDGE.direct, 'connect', 10_000, 7);
    assert.equal(r.exitCode, 0, r.errorMessage);
    assert.equal((await connectionLogFor(edge, r)).parent, 'squid');
  });

  test("the edge's sockets are back to where they started", async () => {
    let n = edgeFds();
    for (let i = 0; i < 50 && n > fdBaseline; i++) {
      await sleep(100);
      n = edgeFds();
    }
    assert.ok(n <= fdBaseline, `sockets ${fdBaseline} -> ${n}: ${(await tb().exec('proxy', ['ss', '-tanp'])).stdout}`);
  });
});

/** Send each message after the previous answer; resolve with the last answer's first `want` bytes (or all until close). */
async function rawExchange(socketPath: string, messages: Buffer[], want: number): Promise<Buffer> {
  const s = net.connect(socketPath);
  await once(s, 'connect');
  let got = Buffer.alloc(0);
  s.on('data', (d: Buffer) => (got = Buffer.concat([got, d])));
  const closed = once(s, 'close');
  try {
    for (const [i, m] of messages.entries()) {
      const start = got.length;
      s.write(m);
      const need = i === messages.length - 1 ? want : 2;
      const deadline = Date.now() + 10_000;
      while (got.length - start < need && !s.destroyed && !s.readableEnded && Date.now() < deadline) await sleep(20);
      if (i === messages.length - 1) return got.subarray(start);
    }
    return got;
  } finally {
    s.destroy();
    await closed;
  }
}
