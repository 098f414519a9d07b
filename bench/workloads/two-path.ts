/**
 * The two-path namespace testbed (testkit/testbed): a client with two 50 Mbit/s paths,
 * mptcp-proxy (splice relay) in between, the legacy HTTP server behind it. Three figures:
 *   - aggregation: one MPTCP download through the proxy vs the sum of each path alone (plain TCP)
 *     and vs the same download with no proxy at all (an MPTCP server in the proxy's namespace);
 *   - seed 004 Fig. 4: the client's receive buffer capped at 0.18 MB, 0.72 MB, or kernel auto;
 *   - seed 004 Fig. 5: MTU 1500 vs 1000 on both paths (buffer 0.72 MB, as in the paper), MPTCP vs TCP.
 * Per-path throughput is sampled from the client interfaces' counters for the charts.
 */
import { performance } from 'node:perf_hooks';
import { startLegacyServer, type LegacyServer } from '../../testkit/legacy-server';
import { mustRun } from '../../testkit/run';
import { firstLine, withTestbed, type Testbed } from '../../testkit/testbed';
import { measure, type Measured } from '../lib/measure';
import {  } from '../lib/proc';
import type { Row, Series } from '../lib/results';
import { sleep } from '../../testkit/sleep';

const PROXY_PORT = 3128;
const SAMPLE_MS = 250;

export interface TwoPathOptions {
  bytes: number;
  repeats: number;
}

interface Download {
  mptcp: boolean;
  /** Plain TCP pinned to one path (by source address). */
  path?: 1 | 2;
  /** Straight to the MPTCP server in the proxy's namespace: the kernel's own limit on this testbed. */
  direct?: boolean;
}

/** The servers one download can use: through the proxy to the legacy server, or direct. */
interface Servers {
  viaProxy: LegacyServer;
  /** Base URL of the MPTCP server in the proxy's namespace. */
  directUrl: string;
}

/** One download through the proxy, with client-side per-path receive rates sampled. */
async function download(tb: Testbed, srv: Servers, bytes: number, d: Download): Promise<{ mbit: number; series: Series }> {
  const argv = [
    ...(d.mptcp ? ['mptcpize', 'run'] : []),
    'curl',
    '-sS',
    '--fail',
    '-o',
    '/dev/null',
    '-w',
    '%{size_download} %{time_total}',
    ...(d.path === 2 ? ['--interface', tb.addr.client2] : []),
    ...(d.direct ? [`${srv.directUrl}/bytes/${bytes}`] : ['-p', '-x', `http://${tb.addr.proxy1}:${PROXY_PORT}`, srv.viaProxy.url(`/bytes/${bytes}`)]),
  ];
  const series: Series = { t: [], lines: { path1: [], path2: [], total: [] } };
  let done = false;
  const sampler = (async (): Promise<void> => {
    const t0 = performance.now();
    let prev = t0;
    let [a, b] = await tb.pathCounters();
    while (!done) {
      await sleep(SAMPLE_MS);
      const [a2, b2] = await tb.pathCounters();
      const now = performance.now();
      const span = (now - prev) / 1000;
      prev = now;
      series.t.push(Number(((now - t0) / 1000).toFixed(2)));
      series.lines.path1.push(((a2.rxBytes - a.rxBytes) * 8) / span / 1e6);
      series.lines.path2.push(((b2.rxBytes - b.rxBytes) * 8) / span / 1e6);
      series.lines.total.push(series.lines.path1.at(-1)! + series.lines.path2.at(-1)!);
      [a, b] = [a2, b2];
    }
  })();
  const r = await tb.exec('client', argv, { timeoutMs: 180_000 });
  done = true;
  await sampler;
  const [size, secs] = r.stdout.trim().split(' ').map(Number);
  if (r.code !== 0 || size !== bytes) throw new Error(`curl exit ${r.code}, ${size}/${bytes} bytes: ${r.stderr.trim().slice(-300)}`);
  return { mbit: (size * 8) / secs / 1e6, series };
}

type Case = { id: string; label: string; kind: Row['kind'] } & Download;

