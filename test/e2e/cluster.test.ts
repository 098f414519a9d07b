/**
 * Cluster mode behind an L4 load balancer, in namespaces (testkit/cluster.ts):
 *
 *   CLIENT ==path1== LB (nft DNAT of the VIP: jhash or numgen) ==== A, B, C (proxies) --- SERVER
 *          ==path2==                                          ==== (announce links) /
 *
 * Thirty MPTCP downloads (curl under mptcpize, CONNECT and SOCKS5) per round. A client's join
 * leaves from path2: without cluster mode it goes to the VIP, is hashed anew and two times in
 * three reaches an instance that has no such token and resets it; with `--cluster-announce` the C
 * flag keeps clients off the VIP and each instance's ADD_ADDR sends the join straight to it.
 * Kernel counters per instance (MPJoinSynRx, MPJoinAckRx, MPJoinNoTokenFound, resets) and the
 * proxies' connection lines say where the joins went. Then the pool changes mid-run (an instance
 * added, one drained), a join held back until its instance drains, IPv6, and a SIGKILLed instance
 * whose C flag and endpoint the restart takes back.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { curl, connectionLogFor, type CurlResult, type ProxyKind } from '../../testkit/clients';
import { ADMIN_PORT, HTTP_PORT, SOCKS_PORT, counterDelta, createClusterBed, mptcpCounters, type Balancing, type ClusterBed, type Counters, type Family } from '../../testkit/cluster';
import { patternSha256 } from '../../testkit/pattern';
import { sleep } from '../../testkit/sleep';
import { CLI_ENTRY, type ProxyHandle, type ProxyLogLine } from '../../testkit/testbed';
import { diff, settledSnapshot, snapshot } from '../helpers/kernel-snapshot';

const CONNECTIONS = 30;
const BYTES = 600_000;
/** Paced so every connection lives ~3 s: time for its join to come up (or be reset) and a status look. */
const KBPS = 200;
const C_FLAG = 'net.mptcp.allow_join_initial_addr_port';
/** Counters that go up when the kernel refuses or resets a join, or resets a connection. */
const JOIN_FAILURES = ['MPJoinNoTokenFound', 'MPJoinRejected', 'MPJoinSynAckHMacFailure', 'MPJoinAckHMacFailure', 'MPRstTx', 'MPRstRx'];

interface Served {
  /** Index of the instance whose log has the connection. */
  k: number;
  line: ProxyLogLine;
}

interface Download {
  seed: number;
  bytes: number;
  result: Promise<CurlResult & { endedAt: number }>;
}

