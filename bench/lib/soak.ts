/**
 * The soak's pure parts: reading the proxy's Prometheus text, what one sample holds, the
 * growth verdict (the last window against the first after warm-up, with stated tolerances),
 * and the chart. The command that drives the proxy is bench/soak.ts.
 */
import { linePanels } from './svg';
import { fmt, percentile, type Series } from './results';

/** Sum of every series of metric `name` (optionally only those whose labels contain `labels`). */
export function promSum(text: string, name: string, labels?: string): number | null {
  let sum: number | null = null;
  for (const line of text.split('\n')) {
    if (!line.startsWith(name)) continue;
    const m = /^([a-zA-Z_:][\w:]*)(\{[^}]*\})?\s+(\S+)/.exec(line);
    if (!m || m[1] !== name || (labels && !(m[2] ?? '').includes(labels))) continue;
    sum = (sum ?? 0) + Number(m[3]);
  }
  return sum;
}

/** One minute's reading of the proxy (every process of it summed). */
export interface SoakSample {
  /** Seconds since the held tunnels were open (negative: before). */
  t: number;
  /** From /proc/PID: open descriptors, resident memory, processes in the tree, listening sockets. */
  fds: number;
  rssMB: number;
  processes: number;
  listeners: number;
  /** From /metrics (prom-client's process and Node metrics, and ours). */
  heapUsedMB: number | null;
  heapTotalMB: number | null;
  handles: number | null;
  timers: number | null;
  resources: number | null;
  connectionsActive: number | null;
  /** Cumulative: mptcp_proxy_errors_total, and connections finished with another result than ok. */
  proxyErrors: number | null;
  failedConnections: number | null;
  finishedConnections: number | null;
  /** From the clients' last status lines. */
  heldOpen: number;
  churnOk: number;
  clientErrors: number;
  reloads: number;
}

export interface Tolerance {
  /** Allowed growth: last-window median ≤ first-window median × (1 + rel) + abs. */
  rel: number;
  abs: number;
}

/** What may grow between the first and the last window, and by how much (stated in the results). */
export const TOLERANCES: Record<'fds' | 'rssMB' | 'heapUsedMB' | 'handles' | 'timers', Tolerance> = {
  // Descriptors and handles: the churn's in-flight tunnels (a few at any instant) come and go.
  fds: { rel: 0.01, abs: 20 },
  handles: { rel: 0.01, abs: 20 },
  timers: { rel: 0.01, abs: 20 },
  // Memory: the allocator and the GC's sawtooth move by some percent from minute to minute.
  rssMB: { rel: 0.1, abs: 5 },
  heapUsedMB: { rel: 0.2, abs: 5 },
};

export interface GrowthCheck {
  metric: keyof typeof TOLERANCES;
  first: number | null;
  last: number | null;
  limit: number | null;
  ok: boolean;
}

export interface Windows {
  warmS: number;
  windowS: number;
  endS: number;
}

/** Warm-up 1/12 of the run, windows 1/4 (5 and 15 minutes of an hour). */
export const windowsFor = (seconds: number): Windows => ({ warmS: seconds / 12, windowS: seconds / 4, endS: seconds });

const median = (xs: number[]): number | null => percentile(xs, 50);

export function growth(samples: readonly SoakSample[], w: Windows): GrowthCheck[] {
  const first = samples.filter((s) => s.t >= w.warmS && s.t <= w.warmS + w.windowS);
  const last = samples.filter((s) => s.t >= w.endS - w.windowS);
  return (Object.keys(TOLERANCES) as (keyof typeof TOLERANCES)[]).map((metric) => {
    const vals = (set: readonly SoakSample[]): number[] => set.map((s) => s[metric]).filter((v): v is number => v !== null);
    const a = median(vals(first));
    const b = median(vals(last));
    const tol = TOLERANCES[metric];
    const limit = a === null ? null : a * (1 + tol.rel) + tol.abs;
    return { metric, first: a, last: b, limit, ok: a !== null && b !== null && limit !== null && b <= limit };
  });
}

/** The soak's figures and counts that must be zero (or equal) for a pass. */
export interface SoakCounts {
  tunnelsWanted: number;
  tunnelsOpened: number;
  openErrors: number;
  heldDropped: number;
  heldPings: number;
  heldPingErrors: number;
  churnOk: number;
  churnErrors: number;
  churnBytes: number;
  reloadsSent: number;
  /** "config reloaded" lines in the proxy's log (one per process that serves connections). */
  reloadsLogged: number;
  proxyErrorsDelta: number | null;
  failedConnectionsDelta: number | null;
  /** warn/error lines in the proxy's log up to the last sample (the clients' teardown is apart). */
  logProblems: number;
  /** /metrics answers that lacked a worker's figures (scraped again; not part of the verdict). */
  partialScrapes: number;
  /** Samples whose /metrics stayed incomplete after the retries: only their /proc figures count. */
  incompleteSamples: number;
  listenersMin: number;
  listenersMax: number;
  /** Processes of the proxy seen over the run (a worker restarted = a new pid). */
  pidsSeen: number;
  pidsAtStart: number;
}

