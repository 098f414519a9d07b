/**
 * The shape of a bench run (what goes into the JSON file) and the pure arithmetic over it:
 * best-of-N, ratios against the limit and the best peer, percentiles, and the issue's targets.
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
  /** Which issue set it (a heading of its own in the table); absent for the external scripts' targets. */
  group?: string;
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

/** a / b, or null when either is missing (or b is 0). */
const ratio = (a: number | null | undefined, b: number | null | undefined): number | null => (a === null || a === undefined || !b ? null : a / b);

export const ISSUE_14 = "issue 14: short connections at HAProxy's cost (ratios within this run)";
export const ISSUE_6 = 'issue 6';

/** Issue 14's and issue 6's targets (those issue 14 does not supersede), evaluated on one run's rows. */
export function evaluateTargets(rows: readonly Row[], classicPeers: ReadonlySet<string>): Target[] {
  return [...issue14Targets(rows, classicPeers).map((t) => ({ ...t, group: ISSUE_14 })), ...issue6Targets(rows, classicPeers).map((t) => ({ ...t, group: ISSUE_6 }))];
}

/** The fast path subjects (the default configuration) issue 14 compares with HAProxy. */
const FAST: readonly [id: string, name: string][] = [
  ['ours-connect-fast', 'CONNECT'],
  ['ours-socks-fast', 'SOCKS5'],
];
/** The latency pass at the issue's second rate (bench/run.ts names its rows `latency-syn@2000`, ...). */
export const HIGH_RATE = 2000;
/** Below this share of the rate asked, the latency client (one Node thread) was the limit, not the subject. */
export const CLIENT_SHORTFALL = 0.9;
/** Tunnels the CPU-per-tunnel target is defined over. */
export const CPU_TUNNELS = 10_000;

/** "10000 conns, 0 errors, 499/s of 500 asked" for a latency row. */
function burstText(r: Row | undefined): string {
  if (!r) return 'not run';
  const e = r.extra;
  const short = e.achieved !== null && e.achieved !== undefined && e.rate ? e.achieved < CLIENT_SHORTFALL * e.rate : false;
  return `${fmt(e.n)} conns, ${fmt(e.errors)} errors${short ? `, the client reached only ${fmt(e.achieved)} of ${fmt(e.rate)}/s asked` : ''}`;
}

/** Highest rate of a sweep row up to which every p99 stayed below `ms` (null without a sweep). */
export function highestRateUnder(r: Row | undefined, ms: number): number | null {
  if (!r) return null;
  let best = 0;
  const rates = Object.keys(r.extra)
    .map((k) => /^p99@(\d+)$/.exec(k)?.[1])
    .filter((x): x is string => x !== undefined)
    .map(Number)
    .sort((a, b) => a - b);
  for (const rate of rates) {
    const p99 = r.extra[`p99@${rate}`];
    if (p99 === null || p99 === undefined || p99 >= ms) break;
    best = rate;
  }
  return best;
}

