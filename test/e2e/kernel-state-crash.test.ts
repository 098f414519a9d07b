/**
 * One owner of kernel state (src/kstate), end to end: with every feature that installs state
 * switched on (steering with upload and download caps and a backup policy, two uplinks with a
 * signal endpoint and a raised subflow limit, the MSS clamp, a transparent listener), the proxy
 * is SIGKILLed at many points, started again and stopped with SIGTERM; a full snapshot of its
 * namespace (qdiscs, classes, filters, nft ruleset, rules, routes of all tables, links, MPTCP
 * endpoints and limits, the sysctls near what it touches) must then equal the one taken before
 * the first start, operator state included.
 *
 * Kill points: timed (a running proxy, as in the report of issue 12; during start once the
 * ingress qdisc shows up in the kernel; under load; during a reload under load), and
 * deterministic through the test-only MPTCP_PROXY_CRASH_AT: after each item of the start is
 * journaled and after it is in the kernel, at each item a SIGHUP with a changed policy installs,
 * and after each item the SIGTERM removal takes away.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import YAML from 'yaml';
import { curl } from '../../testkit/clients';
import { startLegacyServer, type LegacyServer } from '../../testkit/legacy-server';
import { diff, settledSnapshot, snapshot, type Snapshot } from '../helpers/kernel-snapshot';
import { CLI_ENTRY, REPO_ROOT, createTestbed, type ProxyHandle, type ProxyLogLine, type Testbed } from '../../testkit/testbed';
import { sleep } from '../../testkit/sleep';

const isInstalled = (l: ProxyLogLine): boolean => l.message === 'kernel state: installed';
const isRemoved = (l: ProxyLogLine): boolean => l.message === 'kernel state: removed';

describe('kernel state: SIGKILL anywhere, start again, SIGTERM: the namespace is as before the first start', { timeout: 900_000 }, () => {
  let tb: Testbed;
  let srv: LegacyServer;
  let baseline: Snapshot;
  /** Config documents: A at every start, B for the reloads (written over the one config file). */
  let cfgA: string;
  let cfgB: string;
  /** Every kill point exercised, and the snapshot lines that differed after it. */
  const results: { point: string; diff: string[] }[] = [];

  const configFile = (): string => path.join(tb.tmpDir, 'proxy.yaml');
  const useConfig = (doc: string): void => writeFileSync(configFile(), doc);

  before(async () => {
    tb = await createTestbed({ shapeMbit: 0 });
    srv = await startLegacyServer(tb);
    const a = tb.addr;
    const i = tb.ifaces;
    // The operator's own state: low limits (the uplinks make the proxy raise them), an endpoint
    // on an address an uplink announces, a table with a counter, a rule near the owned range.
    for (const argv of [
      ['ip', 'mptcp', 'limits', 'set', 'subflows', '1', 'add_addr_accepted', '0'],
      ['ip', 'mptcp', 'endpoint', 'add', a.proxy2, 'id', '5', 'signal'],
      ['ip', 'rule', 'add', 'fwmark', '0x99', 'table', '99', 'pref', '19000'],
      ['nft', 'add', 'table', 'inet', 'operator_keep'],
      ['nft', 'add', 'chain', 'inet', 'operator_keep', 'c', '{ type filter hook input priority 0; policy accept; }'],
      ['nft', 'add', 'rule', 'inet', 'operator_keep', 'c', 'counter'],
    ]) {
      const r = await tb.exec('proxy', argv);
      assert.equal(r.code, 0, `${argv.join(' ')}: ${r.stderr}`);
    }
    const base = {
      listeners: [
        { name: 'http', protocol: 'http', listen: `${a.proxy1}:3128` },
        { name: 'tp', protocol: 'transparent', listen: '127.0.0.1:15001' },
      ],
      access: { allowClients: [tb.cidr] },
      metrics: { enabled: false },
      log: { level: 'debug', format: 'json' },
      tuning: { mssClamp: true },
      transparent: { interfaces: [i.proxy1] },
      // Sysctl items (net.ipv4.tcp_rto_max_ms, and net.mptcp.pm_type of the userspace PM) among the kill points.
      paths: { rtoMaxMs: 2000, pathManager: 'userspace' },
    };
    const uplinks = [
      { name: 'wan1', interface: i.proxyServerSide, source: a.proxyServerSide, gateway: a.server },
      { name: 'wan2', interface: i.proxy2, source: a.proxy2, gateway: a.client2 },
    ];
    cfgA = YAML.stringify({
      ...base,
      uplinks,
      policies: [
        { name: 'cap1', match: { client: a.path1Subnet }, rate: '5mbit' },
        { name: 'cap2', match: { client: a.path2Subnet }, rate: '20mbit', direction: 'download' },
        { name: 'bk', match: { local: `${a.proxy1}/32` }, backup: true },
      ],
    });
    // The reload: new rates, path 2's uploads capped too (a second IFB), one uplink fewer.
    cfgB = YAML.stringify({
      ...base,
      uplinks: uplinks.slice(0, 1),
      policies: [
        { name: 'cap1', match: { client: a.path1Subnet }, rate: '8mbit' },
        { name: 'cap2', match: { client: a.path2Subnet }, rate: '20mbit' },
        { name: 'bk', match: { local: `${a.proxy1}/32` }, backup: true },
      ],
    });
    baseline = await settledSnapshot(tb);
  });

  after(async () => {
    if (tb) await tb.destroy();
  });

  const launch = (doc: string, crashAt?: string): Promise<ProxyHandle> => {
    useConfig(doc);
    return tb.startProxy(['--config', configFile()], { waitReady: false, env: { ...process.env, ...(crashAt ? { MPTCP_PROXY_CRASH_AT: crashAt } : {}) } });
  };
  const reload = (h: ProxyHandle): void => {
    useConfig(cfgB);
    h.proc.kill('SIGHUP');
  };

  /** Both listeners up, and the signal handlers in place (they follow the last listener). */
  const ready = async (h: ProxyHandle): Promise<void> => {
    await h.waitForLog((l) => l.message === 'listening' && l.listener === 'tp', 20_000);
    await sleep(50);
  };

  const killed = async (h: ProxyHandle, point: string): Promise<void> => {
    const exit = await Promise.race([h.exited, sleep(20_000).then(() => null)]);
    if (!exit) {
      await h.stop(500);
      assert.fail(`${point}: the proxy did not crash there; stderr:\n${h.stderr.slice(-3000)}`);
    }
    assert.equal(exit.signal, 'SIGKILL', `${point}: exit ${JSON.stringify(exit)}; stderr:\n${h.stderr.slice(-3000)}`);
  };

  /** Start again, stop with SIGTERM, compare with the baseline; returns the stop log line. */
  const restartStopCompare = async (point: string): Promise<ProxyLogLine> => {
    const h = await launch(cfgA);
    await ready(h);
    const exit = await h.stop(15_000);
    assert.equal(exit.code, 0, `${point}: restart exit ${JSON.stringify(exit)}; stderr:\n${h.stderr.slice(-3000)}`);
    const stopLine = await h.waitForLog((l) => l.message === 'kernel state removed', 1000);
    results.push({ point, diff: diff(baseline, await snapshot(tb)) });
    return stopLine;
  };

  /** A clean run's items, in the order they went in (with repeats), and the order they went out. */
  const clean = async (withReload: boolean): Promise<{ installs: string[]; reloadInstalls: string[]; removals: string[] }> => {
    const h = await launch(cfgA);
    await ready(h);
    const atStart = h.logs.filter(isInstalled).length;
    if (withReload) {
      reload(h);
      await h.waitForLog((l) => l.message === 'config reloaded', 20_000);
    }
    assert.equal((await h.stop(15_000)).code, 0, h.stderr.slice(-3000));
    const installs = h.logs.filter(isInstalled).map((l) => String(l.item));
    results.push({ point: withReload ? 'none (clean run with a reload)' : 'none (clean run)', diff: diff(baseline, await snapshot(tb)) });
    return { installs: installs.slice(0, atStart), reloadInstalls: installs.slice(atStart), removals: h.logs.filter(isRemoved).map((l) => String(l.item)) };
  };

  test('the report of issue 12: SIGKILL a running proxy with a rate policy, start it, SIGTERM: no ingress qdisc stays, and the stop log lists the adopted one', async () => {
    const cfg = YAML.stringify({
      listeners: [
        { name: 'http', protocol: 'http', listen: `${tb.addr.proxy1}:3128` },
        { name: 'tp', protocol: 'transparent', listen: '127.0.0.1:15001' },
      ],
      access: { allowClients: [tb.cidr] },
      metrics: { enabled: false },
      log: { level: 'info', format: 'json' },
      policies: [{ name: 'slow-path1', match: { client: tb.addr.path1Subnet }, rate: '5mbit' }],
    });
    const crashed = await launch(cfg);
    await ready(crashed);
    crashed.proc.kill('SIGKILL');
    await killed(crashed, 'report');
    const h = await launch(cfg);
    await ready(h);
    assert.equal((await h.stop(15_000)).code, 0, h.stderr.slice(-3000));
    const d = diff(baseline, await snapshot(tb));
    results.push({ point: 'timed: a running proxy (the report)', diff: d });
    assert.deepEqual(d, [], 'the namespace differs from before the first start');
    const stop = await h.waitForLog((l) => l.message === 'kernel state removed', 1000);
    const ingress = `ingress ${tb.ifaces.proxy1}`;
    assert.ok((stop.removed as string[]).includes(ingress), JSON.stringify(stop));
    assert.ok((stop.adoptedAtStart as string[]).includes(ingress), JSON.stringify(stop));
  });

  test('every feature on: SIGKILL during start, reload, stop and under load; the snapshot after restart + SIGTERM equals the baseline', async (t) => {
    const first = await clean(false);
    const second = await clean(true);
    assert.ok(first.installs.length >= 12, `items of the start: ${first.installs.join(', ')}`);
    assert.ok(second.reloadInstalls.length >= 4, `items of the reload: ${second.reloadInstalls.join(', ')}`);

    // Deterministic points: after each item of the start is in the kernel, and after the first
    // of each kind is only journaled (the kernel as at the item before, the journal naming one
    // more); each item a reload installs (N-th install); the first removal of each kind at stop.
    const kindOf = (key: string): string => key.split(' ')[0]!;
    const firstOfKind = (keys: readonly string[]): string[] => keys.filter((k, i) => keys.findIndex((o) => kindOf(o) === kindOf(k)) === i);
    const seen = new Map<string, number>();
    const nth = (key: string): number => {
      const n = (seen.get(key) ?? 0) + 1;
      seen.set(key, n);
      return n;
    };
    const startPoints = [...firstOfKind(first.installs).map((k) => `journaled:${k}`), ...first.installs.map((k) => `installed:${k}@${nth(k)}`)];
    seen.clear();
    for (const k of second.installs) nth(k);
    const reloadPoints = second.reloadInstalls.map((k) => `installed:${k}@${nth(k)}`);
    const stopPoints = firstOfKind(first.removals).map((k) => `removed:${k}`);

    for (const point of startPoints) {
      const h = await launch(cfgA, point);
      await killed(h, point);
      await restartStopCompare(`start ${point}`);
    }
    for (const point of reloadPoints) {
      const h = await launch(cfgA, point);
      await ready(h);
      reload(h);
      await killed(h, point);
      await restartStopCompare(`reload ${point}`);
    }
    for (const point of stopPoints) {
      const h = await launch(cfgA, point);
      await ready(h);
      h.proc.kill('SIGTERM');
      await killed(h, point);
      await restartStopCompare(`stop ${point}`);
    }

    // Timed: during start, as soon as the ingress redirect is in the kernel.
    {
      const h = await launch(cfgA);
      for (let i = 0; i < 400; i++) {
        if ((await tb.exec('proxy', ['tc', 'qdisc', 'show', 'dev', tb.ifaces.proxy1])).stdout.includes('ingress ffff:')) break;
        await sleep(10);
      }
      h.proc.kill('SIGKILL');
      await killed(h, 'timed start');
      await restartStopCompare('timed: during start, once ingress ffff: shows');
    }
    // Timed, under load: three downloads through the proxy, killed 0.3 s and 1 s in; a reload under load.
    for (const [label, delayMs, hup] of [
      ['under load 0.3 s', 300, false],
      ['under load 1 s', 1000, false],
      ['reload under load', 300, true],
    ] as const) {
      const h = await launch(cfgA);
      await ready(h);
      const loads = Array.from({ length: 3 }, (_, n) => curl(tb, { url: srv.url(`/bytes/${20 << 20}?seed=${n}`), proxy: { kind: 'http', host: tb.addr.proxy1, port: 3128 }, timeoutMs: 20_000 }));
      await sleep(delayMs);
      if (hup) {
        reload(h);
        await sleep(30);
      }
      h.proc.kill('SIGKILL');
      await killed(h, label);
      await Promise.all(loads);
      await restartStopCompare(`timed: ${label}`);
    }

    // `mptcp-proxy cleanup` after a crash restores the same state as a restart does.
    {
      const h = await launch(cfgA);
      await ready(h);
      h.proc.kill('SIGKILL');
      await killed(h, 'cleanup');
      const c = await tb.exec('proxy', [process.execPath, CLI_ENTRY, 'cleanup']);
      assert.equal(c.code, 0, c.stderr);
      results.push({ point: 'timed: running, then mptcp-proxy cleanup', diff: diff(baseline, await snapshot(tb)) });
    }

    const bad = results.filter((r) => r.diff.length > 0);
    const lines = results.reduce((n, r) => n + r.diff.length, 0);
    const points = results.filter((r) => !r.point.startsWith('none')).length;
    t.diagnostic(`kill points exercised: ${points} (the report's 1, start ${startPoints.length}, reload ${reloadPoints.length}, stop ${stopPoints.length}, timed 4, cleanup 1); snapshot diff lines: ${lines}`);
    assert.deepEqual(bad, [], `snapshots differing from the baseline:\n${bad.map((r) => `${r.point}:\n  ${r.diff.join('\n  ')}`).join('\n')}`);

    // No journal left once stopped cleanly.
    const dir = await tb.exec('proxy', [process.execPath, '-e', `process.stdout.write(require(${JSON.stringify(path.join(REPO_ROOT, 'dist/src/kstate/kernel-state.js'))}).journalDir())`]);
    assert.equal(dir.code, 0, dir.stderr);
    assert.equal((await tb.exec('proxy', ['test', '-e', dir.stdout])).code, 1, `journal directory ${dir.stdout} left behind`);
  });
});
