/**
 * Scale-out (issue 16): aggregate throughput of N = 1, 2, 3 instances in cluster mode behind an
 * nftables load balancer, each instance's uplink (origin → instance) shaped to the same rate
 * with HTB, so one instance is uplink-bound and N of them should carry about N times as much.
 *
 * The pool of testkit/cluster.ts (the e2e test's): client with two unshaped paths, `numgen inc`
 * DNAT of the VIP (an even spread), instances with --cluster-announce, a legacy origin. Per N:
 * `perInstance` × N MPTCP downloads (curl under mptcpize, CONNECT and SOCKS5 alternating), bytes
 * received on the client's two links counted over a window after a warm-up.
 *
 *   node dist/bench/cluster-scale.js [--mbit 50] [--per-instance 4] [--window MS] [--repetitions N] [--no-save]
 *     → a table on stderr, one JSON object on stdout, also saved as bench/results/cluster-scale.json
 */
import { parseArgs } from 'node:util';
import { curl, type ProxyKind } from '../testkit/clients';
import { HTTP_PORT, SOCKS_PORT, createClusterBed, type ClusterBed } from '../testkit/cluster';
import { sleep } from '../testkit/sleep';
import { percentile } from './lib/results';
import { finishStandalone } from './lib/standalone';

export interface ClusterScaleOptions {
  /** Each instance's uplink, Mbit/s (default 50). */
  mbit?: number;
  /** Downloads per instance in the pool (default 4). */
  perInstance?: number;
  warmMs?: number;
  /** Measuring window, ms (default 5000). */
  windowMs?: number;
  repetitions?: number;
  /** Pool sizes (default 1, 2, 3). */
  sizes?: number[];
}

export interface PoolFigure {
  instances: number;
  /** Aggregate received by the clients, Mbit/s, each repetition. */
  runsMbit: number[];
  medianMbit: number;
  /** Median ÷ (instances × the one-instance median). */
  scaling: number;
  /** Share of the bytes that came over the client's second path (the joins). */
  path2Share: number;
}

export interface ClusterScaleResult {
  uplinkMbit: number;
  perInstance: number;
  windowMs: number;
  repetitions: number;
  pools: PoolFigure[];
}

async function measure(c: ClusterBed, n: number, o: Required<ClusterScaleOptions>): Promise<{ mbit: number; path2: number }> {
  const members = Array.from({ length: n }, (_, k) => k);
  await c.setPool('numgen', members);
  const proxies = await Promise.all(members.map((k) => c.start(k, { cluster: true, family: 4 })));
  try {
    // More than the pool can carry in the run: curl is stopped by its timeout after the window.
    const runMs = o.warmMs + o.windowMs + 1000;
    const bytes = Math.ceil(((o.mbit * 1e6) / 8) * (runMs / 1000) * 2);
    const downloads = Array.from({ length: n * o.perInstance }, (_, d) => {
      const kind: ProxyKind = d % 2 ? 'connect' : 'socks5h';
      return curl(c.tb, { url: c.srv.url(`/bytes/${bytes}?seed=${d + 1}`), proxy: { kind, host: c.vipHost(4), port: kind === 'connect' ? HTTP_PORT : SOCKS_PORT }, timeoutMs: runMs, keepBodyMax: 0 });
    });
    await sleep(o.warmMs);
    const before = await c.tb.pathCounters();
    const t0 = performance.now();
    await sleep(o.windowMs);
    const after = await c.tb.pathCounters();
    const seconds = (performance.now() - t0) / 1000;
    await Promise.all(downloads);
    const rx = after.map((x, p) => x.rxBytes - before[p]!.rxBytes);
    const total = rx[0]! + rx[1]!;
    return { mbit: (total * 8) / seconds / 1e6, path2: total > 0 ? rx[1]! / total : 0 };
  } finally {
    for (const p of proxies) await p.stop(10_000);
  }
}

export async function run(opts: ClusterScaleOptions = {}): Promise<ClusterScaleResult> {
  const o: Required<ClusterScaleOptions> = { mbit: 50, perInstance: 4, warmMs: 2000, windowMs: 5000, repetitions: 3, sizes: [1, 2, 3], ...opts };
  const c = await createClusterBed({ instances: Math.max(...o.sizes), originMbit: o.mbit });
  try {
    const raw: { n: number; mbit: number[]; path2: number[] }[] = o.sizes.map((n) => ({ n, mbit: [], path2: [] }));
    // Sizes interleaved per repetition, so a busy spell of the machine hits all of them alike.
    for (let r = 0; r < o.repetitions; r++) {
      for (const x of raw) {
        const m = await measure(c, x.n, o);
        x.mbit.push(Math.round(m.mbit * 10) / 10);
        x.path2.push(m.path2);
      }
    }
    const median = (v: number[]): number => percentile(v, 50) ?? 0;
    const one = median(raw.find((x) => x.n === 1)?.mbit ?? []) || median(raw[0]!.mbit) / raw[0]!.n;
    return {
      uplinkMbit: o.mbit,
      perInstance: o.perInstance,
      windowMs: o.windowMs,
      repetitions: o.repetitions,
      pools: raw.map((x) => ({
        instances: x.n,
        runsMbit: x.mbit,
        medianMbit: median(x.mbit),
        scaling: Math.round((median(x.mbit) / (x.n * one)) * 100) / 100,
        path2Share: Math.round(median(x.path2) * 100) / 100,
      })),
    };
  } finally {
    await c.destroy();
  }
}

export function table(r: ClusterScaleResult): string {
  const rows = r.pools.map((p) => `| ${p.instances} | ${p.instances * r.uplinkMbit} | ${p.medianMbit} | ${p.runsMbit.join(', ')} | ${p.scaling} | ${Math.round(p.path2Share * 100)} % |`);
  return [
    `cluster scale-out: uplinks ${r.uplinkMbit} Mbit/s each, ${r.perInstance} downloads per instance, ${r.windowMs} ms window, ${r.repetitions} repetitions`,
    '| instances | uplink sum, Mbit/s | aggregate (median), Mbit/s | runs | ÷ N × one | over path 2 |',
    '| --- | --- | --- | --- | --- | --- |',
    ...rows,
  ].join('\n');
}

if (require.main === module) {
  const { values } = parseArgs({ options: { mbit: { type: 'string' }, 'per-instance': { type: 'string' }, window: { type: 'string' }, repetitions: { type: 'string' }, 'no-save': { type: 'boolean' } } });
  finishStandalone(
    'cluster-scale',
    run({
      ...(values.mbit ? { mbit: Number(values.mbit) } : {}),
      ...(values['per-instance'] ? { perInstance: Number(values['per-instance']) } : {}),
      ...(values.window ? { windowMs: Number(values.window) } : {}),
      ...(values.repetitions ? { repetitions: Number(values.repetitions) } : {}),
    }),
    table,
    !values['no-save'],
  );
}