export interface Verdict {
  pass: boolean;
  growth: GrowthCheck[];
  failures: string[];
}

export function verdict(samples: readonly SoakSample[], w: Windows, c: SoakCounts, servers: number): Verdict {
  const g = growth(samples, w);
  const failures: string[] = g.filter((x) => !x.ok).map((x) => (x.first === null || x.last === null ? `${x.metric}: no samples in a window` : `${x.metric} grew: ${fmt(x.first)} → ${fmt(x.last)} (limit ${fmt(x.limit)})`));
  const zero: [string, number | null][] = [
    ['tunnel open errors', c.openErrors],
    ['held tunnels dropped', c.heldDropped],
    ['held tunnel echo errors', c.heldPingErrors],
    ['short tunnel errors', c.churnErrors],
    ['proxy error metric delta', c.proxyErrorsDelta],
    ['connections finished with an error', c.failedConnectionsDelta],
    ['warn/error lines in the proxy log', c.logProblems],
  ];
  for (const [what, n] of zero) if (n !== 0) failures.push(`${what}: ${n ?? 'not read'}`);
  if (c.tunnelsOpened < c.tunnelsWanted) failures.push(`only ${c.tunnelsOpened} of ${c.tunnelsWanted} tunnels opened`);
  if (c.churnOk === 0) failures.push('no short tunnels completed');
  if (c.reloadsLogged < c.reloadsSent * servers) failures.push(`${c.reloadsSent} reloads sent, ${c.reloadsLogged} logged (want ${servers} each)`);
  if (c.listenersMin !== c.listenersMax) failures.push(`listening sockets changed: ${c.listenersMin}..${c.listenersMax}`);
  if (c.pidsSeen !== c.pidsAtStart) failures.push(`proxy processes replaced: ${c.pidsSeen} pids seen, ${c.pidsAtStart} at start`);
  if (samples.length < 2) failures.push('fewer than two samples');
  return { pass: failures.length === 0, growth: g, failures };
}

/** Four panels over the run's minutes: descriptors and handles, memory, timers, open connections. */
export function soakChart(title: string, samples: readonly SoakSample[], minutes: number): string {
  const after = samples.filter((s) => s.t >= 0);
  // Per panel, the samples that have every figure it draws (a sample may lack the /metrics ones).
  const series = (lines: Record<string, (s: SoakSample) => number | null>): Series => {
    const have = after.filter((s) => Object.values(lines).every((f) => f(s) !== null));
    return { t: have.map((s) => s.t / 60), lines: Object.fromEntries(Object.entries(lines).map(([k, f]) => [k, have.map((s) => f(s)!)])) };
  };
  return linePanels(
    title,
    '',
    [
      { title: 'descriptors and active handles', series: series({ fds: (s) => s.fds, handles: (s) => s.handles }) },
      { title: 'memory, MB', series: series({ RSS: (s) => s.rssMB, 'heap total': (s) => s.heapTotalMB, 'heap used': (s) => s.heapUsedMB }) },
      { title: 'active timers', series: series({ timers: (s) => s.timers }) },
      { title: 'connections open', series: series({ 'proxy metric': (s) => s.connectionsActive, 'held by the client': (s) => s.heldOpen }) },
    ],
    { ownScale: true, xLabel: 'minutes', xMax: minutes },
  );
}

/** The soak's knobs (bench/soak.ts flags). */
/** The soak's knobs (bench/soak.ts flags). */
export interface Settings {
  relay: 'splice' | 'stream';
  minutes: number;
  tunnels: number;
  rate: number;
  bytes: number;
  reloadEveryS: number;
  sampleEveryS: number;
  workers: number;
}

export interface SoakResults {
  date: string;
  machine: { hostname: string; nproc: number; cpu: string; memGiB: number; kernel: string; node: string; nofile: number };
  command: string;
  settings: Settings;
  windows: Windows;
  tolerances: typeof TOLERANCES;
  samples: SoakSample[];
  counts: SoakCounts;
  verdict: Verdict;
  /** First warn/error lines of the proxy's log, and the clients' first errors, if any. */
  logExcerpt: string[];
  /** warn/error lines logged while the clients closed their tunnels at the end. */
  teardownLog: string[];
  clientFirstErrors: string[];
  seconds: number;
}