function issue14Targets(rows: readonly Row[], classicPeers: ReadonlySet<string>): Target[] {
  const out: Target[] = [];
  const hap = (w: string): Row | undefined => findRow(rows, w, 'haproxy');
  const sweepHap = findRow(rows, 'rate-sweep', 'haproxy');
  for (const [w, nominal] of [
    ['latency-syn', 500],
    [`latency-syn@${HIGH_RATE}`, HIGH_RATE],
  ] as const) {
    const h = hap(w);
    const rate = h?.extra.rate ?? nominal;
    // The issue's fallback for a machine where 2,000/s is too much even for HAProxy: its highest
    // rate with p99 < 1 ms, stated, with our p99 there from the same sweep.
    const under = w !== 'latency-syn' && (h?.extra.p99 ?? 0) >= 1 ? highestRateUnder(sweepHap, 1) : null;
    for (const [id, name] of FAST) {
      const r = findRow(rows, w, id);
      const ourSweep = findRow(rows, 'rate-sweep', id)?.extra[`p99@${under}`];
      const context = w === 'latency-syn' || (h?.extra.p99 ?? 0) < 1 ? '' : `; HAProxy's own p99 is ≥ 1 ms here; ${under ? `it stays < 1 ms up to ${fmt(under)}/s in the rate sweep, where ours is ${fmt(ourSweep)} vs ${fmt(sweepHap?.extra[`p99@${under}`])} ms (${fmt(ratio(ourSweep, sweepHap?.extra[`p99@${under}`]))} ×)` : under === 0 ? 'in the rate sweep it is ≥ 1 ms from the lowest rate on' : 'no rate sweep in this run to find where it stays < 1 ms'}`;
      for (const [key, limit] of [
        ['p50', 1.0],
        ['p99', 1.5],
      ] as const) {
        const t = target(`${name} client SYN → upstream SYN ${key} ≤ ${limit.toFixed(1)} × HAProxy's at ${fmt(rate)}/s`, ratio(r?.extra[key], h?.extra[key]), '× HAProxy', '<=', limit, `${fmt(r?.extra[key])} vs ${fmt(h?.extra[key])} ms (ours ${burstText(r)}; HAProxy ${burstText(h)})${key === 'p99' ? context : ''}`);
        // A latency figure over tunnels that failed says nothing about the ones that did not.
        if (t.met && (r?.extra.errors ?? 0) > 0) t.met = false;
        out.push(t);
      }
    }
  }
  for (const [id, name] of FAST) {
    const parts = ['latency-data', `latency-data@${HIGH_RATE}`].map((w) => ({ w, r: findRow(rows, w, id), h: hap(w) }));
    const [main, high] = parts;
    const highText = high.r || high.h ? `; at ${fmt(hap(`latency-syn@${HIGH_RATE}`)?.extra.rate ?? HIGH_RATE)}/s ${fmt(high.r?.extra.p99)} vs ${fmt(high.h?.extra.p99)} ms (${fmt(ratio(high.r?.extra.p99, high.h?.extra.p99))} ×)` : '';
    out.push(target(`${name} first request byte → origin p99 ≤ 1.5 × HAProxy's`, ratio(main.r?.extra.p99, main.h?.extra.p99), '× HAProxy', '<=', 1.5, `${fmt(main.r?.extra.p99)} vs ${fmt(main.h?.extra.p99)} ms at ${fmt(main.h?.extra.rate ?? null)}/s${highText}`));
  }
  for (const [id, name] of FAST) {
    const r = findRow(rows, 'latency-syn', id);
    const h = hap('latency-syn');
    const t = target(`${name} proxy CPU per tunnel over ${fmt(CPU_TUNNELS)} short tunnels ≤ 1.2 × HAProxy's`, ratio(r?.extra.cpuMsPerTunnel, h?.extra.cpuMsPerTunnel), '× HAProxy', '<=', 1.2, `${fmt(r?.extra.cpuMsPerTunnel)} vs ${fmt(h?.extra.cpuMsPerTunnel)} ms of CPU per tunnel over ${fmt(r?.extra.count)} / ${fmt(h?.extra.count)} tunnels at ${fmt(h?.extra.rate)}/s`);
    // The issue defines it over 10,000 tunnels: a shorter burst is a different (warm-up-heavier) figure.
    if (t.met !== null && Math.min(r?.extra.count ?? 0, h?.extra.count ?? 0) < CPU_TUNNELS) {
      t.met = null;
      t.detail += ` (the target asks ${fmt(CPU_TUNNELS)}: not judged)`;
    }
    out.push(t);
  }
  for (const [id, name] of FAST) {
    const r = findRow(rows, 'rate-sweep', id);
    const t = target(`${name} highest sustained rate with p99 < 10 ms ≥ HAProxy's`, ratio(r?.value, sweepHap?.value), '× HAProxy', '>=', 1, `${fmt(r?.value)} vs ${fmt(sweepHap?.value)} conns/s; ours: ${r?.note ?? 'not run'}; HAProxy: ${sweepHap?.note ?? 'not run'}`);
    out.push(t);
  }
  const ka = (id: string): number | null => findRow(rows, 'keepalive-small', id)?.value ?? null;
  const squid = ka('squid-forward');
  out.push(target("small keep-alive HTTP forward req/s ≥ 1.5 × Squid's (fast path on)", ratio(ka('ours-forward-fast'), squid), '× Squid', '>=', 1.5, `${fmt(ka('ours-forward-fast'))} vs Squid ${fmt(squid)} req/s; fast path off (ours-forward) ${fmt(ka('ours-forward'))} req/s = ${fmt(ratio(ka('ours-forward'), squid))} ×`));
  const single = 'download-1x';
  const ours = ['ours-connect-fast', 'ours-connect-splice'].map((id) => findRow(rows, single, id)).filter((r): r is Row => r?.value !== null && r?.value !== undefined);
  const best = ours.length ? ours.reduce((a, b) => (a.value! >= b.value! ? a : b)) : null;
  const classic = bestClassicPeer(rows, single, classicPeers);
  out.push(target('no regression: one CONNECT download ≥ 2 × the best classic peer', ratio(best?.value, classic?.value), '× best classic peer', '>=', 2, `${best ? `${best.subject} ${fmt(best.value)}` : '–'} (best of ours-connect-fast ${fmt(findRow(rows, single, 'ours-connect-fast')?.value)}, ours-connect-splice ${fmt(findRow(rows, single, 'ours-connect-splice')?.value)}) vs ${classic ? `${classic.subject} ${fmt(classic.value)}` : 'no classic peer'} GB/s`));
  const conc = findRow(rows, 'idle-10k', 'ours-connect-fast');
  const splice = findRow(rows, 'idle-10k', 'ours-connect-splice');
  const rss = target('no regression: 10,000 idle tunnels ≤ 250 MB (fast path, the default)', conc?.extra.rssMB ?? null, 'MB', '<=', 250, `${fmt(conc?.extra.open ?? null)} open, ${fmt(conc?.extra.errors ?? null)} errors (CONNECT, fast path on); fast path off (splice) ${fmt(splice?.extra.rssMB ?? null)} MB`);
  // Memory held by a fraction of the tunnels says nothing about the target.
  if (rss.met && (conc?.extra.errors ?? 0) > 0) rss.met = false;
  out.push(rss);
  const agg = findRow(rows, 'two-path', 'mptcp-via-proxy');
  const direct = findRow(rows, 'two-path', 'mptcp-direct')?.value ?? null;
  out.push(target('no regression: two 50 Mbit/s paths ≥ 92 Mbit/s through the proxy', agg?.value ?? null, 'Mbit/s', '>=', 92, `MPTCP with no proxy in the same run: ${fmt(direct)} Mbit/s (${fmt(ratio(agg?.value, direct))} × direct)`));
  return out;
}

