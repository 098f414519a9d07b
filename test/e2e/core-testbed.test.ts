/**
 * The testbed itself: both client paths carry an MPTCP connection's traffic, the aggregate beats
 * one path, each path is shaped in both directions, the legacy server and the unix bridge work,
 * and destroy() leaves nothing behind. Other e2e results are only as good as these facts.
 */
import assert from 'node:assert/strict';
import http from 'node:http';
import net from 'node:net';
import { once } from 'node:events';
import { after, before, describe, test } from 'node:test';
import { startLegacyServer, type LegacyServer } from '../../testkit/legacy-server';
import { patternSha256 } from '../../testkit/pattern';
import { run } from '../../testkit/run';
import { createTestbed, firstLine, useTestbed, withTestbed, type LinkCounters, type Testbed } from '../../testkit/testbed';
import { createHash } from 'node:crypto';

const IPERF_PORT = 5201;

interface IperfRun {
  mbit: number;
  /** Bytes moved (both directions) on each client path during the run. */
  pathBytes: [number, number];
}

/** Byte counters of the two proxy-side path interfaces (router mode: the links behind the router). */
const proxyPaths = (tb: Testbed): Promise<[LinkCounters, LinkCounters]> => Promise.all([tb.counters('proxy', tb.ifaces.proxy1), tb.counters('proxy', tb.ifaces.proxy2)]);

function startIperfServer(tb: Testbed): Promise<void> {
  // iperf3 serves one test at a time; the runs are sequential.
  tb.spawn('proxy', ['mptcpize', 'run', 'iperf3', '-s', '-B', tb.addr.proxy1, '-p', String(IPERF_PORT)]);
  return waitListening(tb, IPERF_PORT);
}

async function waitListening(tb: Testbed, port: number): Promise<void> {
  for (let i = 0; i < 100; i++) {
    if (await tb.listening('proxy', port)) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`nothing listens on ${port} in the proxy namespace`);
}

async function iperf(tb: Testbed, o: { mptcp: boolean; reverse: boolean; paths?: (tb: Testbed) => Promise<[LinkCounters, LinkCounters]> }): Promise<IperfRun> {
  const counters = o.paths ?? ((t: Testbed) => t.pathCounters());
  await tb.quietPaths();
  const before = await counters(tb);
  const r = await tb.exec('client', [...(o.mptcp ? ['mptcpize', 'run'] : []), 'iperf3', '-c', tb.addr.proxy1, '-p', String(IPERF_PORT), '-t', '3', '-J', ...(o.reverse ? ['-R'] : [])], { timeoutMs: 20_000 });
  assert.equal(r.code, 0, `iperf3 failed: ${r.stderr}${r.stdout.slice(0, 500)}`);
  const j = JSON.parse(r.stdout) as { end: { sum_received: { bits_per_second: number } } };
  const afterC = await counters(tb);
  const moved = (i: 0 | 1): number => afterC[i].rxBytes + afterC[i].txBytes - before[i].rxBytes - before[i].txBytes;
  return { mbit: j.end.sum_received.bits_per_second / 1e6, pathBytes: [moved(0), moved(1)] };
}