export async function twoPath(o: TwoPathOptions, log: (s: string) => void): Promise<{ rows: Row[]; series: Record<string, Series> }> {
  return withTestbed({ shapeMbit: 50 }, async (tb) => {
    const a = tb.addr;
    const direct = tb.spawnNode('proxy', 'dist/testkit/legacy-server.js', [a.proxy1], { mptcpize: true });
    const directPort = (JSON.parse(await firstLine(direct, 10_000)) as { http: number }).http;
    const srv: Servers = { viaProxy: await startLegacyServer(tb), directUrl: `http://${a.proxy1}:${directPort}` };
    const proxy = await tb.startProxy(['--http', `${a.proxy1}:${PROXY_PORT}`, '--allow-client', a.path1Subnet, '--allow-client', a.path2Subnet, '--allow-dest', a.serverSubnet, '--no-metrics', '--log-level', 'warn', '--relay', 'splice']);
    const rows: Row[] = [];
    const series: Record<string, Series> = {};
    const rmem = async (max: string): Promise<void> => {
      await mustRun(['ip', 'netns', 'exec', tb.ns.client, 'sysctl', '-qw', `net.ipv4.tcp_rmem=${max}`]);
    };
    const autoRmem = (await mustRun(['ip', 'netns', 'exec', tb.ns.client, 'sysctl', '-n', 'net.ipv4.tcp_rmem'])).trim().replace(/\s+/g, ' ');
    const mtu = async (v: number): Promise<void> => {
      await mustRun(['ip', '-n', tb.ns.client, 'link', 'set', tb.ifaces.client1, 'mtu', String(v)]);
      await mustRun(['ip', '-n', tb.ns.client, 'link', 'set', tb.ifaces.client2, 'mtu', String(v)]);
      await mustRun(['ip', '-n', tb.ns.proxy, 'link', 'set', tb.ifaces.proxy1, 'mtu', String(v)]);
      await mustRun(['ip', '-n', tb.ns.proxy, 'link', 'set', tb.ifaces.proxy2, 'mtu', String(v)]);
    };
    const runCase = async (workload: string, c: Case, seriesKey?: string): Promise<Row> => {
      const perRun: Series[] = [];
      const spec = { workload, unit: 'Mbit/s', higherIsBetter: true, repeats: o.repeats, describe: (b: Measured) => `${b.value.toFixed(1)} Mbit/s` };
      const row = await measure(
        spec,
        c,
        async () => {
          const r = await download(tb, srv, o.bytes, c);
          perRun.push(r.series);
          return { value: r.mbit, extra: {} };
        },
        log,
      );
      if (seriesKey && row.value !== null) series[seriesKey] = perRun[row.runs.indexOf(row.value)];
      rows.push(row);
      return row;
    };
    try {
      // Aggregation: each path alone (TCP), then MPTCP over both.
      const p1 = await runCase('two-path', { id: 'path1-tcp', label: 'path 1 alone (TCP)', kind: 'info', mptcp: false, path: 1 });
      const p2 = await runCase('two-path', { id: 'path2-tcp', label: 'path 2 alone (TCP)', kind: 'info', mptcp: false, path: 2 });
      const sum = p1.value !== null && p2.value !== null ? p1.value + p2.value : null;
      rows.push({ workload: 'two-path', subject: 'sum-of-paths', label: 'sum of the two paths', kind: 'limit', value: sum, unit: 'Mbit/s', higherIsBetter: true, runs: [], extra: {} });
      await runCase('two-path', { id: 'mptcp-direct', label: 'MPTCP straight to an MPTCP server (no proxy)', kind: 'info', mptcp: true, direct: true });
      await runCase('two-path', { id: 'mptcp-via-proxy', label: 'MPTCP through mptcp-proxy (both paths)', kind: 'ours', mptcp: true }, 'two-path');
      // Fig. 4: receive buffer maximum in the client namespace.
      for (const [id, max] of [
        ['0.18MB', '4096 131072 180000'],
        ['0.72MB', '4096 131072 720000'],
        ['auto', autoRmem],
      ] as const) {
        await rmem(max);
        await runCase('buffer', { id: `rmem-${id}`, label: `MPTCP, client tcp_rmem max ${id === 'auto' ? `auto (${autoRmem.split(' ')[2]} B)` : id}`, kind: 'ours', mptcp: true }, `buffer-${id}`);
      }
      // Fig. 5: MTU 1500 vs 1000, buffer 0.72 MB; plain TCP on path 1 beside it.
      await rmem('4096 131072 720000');
      for (const m of [1500, 1000]) {
        await mtu(m);
        await runCase('mtu', { id: `mptcp-${m}`, label: `MPTCP, MTU ${m}`, kind: 'ours', mptcp: true }, `mtu-${m}`);
        await runCase('mtu', { id: `tcp-${m}`, label: `TCP path 1, MTU ${m}`, kind: 'info', mptcp: false, path: 1 });
      }
      return { rows, series };
    } finally {
      await proxy.stop();
    }
  });
}