function bestClassicPeer(rows: readonly Row[], workload: string, classicPeers: ReadonlySet<string>): Row | null {
  const classic = rows.filter((r) => r.workload === workload && classicPeers.has(r.subject) && r.value !== null);
  return classic.length ? classic.reduce((a, b) => (a.value! >= b.value! ? a : b)) : null;
}

/** Issue 6's targets that issue 14 leaves standing (its absolute latency targets, idle, two paths and CONNECT vs the classic peers are issue 14's now). */
function issue6Targets(rows: readonly Row[], classicPeers: ReadonlySet<string>): Target[] {
  const out: Target[] = [];
  const single = 'download-1x';
  const limitRow = rows.find((r) => r.workload === single && r.kind === 'limit');
  const limit = limitRow?.value ?? null;
  const limitBusy = limitRow?.extra.machineBusy ?? null;
  const bestClassic = bestClassicPeer(rows, single, classicPeers);
  for (const [id, name] of [
    ['ours-connect-splice', 'CONNECT'],
    ['ours-socks-splice', 'SOCKS5'],
  ] as const) {
    const v = findRow(rows, single, id)?.value ?? null;
    out.push(target(`${name} splice one connection ≥ 0.85 × limit`, ratio(v, limit), '× limit', '>=', 0.85, `${fmt(v)} vs limit ${fmt(limit)} GB/s; machine busy ${pct(limitBusy)} in the limit run, ${pct(findRow(rows, single, id)?.extra.machineBusy)} through the proxy`));
  }
  const socks = findRow(rows, single, 'ours-socks-splice')?.value ?? null;
  out.push(target('SOCKS5 splice one connection ≥ 1.5 × best of Dante/Squid/HAProxy', ratio(socks, bestClassic?.value), '× best classic peer', '>=', 1.5, bestClassic ? `${fmt(socks)} vs ${bestClassic.subject} ${fmt(bestClassic.value)} GB/s` : 'no classic peer ran'));
  const pipeCpu = findRow(rows, single, 'node-pipe')?.extra.cpuPerGB ?? null;
  const ourCpu = findRow(rows, single, 'ours-connect-splice')?.extra.cpuPerGB ?? null;
  out.push(target('CPU per GB ≤ ½ naive Node pipe relay', ratio(ourCpu, pipeCpu), '× node-pipe', '<=', 0.5, `${fmt(ourCpu)} vs ${fmt(pipeCpu)} CPU s/GB (CONNECT splice, 1 GiB)`));
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