describe('testbed', { timeout: 120_000 }, () => {
  const tb = useTestbed({ before, after });
  let server: LegacyServer;

  before(async () => {
    server = await startLegacyServer(tb());
    await startIperfServer(tb());
  });

  for (const reverse of [false, true]) {
    const dir = reverse ? 'download (proxy→client, IFB-shaped)' : 'upload (client→proxy, egress-shaped)';

    test(`one MPTCP connection uses both paths and beats one path: ${dir}`, async (t) => {
      const r = await iperf(tb(), { mptcp: true, reverse });
      t.diagnostic(`MPTCP ${r.mbit.toFixed(1)} Mbit/s; path bytes ${r.pathBytes.join(' / ')}`);
      assert.ok(r.mbit > tb().shapeMbit * 1.4, `aggregate ${r.mbit.toFixed(1)} Mbit/s is not well above one path (${tb().shapeMbit})`);
      const total = r.pathBytes[0] + r.pathBytes[1];
      for (const b of r.pathBytes) assert.ok(b > total * 0.3, `paths unbalanced: ${r.pathBytes.join(' / ')}`);
    });

    test(`plain TCP stays on path1 at the shaped rate: ${dir}`, async (t) => {
      const r = await iperf(tb(), { mptcp: false, reverse });
      t.diagnostic(`TCP ${r.mbit.toFixed(1)} Mbit/s; path bytes ${r.pathBytes.join(' / ')}`);
      assert.ok(r.mbit <= tb().shapeMbit * 1.03, `plain TCP ${r.mbit.toFixed(1)} Mbit/s exceeds the ${tb().shapeMbit} Mbit/s shaping`);
      assert.ok(r.mbit > tb().shapeMbit * 0.8, `plain TCP ${r.mbit.toFixed(1)} Mbit/s is far below the shaped rate`);
      // A few stray packets (ARP-timed retransmits of earlier flows) may cross path2; a flow does not.
      assert.ok(r.pathBytes[1] < r.pathBytes[0] * 0.1, `plain TCP leaked onto path2: ${r.pathBytes.join(' / ')}`);
    });
  }

  test('the client cannot reach the legacy server except through the proxy', async () => {
    const r = await tb().exec('client', ['curl', '-sS', '--noproxy', '*', '-m', '2', '-o', '/dev/null', '-w', '%{http_code}', server.url('/bytes/10')]);
    assert.notEqual(r.code, 0, `direct client→server worked: ${r.stdout}`);
  });

  test('legacy server: deterministic bytes, echo, keep-alive (through the bridge from the proxy ns)', async () => {
    const sock = await tb().bridge('proxy', server.host, server.httpPort);
    const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
    try {
      const get = async (path: string, method = 'GET', body?: Buffer): Promise<{ sha: string; size: number; reused: boolean; chunked: boolean }> => {
        const req = http.request({ socketPath: sock, agent, method, path });
        req.end(body);
        const [res] = (await once(req, 'response')) as [http.IncomingMessage];
        const h = createHash('sha256');
        let size = 0;
        for await (const d of res as AsyncIterable<Buffer>) {
          h.update(d);
          size += d.length;
        }
        return { sha: h.digest('hex'), size, reused: req.reusedSocket, chunked: res.headers['transfer-encoding'] === 'chunked' };
      };
      const a = await get('/bytes/300001?seed=9');
      assert.equal(a.size, 300001);
      assert.equal(a.sha, patternSha256(9, 300001));
      const b = await get('/bytes/300001?seed=9&chunked=1');
      assert.equal(b.sha, a.sha, 'chunking changed the bytes');
      assert.ok(b.chunked && b.reused, 'second request not chunked or not on the kept-alive connection');
      assert.notEqual((await get('/bytes/300001?seed=10')).sha, a.sha, 'seed ignored');
      const payload = Buffer.from('hello echo');
      const e = await get('/echo', 'POST', payload);
      assert.equal(e.sha, createHash('sha256').update(payload).digest('hex'));
    } finally {
      agent.destroy();
    }
  });

  test('raw TCP echo port echoes and half-closes (through the bridge)', async () => {
    const sock = await tb().bridge('proxy', server.host, server.echoPort);
    const c = net.connect({ path: sock, allowHalfOpen: true });
    const chunks: Buffer[] = [];
    c.on('data', (d: Buffer) => chunks.push(d));
    c.end('ping-pong');
    await once(c, 'end');
    c.destroy();
    assert.equal(Buffer.concat(chunks).toString(), 'ping-pong');
  });
});

test('destroy removes namespaces, processes and the temp dir; parallel testbeds do not collide', { timeout: 60_000 }, async () => {
  const [a, b] = await Promise.all([createTestbed({ router: true }), createTestbed()]);
  const names = [...Object.values(a.ns), ...Object.values(b.ns)];
  let sleeper;
  try {
    assert.equal(new Set(names).size, names.length);
    sleeper = a.spawn('server', ['sleep', '300']);
    // The router testbed forwards: from its path2 address the client reaches the proxy's path2 address.
    const web = a.spawnNode('proxy', 'dist/testkit/legacy-server.js', [a.addr.proxy2]);
    const port = (JSON.parse(await firstLine(web, 10_000)) as { http: number }).http;
    const r = await a.exec('client', ['curl', '-sS', '--noproxy', '*', '-m', '5', '--interface', a.addr.client2, '-o', '/dev/null', '-w', '%{http_code}', `http://${a.addr.proxy2}:${port}/bytes/10`]);
    assert.equal(r.stdout, '200', r.stderr);
  } finally {
    await Promise.all([a.destroy(), b.destroy()]);
  }
  const list = (await run(['ip', 'netns', 'list'])).stdout;
  for (const n of names) assert.ok(!list.includes(n), `namespace ${n} left behind`);
  assert.ok(sleeper);
  if (sleeper.exitCode === null && sleeper.signalCode === null) {
    const exited = await Promise.race([once(sleeper, 'exit').then(() => true), new Promise((r) => setTimeout(() => r(false), 2000))]);
    assert.ok(exited, 'tracked process survived destroy');
  }
  assert.equal((await run(['test', '-e', a.tmpDir])).code, 1, 'temp dir left behind');
  // (ifb0/ifb1 may exist in the root namespace anyway: loading the ifb module creates them.)
  for (const dev of ['c1', 'c2', 'p1', 'p2', 'ps', 's0', 'ifb2']) {
    assert.notEqual((await run(['ip', 'link', 'show', 'dev', dev])).code, 0, `device ${dev} leaked into the root namespace`);
  }
});

test('router mode: the two paths stay apart through the router to the proxy', { timeout: 60_000 }, async (t) => {
  await withTestbed({ router: true }, async (tb) => {
    await startIperfServer(tb);
    for (const reverse of [false, true]) {
      const r = await iperf(tb, { mptcp: true, reverse, paths: proxyPaths });
      t.diagnostic(`router, reverse=${reverse}: ${r.mbit.toFixed(1)} Mbit/s; proxy-side path bytes ${r.pathBytes.join(' / ')}`);
      assert.ok(r.mbit > tb.shapeMbit * 1.4, `aggregate ${r.mbit.toFixed(1)} Mbit/s`);
      const total = r.pathBytes[0] + r.pathBytes[1];
      for (const b of r.pathBytes) assert.ok(b > total * 0.3, `proxy-side links unbalanced: ${r.pathBytes.join(' / ')}`);
    }
  });
});