/** The results section (bench/results/soak.md): settings, verdict, the chart, the figures, hand-written notes. */
export function soakMarkdown(r: SoakResults, chart: string, notes = ''): string {
  const m = r.machine;
  const s = r.settings;
  const c = r.counts;
  const after = r.samples.filter((x) => x.t >= 0);
  const warm = after.find((x) => x.t >= r.windows.warmS) ?? after[0];
  const points: [string, SoakSample | undefined][] = [
    ['start (proxy idle, no tunnels)', r.samples.find((x) => x.t < 0)],
    ['tunnels open (t = 0)', after[0]],
    [`after warm-up (${fmt(warm?.t !== undefined ? warm.t / 60 : null)} min)`, warm],
    [`end (${fmt(after.at(-1)!.t / 60)} min)`, after.at(-1)],
  ];
  const row = (cells: (string | number | null | undefined)[]): string => `| ${cells.map((v) => (typeof v === 'number' ? fmt(v, 4) : (v ?? '–'))).join(' | ')} |`;
  const tolText = Object.entries(r.tolerances)
    .map(([k, t]) => `${k} +${t.rel * 100} % + ${t.abs}`)
    .join(', ');
  return [
    `# Soak: ${fmt(s.minutes)} minutes, ${c.tunnelsOpened} open tunnels, ${s.rate} short tunnels/s, SIGHUP every ${fmt(s.reloadEveryS / 60)} min`,
    '',
    `Measured ${r.date} on ${m.nproc} cores (${m.cpu}), ${m.memGiB} GiB, Linux ${m.kernel}, Node ${m.node}; open-file hard limit ${m.nofile}. ` +
      `\`${r.command}\` (${Math.round(r.seconds)} s in all), mptcp-proxy with the ${s.relay} relay and ${s.workers} worker${s.workers > 1 ? 's' : ''} in a private network namespace, loopback only. ` +
      `Held tunnels: half CONNECT, half SOCKS5, each echoing a line once a minute; short tunnels: CONNECT and SOCKS5 in turn, ${s.bytes} bytes each way. ` +
      `Sampled every ${fmt(s.sampleEveryS)} s (all proxy processes summed: /proc for descriptors, RSS and listening sockets; /metrics for heap, handles, timers = active \`Timeout\` resources, connections, errors).`,
    '',
    `**Verdict: ${r.verdict.pass ? 'pass' : 'FAIL'}.** Growth compares the median of the first ${fmt(r.windows.windowS / 60)} minutes after a ${fmt(r.windows.warmS / 60)}-minute warm-up with the median of the last ${fmt(r.windows.windowS / 60)}; allowed: ${tolText}.`,
    ...(r.verdict.failures.length ? ['', ...r.verdict.failures.map((f) => `- ${f}`)] : []),
    '',
    `![soak](${chart})`,
    '',
    '| point | fds | RSS MB | heap used MB | heap total MB | handles | timers | listeners | connections open |',
    '| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |',
    ...points.map(([name, x]) => row([name, x?.fds, x?.rssMB, x?.heapUsedMB, x?.heapTotalMB, x?.handles, x?.timers, x?.listeners, x?.connectionsActive])),
    '',
    '| growth check | first window | last window | limit | result |',
    '| --- | ---: | ---: | ---: | --- |',
    ...r.verdict.growth.map((g) => row([g.metric, g.first, g.last, g.limit, g.ok ? 'ok' : '**grew**'])),
    '',
    '| count | value |',
    '| --- | ---: |',
    ...(
      [
        ['tunnels wanted / opened', `${c.tunnelsWanted} / ${c.tunnelsOpened}`],
        ['tunnel open errors', c.openErrors],
        ['held tunnels dropped', c.heldDropped],
        ['held tunnel echoes (errors)', `${c.heldPings} (${c.heldPingErrors})`],
        ['short tunnels completed (errors)', `${c.churnOk} (${c.churnErrors})`],
        ['short tunnel bytes each way', c.churnBytes],
        ['reloads sent / "config reloaded" logged', `${c.reloadsSent} / ${c.reloadsLogged}`],
        ['mptcp_proxy_errors_total delta', c.proxyErrorsDelta],
        ['connections finished with an error (delta)', c.failedConnectionsDelta],
        ['warn/error lines in the proxy log', c.logProblems],
        ['listening sockets (min–max)', `${c.listenersMin}–${c.listenersMax}`],
        ['/metrics answers missing a worker (scraped again)', c.partialScrapes],
        ['samples left with /proc figures only', c.incompleteSamples],
        ['proxy processes at start / seen', `${c.pidsAtStart} / ${c.pidsSeen}`],
      ] as [string, string | number | null][]
    ).map(([k, v]) => row([k, v])),
    ...(r.logExcerpt.length ? ['', 'Proxy log lines at warn/error:', '', '```', ...r.logExcerpt, '```'] : []),
    ...(r.teardownLog.length ? ['', 'Logged while the clients closed their tunnels at the end (not counted above):', '', '```', ...r.teardownLog, '```'] : []),
    ...(r.clientFirstErrors.length ? ['', 'Clients\' first errors:', '', ...r.clientFirstErrors.map((e) => `- ${e}`)] : []),
    ...(notes.trim() ? ['', '## Notes', '', notes.trim()] : []),
    '',
  ].join('\n');
}
