/**
 * The shape of a bench run (what goes into the JSON file) and the pure arithmetic over it:
 * best-of-N, ratios against the limit and the best peer, percentiles, and the targets.
 */
import type { SubjectKind } from './peers';

/** One subject's figure in one workload. */
export interface Row {
  workload: string;
  subject: string;
  label: string;
  kind: SubjectKind | 'info';
  /** The headline figure (best run); null when the subject could not run. */
  value: number | null;
  unit: string;
  higherIsBetter: boolean;
  /** The headline figure of every run. */
  runs: number[];
  /** Secondary figures of the best run (CPU s/GB, p50/p99 ms, RSS...). */
  extra: Record<string, number | null>;
  /** Why value is null, or what went wrong in some run. */
  note?: string;
  /** Filled by addRatios: value / limit's value, value / best peer's value (same workload). */
  vsLimit?: number | null;
  vsBestPeer?: number | null;
}

export interface Target {
  name: string;
  /** What was measured, in `unit`. */
  value: number | null;
  unit: string;
  op: '>=' | '<=' | '<';
  threshold: number;
  met: boolean | null;
  detail: string;
}

/** A time series for a chart: seconds, and one named line per path or total. */
export interface Series {
  t: number[];
  lines: Record<string, number[]>;
}

export interface Machine {
  date: string;
  hostname: string;
  nproc: number;
  cpu: string;
  memGiB: number;
  kernel: string;
  node: string;
}

export interface BenchResults {
  mode: 'quick' | 'full';
  machine: Machine;
  seconds: number;
  bestOf: number;
  rows: Row[];
  targets: Target[];
  charts: string[];
  /** Time series behind the testbed charts. */
  series: Record<string, Series>;
  /** Workloads skipped entirely, with the reason. */
  skipped: Record<string, string>;
}

/** Pick the best of several runs of one subject (by the headline figure). */
export function bestOf<T extends { value: number }>(runs: readonly T[], higherIsBetter: boolean): T | null {
  let best: T | null = null;
  for (const r of runs) if (!best || (higherIsBetter ? r.value > best.value : r.value < best.value)) best = r;
  return best;
}

/** Nearest-rank percentile of unsorted values (p in 0..100); null for no values. */
export function percentile(values: readonly number[], p: number): number | null {
  if (values.length === 0) return null;
  const s = [...values].sort((a, b) => a - b);
  const rank = Math.min(s.length, Math.max(1, Math.ceil((p / 100) * s.length)));
  return s[rank - 1];
}

/** Fill vsLimit and vsBestPeer on every row with a value. "Best" respects higherIsBetter. */
export function addRatios(rows: Row[]): void {
  const byWorkload = new Map<string, Row[]>();
  for (const r of rows) byWorkload.set(r.workload, [...(byWorkload.get(r.workload) ?? []), r]);
  for (const group of byWorkload.values()) {
    const limit = group.find((r) => r.kind === 'limit' && r.value !== null)?.value ?? null;
    const peers = group.filter((r) => r.kind === 'peer' && r.value !== null).map((r) => r.value!);
    const higher = group[0].higherIsBetter;
    const bestPeer = peers.length ? (higher ? Math.max(...peers) : Math.min(...peers)) : null;
    for (const r of group) {
      r.vsLimit = r.value !== null && limit ? r.value / limit : null;
      r.vsBestPeer = r.value !== null && bestPeer ? r.value / bestPeer : null;
    }
  }
}

export function findRow(rows: readonly Row[], workload: string, subject: string): Row | undefined {
  return rows.find((r) => r.workload === workload && r.subject === subject);
}

function target(name: string, value: number | null | undefined, unit: string, op: Target['op'], threshold: number, detail: string): Target {
  const v = value ?? null;
  const met = v === null || !Number.isFinite(v) ? null : op === '>=' ? v >= threshold : op === '<=' ? v <= threshold : v < threshold;
  return { name, value: v, unit, op, threshold, met, detail };
}

