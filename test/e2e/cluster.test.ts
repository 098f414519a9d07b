/**
 * Cluster mode behind an L4 load balancer, in namespaces:
 *
 *   CLIENT ==path1== LB (nft DNAT of the VIP, jhash of saddr.sport mod 2) ==== A (testbed proxy) --- SERVER
 *          ==path2==                                                     ==== B (added namespace) --/
 *
 * Each instance has a backend address (the DNAT target, on its first link) and an announce
 * address (on its second link), both routed by the LB, which forwards by destination only. A
 * client's join leaves from path2: without cluster mode it goes to the VIP, is hashed anew and
 * half the time reaches the other instance, which has no such token and resets it; with
 * `--cluster-announce` the C flag keeps clients off the VIP and each instance's ADD_ADDR sends
 * the join straight to it. Kernel counters per instance (MPJoinAckRx, MPJoinNoTokenFound) and the
 * proxies' connection lines say where the joins went. Then a SIGKILLed instance leaves its C flag
 * and endpoint behind, and a restart + SIGTERM restores its namespace to the snapshot from before.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { curl, connectionLogFor, type CurlResult, type ProxyKind } from '../../testkit/clients';
import { diff, settledSnapshot, snapshot } from '../helpers/kernel-snapshot';
import { startLegacyServer, type LegacyServer } from '../../testkit/legacy-server';
import { patternSha256 } from '../../testkit/pattern';
import { CLI_ENTRY, createTestbed, type ProxyHandle, type ProxyLogLine, type Testbed } from '../../testkit/testbed';

const CONNECTIONS = 20;
const BYTES = 600_000;
/** Paced so every connection lives ~3 s: time for its join to come up (or be reset) and a status look. */
const KBPS = 200;
const HTTP_PORT = 3128;
const SOCKS_PORT = 1080;
const ADMIN_PORT = 9464;
const C_FLAG = 'net.mptcp.allow_join_initial_addr_port';

interface Instance {
  name: 'A' | 'B';
  ns: string;
  /** The DNAT target. */
  backend: string;
  announce: string;
  /** Where its listeners bind: A a specific address (joins need the twin listener), B the wildcard. */
  listen: string;
}

type Counters = Record<string, number>;

interface Round {
  results: CurlResult[];
  lines: { instance: string; line: ProxyLogLine }[];
  counters: Record<string, Counters>;
}