describe('cluster mode: three instances behind an nftables load balancer', { timeout: 400_000 }, () => {
  let c: ClusterBed;

  before(async () => {
    c = await createClusterBed({ instances: 3 });
  });
  after(async () => {
    if (c) await c.destroy();
  });

  const download = (family: Family, seed: number, bytes = BYTES): Download => {
    const kind: ProxyKind = seed % 2 ? 'connect' : 'socks5h';
    const proxy = { kind, host: c.vipHost(family), port: kind === 'connect' ? HTTP_PORT : SOCKS_PORT };
    const result = curl(c.tb, { url: c.srv.url(`/bytes/${bytes}?seed=${seed}&kBps=${KBPS}`), proxy, timeoutMs: 60_000 }).then((r) => ({ ...r, endedAt: Date.now() }));
    return { seed, bytes, result };
  };

  /** Every download byte-identical; the instance whose connection line has each. */
  const collect = async (proxies: ProxyHandle[], downloads: Download[]): Promise<Served[]> => {
    const results = await Promise.all(downloads.map((d) => d.result));
    results.forEach((r, n) => {
      assert.equal(r.exitCode, 0, `curl seed ${downloads[n]!.seed}: ${r.stderr}`);
      assert.equal(r.sha256, patternSha256(downloads[n]!.seed, downloads[n]!.bytes), `curl seed ${downloads[n]!.seed}: body differs`);
    });
    return Promise.all(results.map((r) => Promise.any(proxies.map((p, k) => connectionLogFor(p, r, 5_000).then((line) => ({ k, line }))))));
  };

  const countersAll = (): Promise<Counters[]> => Promise.all(c.instances.map((i) => mptcpCounters(c.tb, i.ns)));
  const sinceAll = async (before: Counters[]): Promise<Counters[]> => (await countersAll()).map((a, k) => counterDelta(before[k]!, a));

  const summary = (served: Served[], counters: Counters[]): string => {
    const per = c.instances.map((i, k) => {
      const x = counters[k]!;
      const mine = served.filter((s) => s.k === k);
      const fails = JOIN_FAILURES.filter((f) => x[f]).map((f) => `${f} ${x[f]}`);
      return `${i.name}: ${mine.length} connections (${mine.filter((s) => s.line.subflows === 2).length} on 2 subflows), join SYN ${x.MPJoinSynRx} established ${x.MPJoinAckRx}${fails.length ? ', ' + fails.join(' ') : ''}`;
    });
    return `${served.filter((s) => s.line.subflows === 2).length}/${served.length} on both paths; ${per.join('; ')}`;
  };

  /**
   * What the pool must do, each check named: every join arrives at (and is established on) the
   * instance that holds its connection, none is reset, >= 95 % of connections use both paths,
   * every instance serves. Returns the checks that failed.
   */
  const joinFailures = (served: Served[], counters: Counters[]): string[] => {
    const failed: string[] = [];
    const both = served.filter((s) => s.line.subflows === 2).length;
    if (both < 0.95 * served.length) failed.push('both paths');
    c.instances.forEach((i, k) => {
      const x = counters[k]!;
      const joined = served.filter((s) => s.k === k && s.line.subflows === 2).length;
      if (!served.some((s) => s.k === k)) failed.push(`instance ${i.name} used`);
      // A join SYN that reached another instance than its connection's shows up there as one more SYN.
      if (x.MPJoinSynRx !== joined || x.MPJoinAckRx !== joined) failed.push(`joins on ${i.name}'s own connections`);
      for (const f of JOIN_FAILURES) if (x[f]) failed.push(`${f} on ${i.name}`);
    });
    return [...new Set(failed)];
  };

  /** One round: the pool of all three, 30 downloads; `during` runs while they do. */
  const round = async (o: { cluster: boolean; family: Family; balancing: Balancing; during?: (done: () => boolean) => Promise<void> }): Promise<{ served: Served[]; counters: Counters[] }> => {
    await c.setPool(o.balancing, [0, 1, 2]);
    const proxies = await Promise.all(c.instances.map((_, k) => c.start(k, { cluster: o.cluster, family: o.family })));
    try {
      const before = await countersAll();
      const downloads = Array.from({ length: CONNECTIONS }, (_, n) => download(o.family, n + 1));
      let finished = false;
      const all = Promise.allSettled(downloads.map((d) => d.result)).then(() => (finished = true));
      if (o.during) await o.during(() => finished);
      await all;
      const served = await collect(proxies, downloads);
      return { served, counters: await sinceAll(before) };
    } finally {
      for (const p of proxies) assert.equal((await p.stop(10_000)).code, 0);
    }
  };

  test('without cluster mode, joins sent to the VIP are hashed to other instances and reset', async (t) => {
    const r = await round({ cluster: false, family: 4, balancing: 'jhash' });
    t.diagnostic(summary(r.served, r.counters));
    const failed = joinFailures(r.served, r.counters);
    // The test below can fail: here the same checks catch the joins that went astray.
    assert.ok(failed.includes('both paths'), `>= 95 % aggregated without cluster mode: ${summary(r.served, r.counters)}`);
    assert.ok(failed.some((f) => f.startsWith('MPJoinNoTokenFound')), `no join reached the wrong instance: ${summary(r.served, r.counters)}`);
  });

  test('with --cluster-announce (jhash), every join lands on the instance that holds its connection; status --targets merges the instances', async (t) => {
    /** Every connection status --targets showed, by client address: the target that listed it. */
    const seen = new Map<string, string>();
    const metrics: string[] = [];
    const targets = c.instances.map((i, k) => (k === 0 ? `http://${i.backend[4]}:${ADMIN_PORT}/` : `${i.backend[4]}:${ADMIN_PORT}`));
    const r = await round({
      cluster: true,
      family: 4,
      balancing: 'jhash',
      during: async (done) => {
        // While the downloads run (~3 s each; a loaded machine starts them staggered).
        while (!done() && seen.size < CONNECTIONS) {
          const st = await c.tb.exec('router', [process.execPath, CLI_ENTRY, 'status', '--targets', targets.join(','), '--json']);
          assert.equal(st.code, 0, st.stderr);
          const m = JSON.parse(st.stdout) as { connections: { target: string; client: string }[] };
          for (const x of m.connections) seen.set(x.client, x.target);
        }
        for (const i of c.instances) metrics.push((await c.tb.exec('router', ['curl', '-sS', `http://${i.backend[4]}:${ADMIN_PORT}/metrics`])).stdout);
      },
    });
    t.diagnostic(`status --targets: ${targets.map((x) => `${x} ${[...seen.values()].filter((v) => v === x).length}`).join(', ')}`);
    t.diagnostic(summary(r.served, r.counters));
    // Each connection listed under the instance whose log has it, and every instance answering
    // (how many of the 30 a poll catches alive depends on the machine's load, so no count of them).
    const servedBy = new Map(r.served.map(({ k, line }) => [String(line.client), targets[k]]));
    for (const [client, target] of seen) assert.equal(target, servedBy.get(client), client);
    for (const x of targets) assert.ok([...seen.values()].includes(x), `status --targets listed no connection of ${x}`);
    c.instances.forEach((i, k) => {
      const samples = metrics[k]!.split('\n').filter((l) => l !== '' && !l.startsWith('#'));
      assert.ok(samples.length > 50, metrics[k]);
      for (const l of samples) assert.match(l, new RegExp(`instance="${i.name}"`), l);
    });
    assert.deepEqual(joinFailures(r.served, r.counters), [], summary(r.served, r.counters));
  });

  test('with --cluster-announce behind numgen (round robin): the same, and an even spread', async (t) => {
    const r = await round({ cluster: true, family: 4, balancing: 'numgen' });
    t.diagnostic(summary(r.served, r.counters));
    assert.deepEqual(joinFailures(r.served, r.counters), [], summary(r.served, r.counters));
    // numgen counts only initial subflows (joins never reach the VIP): exactly a third each.
    c.instances.forEach((_, k) => assert.equal(r.served.filter((s) => s.k === k).length, CONNECTIONS / 3, summary(r.served, r.counters)));
  });

  test('IPv6: an IPv6 VIP and IPv6 announce addresses', async (t) => {
    const r = await round({ cluster: true, family: 6, balancing: 'jhash' });
    t.diagnostic(summary(r.served, r.counters));
    for (const s of r.served) assert.match(String(s.line.client), /^\[fd00:/);
    assert.deepEqual(joinFailures(r.served, r.counters), [], summary(r.served, r.counters));
  });

  test('pool changes mid-run: an instance added and one drained (out of the balancer, then SIGTERM) lose no connection and no join', async (t) => {
    // A and B in the pool, C running but not yet in it; A drains for as long as its downloads take.
    await c.setPool('numgen', [0, 1]);
    const proxies = await Promise.all(c.instances.map((_, k) => c.start(k, { cluster: true, family: 4, extra: k === 0 ? ['--drain-timeout', '60000'] : [] })));
    try {
      const before = await countersAll();
      const joined = async (n: number): Promise<void> => {
        for (let i = 0; ; i++) {
          const now = (await sinceAll(before)).reduce((s, x) => s + x.MPJoinAckRx!, 0);
          if (now >= n) return;
          assert.ok(i < 300, `only ${now} of ${n} joins established`);
          await sleep(100);
        }
      };
      // Wave 1 (~12 s each) on A and B.
      const wave1 = Array.from({ length: 10 }, (_, n) => download(4, 101 + n, 2_400_000));
      await joined(10);
      // C joins the pool: conntrack keeps wave 1 where it is, new connections go to all three.
      await c.setPool('numgen', [0, 1, 2]);
      const wave2 = Array.from({ length: 6 }, (_, n) => download(4, 201 + n, 1_200_000));
      await joined(16);
      // A leaves the pool, then drains while its connections of both waves still run.
      await c.setPool('numgen', [1, 2]);
      const sigtermAt = Date.now();
      const stopped = proxies[0]!.stop(60_000);
      await proxies[0]!.waitForLog((l) => l.message === 'stopping');
      const wave3 = Array.from({ length: 4 }, (_, n) => download(4, 301 + n));
      const waves = [wave1, wave2, wave3];
      const served = await Promise.all(waves.map((w) => collect(proxies, w)));
      const counters = await sinceAll(before);
      const all = served.flat();
      t.diagnostic(`waves by instance: ${served.map((w) => c.instances.map((_, k) => w.filter((s) => s.k === k).length).join('/')).join(', ')}; ${summary(all, counters)}`);
      assert.equal((await stopped).code, 0);
      const onA = await Promise.all(waves.flat().filter((_, n) => all[n]!.k === 0).map((d) => d.result));
      assert.ok(onA.length > 0 && onA.every((r) => r.endedAt > sigtermAt), 'A had no connection running when it was told to stop');
      assert.equal(served[1]!.filter((s) => s.k === 2).length, 2, 'the added instance took its share of wave 2');
      assert.equal(served[2]!.filter((s) => s.k === 0).length, 0, 'the drained instance got new connections');
      assert.deepEqual(joinFailures(all, counters), [], summary(all, counters));
    } finally {
      for (const p of proxies) await p.stop(10_000);
    }
  });

  test('draining: a join that first arrives after SIGTERM still reaches its connection on the draining instance', async (t) => {
    await c.setPool('jhash', [0, 1, 2]);
    const proxies = await Promise.all(c.instances.map((_, k) => c.start(k, { cluster: true, family: 4, extra: ['--drain-timeout', '20000'] })));
    try {
      // The client's path2 SYNs (its join) are held back until the instance is draining.
      await c.tb.nft('client', `table inet mpx_hold {\n  chain out {\n    type filter hook output priority 0;\n    ip saddr ${c.tb.addr.client2} tcp flags syn drop\n  }\n}\n`);
      const d = download(4, 7, 1_200_000);
      let k = -1;
      for (let n = 0; k < 0 && n < 100; n++) {
        await sleep(100);
        const st = await c.tb.exec('router', [process.execPath, CLI_ENTRY, 'status', '--targets', c.instances.map((i) => `${i.backend[4]}:${ADMIN_PORT}`).join(','), '--json']);
        const m = JSON.parse(st.stdout) as { targets: { connections: number | null }[] };
        k = m.targets.findIndex((x) => x.connections === 1);
      }
      assert.ok(k >= 0, 'the download never showed up on an instance');
      const ns = c.instances[k]!.ns;
      const before = await mptcpCounters(c.tb, ns);
      const stopped = proxies[k]!.stop(30_000);
      await proxies[k]!.waitForLog((l) => l.message === 'stopping');
      await c.tb.exec('client', ['nft', 'delete', 'table', 'inet', 'mpx_hold']);
      const [{ line }] = await collect(proxies, [d]);
      assert.equal((await stopped).code, 0);
      const x = counterDelta(before, await mptcpCounters(c.tb, ns));
      t.diagnostic(`instance ${c.instances[k]!.name} draining: join SYN ${x.MPJoinSynRx}, established ${x.MPJoinAckRx}; connection subflows ${String(line.subflows)}`);
      assert.equal(x.MPJoinAckRx, 1, 'the join was not established on the draining instance');
      assert.equal(line.subflows, 2);
    } finally {
      await c.tb.exec('client', ['nft', 'delete', 'table', 'inet', 'mpx_hold']);
      for (const p of proxies) await p.stop(10_000);
    }
  });

  test('SIGKILL an instance in cluster mode (running, and at each journal/kernel step of its C flag and endpoint): the restart takes them back, SIGTERM restores the namespace', async () => {
    const b = c.instances[1]!;
    const start = (env: NodeJS.ProcessEnv = process.env): Promise<ProxyHandle> => c.start(1, { cluster: true, family: 4, env });
    const baseline = await settledSnapshot(c.tb, b.ns);
    const sysctl = async (): Promise<string> => (await c.tb.exec(b.ns, ['sysctl', '-n', C_FLAG])).stdout.trim();
    const endpoints = async (): Promise<string> => (await c.tb.exec(b.ns, ['ip', 'mptcp', 'endpoint', 'show'])).stdout;
    assert.equal(await sysctl(), '1');
    const first = await start();
    assert.equal(await sysctl(), '0');
    assert.match(await endpoints(), new RegExp(`${b.announce[4].replaceAll('.', '\\.')} id \\d+ signal`));
    first.proc.kill('SIGKILL');
    assert.equal((await first.exited).signal, 'SIGKILL');
    // The crash left both in the kernel.
    assert.equal(await sysctl(), '0');
    assert.match(await endpoints(), /signal/);
    const second = await start();
    const adopted = await second.waitForLog((l) => l.message === 'kernel state: removed what an earlier run left');
    assert.ok((adopted.removed as string[]).some((x) => x.startsWith(`sysctl ${C_FLAG}=1`)), JSON.stringify(adopted));
    assert.equal(await sysctl(), '0');
    assert.equal((await second.stop(10_000)).code, 0);
    assert.deepEqual(diff(baseline, await snapshot(c.tb, b.ns)), []);
    // The journal goes first: a SIGKILL right after it, or right after the kernel changed, or
    // in the middle of the stop's removal, leaves nothing a restart does not put back.
    const items = [`sysctl ${C_FLAG}`, 'endpoint 223'];
    for (const point of [...items.flatMap((i) => [`journaled:${i}`, `installed:${i}`]), ...items.map((i) => `removed:${i}`)]) {
      const h = await c.tb.startProxy(c.args(1, { cluster: true, family: 4 }), { ns: b.ns, waitReady: false, env: { ...process.env, MPTCP_PROXY_CRASH_AT: point } });
      if (point.startsWith('removed:')) {
        await h.waitForLog((l) => l.message === 'listening', 10_000);
        h.proc.kill('SIGTERM');
      }
      assert.equal((await h.exited).signal, 'SIGKILL', `${point}: ${h.stderr.slice(-2000)}`);
      const again = await start();
      assert.equal((await again.stop(10_000)).code, 0);
      assert.deepEqual(diff(baseline, await snapshot(c.tb, b.ns)), [], point);
    }
  });
});