/** The targets, evaluated on one run's rows. */
export function evaluateTargets(rows: readonly Row[], classicPeers: ReadonlySet<string>): Target[] {
  const out: Target[] = [];
  const single = 'download-1x';
  const limitRow = rows.find((r) => r.workload === single && r.kind === 'limit');
  const limit = limitRow?.value ?? null;
  const limitBusy = limitRow?.extra.machineBusy ?? null;
  const classic = rows.filter((r) => r.workload === single && classicPeers.has(r.subject) && r.value !== null);
  const bestClassic = classic.length ? classic.reduce((a, b) => (a.value! >= b.value! ? a : b)) : null;
  for (const [id, name] of [
    ['ours-connect-splice', 'CONNECT'],
    ['ours-socks-splice', 'SOCKS5'],
  ] as const) {
    const v = findRow(rows, single, id)?.value ?? null;
    out.push(target(`${name} one connection ≥ 0.85 × limit`, v !== null && limit ? v / limit : null, '× limit', '>=', 0.85, `${fmt(v)} vs limit ${fmt(limit)} GB/s; machine busy ${pct(limitBusy)} in the limit run, ${pct(findRow(rows, single, id)?.extra.machineBusy)} through the proxy`));
    out.push(
      target(
        `${name} one connection ≥ 1.5 × best of Dante/Squid/HAProxy`,
        v !== null && bestClassic ? v / bestClassic.value! : null,
        '× best classic peer',
        '>=',
        1.5,
        bestClassic ? `${fmt(v)} vs ${bestClassic.subject} ${fmt(bestClassic.value)} GB/s` : 'no classic peer ran',
      ),
    );
  }
  const pipeCpu = findRow(rows, single, 'node-pipe')?.extra.cpuPerGB ?? null;
  const ourCpu = findRow(rows, single, 'ours-connect-splice')?.extra.cpuPerGB ?? null;
  out.push(target('CPU per GB ≤ ½ naive Node pipe relay', ourCpu !== null && pipeCpu ? ourCpu / pipeCpu : null, '× node-pipe', '<=', 0.5, `${fmt(ourCpu)} vs ${fmt(pipeCpu)} CPU s/GB (CONNECT splice, 1 GiB)`));
  const lat = findRow(rows, 'latency-syn', 'ours-connect-splice');
  const latW2 = findRow(rows, 'latency-syn', 'ours-connect-splice-w2');
  const w2 = latW2 ? `; with 2 workers p50 ${fmt(latW2.extra.p50 ?? null)} / p99 ${fmt(latW2.extra.p99 ?? null)} ms` : '';
  out.push(target('conversion latency p50 < 0.3 ms (client SYN → upstream SYN)', lat?.extra.p50 ?? null, 'ms', '<', 0.3, `at ${fmt(lat?.extra.rate ?? null)} new connections/s${w2}`));
  out.push(target('conversion latency p99 < 2 ms (client SYN → upstream SYN)', lat?.extra.p99 ?? null, 'ms', '<', 2, ''));
  const data = findRow(rows, 'latency-data', 'ours-connect-splice');
  out.push(target('first byte in → out p50 < 0.3 ms', data?.extra.p50 ?? null, 'ms', '<', 0.3, ''));
  out.push(target('first byte in → out p99 < 2 ms', data?.extra.p99 ?? null, 'ms', '<', 2, ''));
  const conc = findRow(rows, 'idle-10k', 'ours-connect-splice');
  const rss = target('10,000 concurrent tunnels: RSS ≤ 250 MB', conc?.extra.rssMB ?? null, 'MB', '<=', 250, `${fmt(conc?.extra.open ?? null)} open, ${fmt(conc?.extra.errors ?? null)} errors (CONNECT splice)`);
  // Memory held by a fraction of the tunnels says nothing about the target.
  if (rss.met && (conc?.extra.errors ?? 0) > 0) rss.met = false;
  out.push(rss);
  out.push(target('10,000 concurrent tunnels: no errors', conc ? (conc.extra.errors ?? null) : null, 'errors', '<=', 0, ''));
  const agg = findRow(rows, 'two-path', 'mptcp-via-proxy');
  const direct = findRow(rows, 'two-path', 'mptcp-direct')?.value ?? null;
  out.push(target('two 50 Mbit/s paths: ≥ 92 Mbit/s through the proxy', agg?.value ?? null, 'Mbit/s', '>=', 92, `MPTCP with no proxy in the same run: ${fmt(direct)} Mbit/s (${fmt(agg?.value && direct ? agg.value / direct : null)} × direct)`));
  const small = findRow(rows, 'buffer', 'rmem-0.18MB')?.value ?? null;
  const auto = findRow(rows, 'buffer', 'rmem-auto')?.value ?? null;
  out.push(target('auto buffers: no collapse where 0.18 MB does (auto ≥ 0.9 × best fixed)', auto !== null && small !== null ? auto / Math.max(small, findRow(rows, 'buffer', 'rmem-0.72MB')?.value ?? 0) : null, '× best fixed', '>=', 0.9, `auto ${fmt(auto)} vs 0.18 MB ${fmt(small)} Mbit/s`));
  return out;
}

const pct = (share: number | null | undefined): string => (share === null || share === undefined ? '–' : `${Math.round(share * 100)} %`);

export function fmt(v: number | null | undefined, digits = 3): string {
  if (v === null || v === undefined || !Number.isFinite(v)) return '–';
  if (v !== 0 && Math.abs(v) < 10 ** -(digits - 1)) return v.toExponential(1);
  return Number(v.toPrecision(digits)).toString();
}