describe('cluster mode: instances behind an nftables jhash load balancer', { timeout: 300_000 }, () => {
  let tb: Testbed;
  let srv: LegacyServer;
  let vip: string;
  let inst: Instance[];

  before(async () => {
    tb = await createTestbed({ router: true, shapeMbit: 0 });
    const o = tb.octet;
    const a = tb.addr;
    const rtr = tb.ns.router!;
    vip = `10.${o}.100.1`;
    const nsB = await tb.addNamespace('prxb');
    inst = [
      { name: 'A', ns: tb.ns.proxy, backend: a.proxy1, announce: a.proxy2, listen: a.proxy1 },
      { name: 'B', ns: nsB, backend: `10.${o}.13.2`, announce: `10.${o}.14.2`, listen: '0.0.0.0' },
    ];
    const ip = (ns: string, lines: string[]): Promise<unknown> => tb.exec(ns, ['ip', '-batch', '-'], { input: lines.join('\n') + '\n' }).then((r) => assert.equal(r.code, 0, r.stderr));
    // The testbed's router sends all of path2 to its one proxy; a load balancer routes by destination.
    await ip(rtr, ['rule del pref 100']);
    // B: two links to the LB (backend, announce) and one to the server, which answers on its usual address.
    await ip(rtr, [
      'link add r5 type veth peer name b1 netns ' + nsB,
      'link add r6 type veth peer name b2 netns ' + nsB,
      `addr add 10.${o}.13.1/24 dev r5`,
      `addr add 10.${o}.14.1/24 dev r6`,
      'link set r5 up',
      'link set r6 up',
    ]);
    await ip(nsB, [
      `link add bs type veth peer name s1 netns ${tb.ns.server}`,
      `addr add 10.${o}.13.2/24 dev b1`,
      `addr add 10.${o}.14.2/24 dev b2`,
      `addr add 10.${o}.4.1/24 dev bs`,
      'link set b1 up',
      'link set b2 up',
      'link set bs up',
      `route add ${a.path1Subnet} via 10.${o}.13.1 dev b1`,
      `route add ${a.path2Subnet} via 10.${o}.14.1 dev b2`,
      `route add ${a.server}/32 via 10.${o}.4.2 dev bs`,
      'mptcp limits set subflows 4 add_addr_accepted 4',
    ]);
    await ip(tb.ns.server, [`addr add 10.${o}.4.2/24 dev s1`, 'link set s1 up']);
    // The VIP: new connections hashed over the two backends; conntrack keeps each flow on its pick.
    await tb.nft(
      'router',
      `table ip mpx_lb {
  chain pre {
    type nat hook prerouting priority dstnat;
    ip daddr ${vip} tcp dport { ${HTTP_PORT}, ${SOCKS_PORT} } dnat to jhash ip saddr . tcp sport mod 2 map { 0 : ${inst[0]!.backend}, 1 : ${inst[1]!.backend} }
  }
}
`,
    );
    srv = await startLegacyServer(tb);
  });

  after(async () => {
    if (tb) await tb.destroy();
  });

  /** The kernel's MPTCP counters of a namespace (/proc/net/netstat is per namespace). */
  const mptcpCounters = async (ns: string): Promise<Counters> => {
    const r = await tb.exec(ns, ['cat', '/proc/net/netstat']);
    const rows = r.stdout.split('\n').filter((l) => l.startsWith('MPTcpExt:'));
    const names = rows[0]!.split(/\s+/).slice(1);
    const values = rows[1]!.split(/\s+/).slice(1).map(Number);
    return Object.fromEntries(names.map((n, i) => [n, values[i]!]));
  };

  const startArgs = (i: Instance, cluster: boolean, extra: string[] = []): string[] => [
    '--http', `${i.listen}:${HTTP_PORT}`,
    '--socks', `${i.listen}:${SOCKS_PORT}`,
    '--allow-client', tb.cidr,
    '--instance', i.name,
    '--log-format', 'json',
    '--metrics', `${i.backend}:${ADMIN_PORT}`,
    ...(cluster ? ['--cluster-announce', i.announce] : []),
    ...extra,
  ];
  const start = (i: Instance, cluster: boolean, env: NodeJS.ProcessEnv = process.env, extra: string[] = []): Promise<ProxyHandle> =>
    tb.startProxy(startArgs(i, cluster, extra), { ns: i.ns, env });

  const round = async (cluster: boolean, during?: (done: () => boolean) => Promise<void>): Promise<Round> => {
    const proxies = await Promise.all(inst.map((i) => start(i, cluster)));
    try {
      const before = await Promise.all(inst.map((i) => mptcpCounters(i.ns)));
      const kinds: ProxyKind[] = ['connect', 'socks5h'];
      const downloads = Promise.all(
        Array.from({ length: CONNECTIONS }, (_, n) => {
          const kind = kinds[n % 2]!;
          return curl(tb, { url: srv.url(`/bytes/${BYTES}?seed=${n + 1}&kBps=${KBPS}`), proxy: { kind, host: vip, port: kind === 'connect' ? HTTP_PORT : SOCKS_PORT }, timeoutMs: 30_000 });
        }),
      );
      let finished = false;
      void downloads.then(
        () => (finished = true),
        () => (finished = true),
      );
      if (during) await during(() => finished);
      const results = await downloads;
      const lines = await Promise.all(
        results.map((r) => Promise.any(proxies.map((p, k) => connectionLogFor(p, r, 5_000).then((line) => ({ instance: inst[k]!.name, line }))))),
      );
      const afterC = await Promise.all(inst.map((i) => mptcpCounters(i.ns)));
      const counters = Object.fromEntries(inst.map((i, k) => [i.name, Object.fromEntries(Object.keys(afterC[k]!).map((n) => [n, afterC[k]![n]! - (before[k]![n] ?? 0)]))]));
      results.forEach((r, n) => {
        assert.equal(r.exitCode, 0, `curl ${n}: ${r.stderr}`);
        assert.equal(r.sha256, patternSha256(n + 1, BYTES), `curl ${n}: body differs`);
      });
      return { results, lines, counters };
    } finally {
      for (const p of proxies) assert.equal((await p.stop(10_000)).code, 0);
    }
  };

  const summary = (r: Round): string => {
    const per = inst.map((i) => {
      const c = r.counters[i.name]!;
      const served = r.lines.filter((l) => l.instance === i.name).length;
      return `${i.name}: ${served} connections, joins SYN ${c.MPJoinSynRx} established ${c.MPJoinAckRx} no-token ${c.MPJoinNoTokenFound}`;
    });
    const two = r.lines.filter((l) => l.line.subflows === 2).length;
    return `${two}/${r.lines.length} connections with 2 subflows; ${per.join('; ')}`;
  };
  const sum = (r: Round, counter: string): number => inst.reduce((n, i) => n + (r.counters[i.name]![counter] ?? 0), 0);

  test('without cluster mode, joins sent to the VIP are hashed to the other instance and reset', async (t) => {
    const r = await round(false);
    t.diagnostic(summary(r));
    assert.ok(sum(r, 'MPJoinNoTokenFound') > 0, `no join reached the wrong instance: ${summary(r)}`);
    assert.ok(r.lines.some((l) => l.line.subflows === 1), `every connection aggregated: ${summary(r)}`);
  });

  test('with --cluster-announce, every join lands on the instance that holds its connection; status --targets merges the instances', async (t) => {
    /** Every connection status --targets showed, by client address: the target that listed it. */
    const seen = new Map<string, string>();
    const twoSubflows = new Set<string>();
    const metrics: string[] = [];
    const targets = [`${inst[0]!.backend}:${ADMIN_PORT}`, `http://${inst[1]!.backend}:${ADMIN_PORT}/`];
    const r = await round(true, async (done) => {
      // While the downloads run (~3 s each; a loaded machine starts them staggered).
      while (!done() && seen.size < CONNECTIONS) {
        const st = await tb.exec('router', [process.execPath, CLI_ENTRY, 'status', '--targets', targets.join(','), '--json']);
        assert.equal(st.code, 0, st.stderr);
        const m = JSON.parse(st.stdout) as { connections: { target: string; client: string; subflows: unknown[] }[] };
        for (const c of m.connections) {
          seen.set(c.client, c.target);
          if (c.subflows.length === 2) twoSubflows.add(c.client);
        }
      }
      for (const i of inst) metrics.push((await tb.exec('router', ['curl', '-sS', `http://${i.backend}:${ADMIN_PORT}/metrics`])).stdout);
    });
    t.diagnostic(`status --targets: ${targets.map((x) => `${x} ${[...seen.values()].filter((v) => v === x).length}`).join(', ')}; ${twoSubflows.size}/${seen.size} seen with 2 subflows`);
    assert.equal(seen.size, CONNECTIONS);
    // Each connection listed under the instance whose log has it.
    for (const { instance, line } of r.lines) assert.equal(seen.get(String(line.client)), targets[inst.findIndex((i) => i.name === instance)], String(line.client));
    inst.forEach((i, k) => {
      const samples = metrics[k]!.split('\n').filter((l) => l !== '' && !l.startsWith('#'));
      assert.ok(samples.length > 50, metrics[k]);
      for (const l of samples) assert.match(l, new RegExp(`instance="${i.name}"`), l);
    });
    t.diagnostic(summary(r));
    for (const i of inst) assert.ok(r.lines.some((l) => l.instance === i.name), `instance ${i.name} got no connection: ${summary(r)}`);
    assert.equal(sum(r, 'MPJoinNoTokenFound'), 0, `joins reached the wrong instance: ${summary(r)}`);
    assert.equal(sum(r, 'MPJoinAckRx'), CONNECTIONS, `one established join per connection: ${summary(r)}`);
    for (const { instance, line } of r.lines) assert.equal(line.subflows, 2, `instance ${instance}: ${JSON.stringify(line)}`);
  });

  test('draining: a join that first arrives after SIGTERM still reaches its connection on the draining instance', async (t) => {
    const proxies = await Promise.all(inst.map((i) => start(i, true, process.env, ['--drain-timeout', '20000'])));
    try {
      // The client's path2 SYNs (its join) are held back until the instance is draining.
      await tb.nft('client', `table inet mpx_hold {\n  chain out {\n    type filter hook output priority 0;\n    ip saddr ${tb.addr.client2} tcp flags syn drop\n  }\n}\n`);
      const download = curl(tb, { url: srv.url(`/bytes/1200000?seed=7&kBps=${KBPS}`), proxy: { kind: 'connect', host: vip, port: HTTP_PORT }, timeoutMs: 30_000 });
      let k = -1;
      for (let n = 0; k < 0 && n < 100; n++) {
        await new Promise((res) => setTimeout(res, 100));
        const st = await tb.exec('router', [process.execPath, CLI_ENTRY, 'status', '--targets', inst.map((i) => `${i.backend}:${ADMIN_PORT}`).join(','), '--json']);
        const m = JSON.parse(st.stdout) as { targets: { connections: number | null }[] };
        k = m.targets.findIndex((x) => x.connections === 1);
      }
      assert.ok(k >= 0, 'the download never showed up on an instance');
      const before = await mptcpCounters(inst[k]!.ns);
      const stopped = proxies[k]!.stop(30_000);
      await proxies[k]!.waitForLog((l) => l.message === 'stopping');
      await tb.exec('client', ['nft', 'delete', 'table', 'inet', 'mpx_hold']);
      const r = await download;
      assert.equal(r.exitCode, 0, r.stderr);
      assert.equal(r.sha256, patternSha256(7, 1_200_000));
      assert.equal((await stopped).code, 0);
      const afterC = await mptcpCounters(inst[k]!.ns);
      const line = await connectionLogFor(proxies[k]!, r);
      t.diagnostic(`instance ${inst[k]!.name} draining: join SYN ${afterC.MPJoinSynRx! - before.MPJoinSynRx!}, established ${afterC.MPJoinAckRx! - before.MPJoinAckRx!}; connection subflows ${String(line.subflows)}`);
      assert.equal(afterC.MPJoinAckRx! - before.MPJoinAckRx!, 1, 'the join was not established on the draining instance');
      assert.equal(line.subflows, 2);
    } finally {
      await tb.exec('client', ['nft', 'delete', 'table', 'inet', 'mpx_hold']);
      for (const p of proxies) await p.stop(10_000);
    }
  });

  test('SIGKILL an instance in cluster mode (running, and at each journal/kernel step of its C flag and endpoint): the restart takes them back, SIGTERM restores the namespace', async () => {
    const b = inst[1]!;
    const baseline = await settledSnapshot(tb, b.ns);
    const sysctl = async (): Promise<string> => (await tb.exec(b.ns, ['sysctl', '-n', C_FLAG])).stdout.trim();
    const endpoints = async (): Promise<string> => (await tb.exec(b.ns, ['ip', 'mptcp', 'endpoint', 'show'])).stdout;
    assert.equal(await sysctl(), '1');
    const first = await start(b, true);
    assert.equal(await sysctl(), '0');
    assert.match(await endpoints(), new RegExp(`${b.announce.replaceAll('.', '\\.')} id \\d+ signal`));
    first.proc.kill('SIGKILL');
    assert.equal((await first.exited).signal, 'SIGKILL');
    // The crash left both in the kernel.
    assert.equal(await sysctl(), '0');
    assert.match(await endpoints(), /signal/);
    const second = await start(b, true);
    const adopted = await second.waitForLog((l) => l.message === 'kernel state: removed what an earlier run left');
    assert.ok((adopted.removed as string[]).some((x) => x.startsWith(`sysctl ${C_FLAG}=1`)), JSON.stringify(adopted));
    assert.equal(await sysctl(), '0');
    assert.equal((await second.stop(10_000)).code, 0);
    assert.deepEqual(diff(baseline, await snapshot(tb, b.ns)), []);
    // The journal goes first: a SIGKILL right after it, or right after the kernel changed, or
    // in the middle of the stop's removal, leaves nothing a restart does not put back.
    const items = [`sysctl ${C_FLAG}`, 'endpoint 223'];
    for (const point of [...items.flatMap((i) => [`journaled:${i}`, `installed:${i}`]), ...items.map((i) => `removed:${i}`)]) {
      const h = await tb.startProxy(startArgs(b, true), { ns: b.ns, waitReady: false, env: { ...process.env, MPTCP_PROXY_CRASH_AT: point } });
      if (point.startsWith('removed:')) {
        await h.waitForLog((l) => l.message === 'listening', 10_000);
        h.proc.kill('SIGTERM');
      }
      assert.equal((await h.exited).signal, 'SIGKILL', `${point}: ${h.stderr.slice(-2000)}`);
      const again = await start(b, true);
      assert.equal((await again.stop(10_000)).code, 0);
      assert.deepEqual(diff(baseline, await snapshot(tb, b.ns)), [], point);
    }
  });
});
