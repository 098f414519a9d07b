/**
 * Presenting one run: the console table (every workload, ratios vs the limit and the best peer,
 * targets met / not met), the charts, and bench/RESULTS.md. Pure: text in, text out (but for
 * readNotes, which reads the hand-written notes kept beside the published figures).
 */
import fs from 'node:fs';
import path from 'node:path';
import { REPO_ROOT } from '../../testkit/testbed';
import { barChart, linePanels } from './svg';
import { fmt, type BenchResults, type Row, type Target } from './results';

export interface WorkloadInfo {
  title: string;
  /** Which extra fields to show, with their column headings. */
  columns: [key: string, heading: string][];
  /** Column heading for vsLimit (what "the limit" is in this workload). */
  limitHeading?: string;
}

export const WORKLOADS: Record<string, WorkloadInfo> = {
  'download-1x': { title: 'One download, one connection', columns: [['cpuPerGB', 'CPU s/GB']], limitHeading: '× limit' },
  'download-parallel': { title: 'Parallel downloads', columns: [['cpuPerGB', 'CPU s/GB']], limitHeading: '× limit' },
  'keepalive-small': { title: 'Small keep-alive requests (wrk)', columns: [['p50', 'p50 ms'], ['p99', 'p99 ms'], ['errors', 'errors'], ['load1', 'load']], limitHeading: '× limit' },
  'latency-syn': { title: 'Conversion: client SYN → upstream SYN (prototype: 7.8 ms)', columns: [['p50', 'p50 ms'], ['p99', 'p99 ms'], ['n', 'conns'], ['errors', 'errors'], ['rate', 'asked /s'], ['achieved', 'client reached /s'], ['cpuMsPerTunnel', 'CPU ms/tunnel'], ['load1', 'load']] },
  'latency-request': { title: 'Conversion: last request byte → upstream SYN', columns: [['p50', 'p50 ms'], ['p99', 'p99 ms']] },
  'latency-data': { title: 'First byte in → out, client to server (prototype: 15.3 ms)', columns: [['p50', 'p50 ms'], ['p99', 'p99 ms']] },
  'latency-back': { title: 'First byte in → out, server to client', columns: [['p50', 'p50 ms'], ['p99', 'p99 ms']] },
  // Columns: p99 ms at each rate tried (p99@RATE), in the order tried.
  'rate-sweep': { title: 'Highest rate of new connections sustained with SYN → SYN p99 < 10 ms and no errors', columns: [] },
  'idle-10k': { title: 'Concurrent idle tunnels: memory per connection', columns: [['open', 'open'], ['errors', 'errors'], ['rssMB', 'RSS MB'], ['idleMB', 'idle MB'], ['openSeconds', 'open s'], ['load1', 'load']] },
  'two-path': { title: 'Two 50 Mbit/s paths: aggregation through the proxy', columns: [], limitHeading: '× sum' },
  buffer: { title: 'Seed 004 Fig. 4: client receive buffer', columns: [] },
  mtu: { title: 'Seed 004 Fig. 5: MTU 1500 → 1000 (buffer 0.72 MB)', columns: [] },
};

/** A workload's presentation; `latency-syn@2000` is latency-syn's, at 2000/s. */
function info(w: string): WorkloadInfo {
  const [base, rate] = w.split('@');
  const i = WORKLOADS[base!] ?? { title: base!, columns: [] };
  return rate ? { ...i, title: `${i.title}, at ${rate} new connections/s` } : i;
}

function workloadsIn(rows: readonly Row[]): string[] {
  return [...new Set(rows.map((r) => r.workload))];
}

function pad(cells: string[][]): string {
  const widths = cells[0].map((_, i) => Math.max(...cells.map((r) => r[i].length)));
  return cells.map((r) => r.map((c, i) => (i === 0 ? c.padEnd(widths[i]) : c.padStart(widths[i]))).join('  ')).join('\n');
}

function cellsFor(rows: readonly Row[]): { head: string[]; body: string[][] } {
  const w = info(rows[0].workload);
  const extraKeys = w.columns.length ? w.columns : [...new Set(rows.flatMap((r) => Object.keys(r.extra)))].map((k) => [k, k] as [string, string]);
  const head = ['subject', rows[0].unit, w.limitHeading ?? '× limit', '× best peer', ...extraKeys.map(([, h]) => h)];
  const body = rows.map((r) => [r.label, r.value === null ? `– (${(r.note ?? 'not run').slice(0, 50)})` : fmt(r.value), fmt(r.vsLimit), fmt(r.vsBestPeer), ...extraKeys.map(([k]) => fmt(r.extra[k]))]);
  return { head, body };
}

/** Targets by the issue that set them, in order of first appearance; the external scripts' last. */
export function targetGroups(targets: readonly Target[]): [string, Target[]][] {
  const groups = new Map<string, Target[]>();
  for (const t of [...targets.filter((x) => x.group), ...targets.filter((x) => !x.group)]) {
    const g = t.group ?? 'other scripts (bench/*.ts)';
    groups.set(g, [...(groups.get(g) ?? []), t]);
  }
  return [...groups];
}

/** A target's result; a figure with no verdict is one the target does not apply to as measured (e.g. too few tunnels). */
const mark = (t: Target, bold = (x: string): string => x): string => (t.met === null ? (t.value === null ? 'not measured' : 'not judged') : t.met ? bold('met') : bold('not met'));

export function consoleTable(res: BenchResults): string {
  const out: string[] = [];
  for (const w of workloadsIn(res.rows)) {
    const rows = res.rows.filter((r) => r.workload === w);
    const { head, body } = cellsFor(rows);
    out.push(`\n== ${info(w).title} [${w}]`, pad([head, ...body]));
  }
  for (const [w, why] of Object.entries(res.skipped)) out.push(`\n== ${w}: skipped (${why})`);
  for (const [group, targets] of targetGroups(res.targets)) {
    out.push(`\n== Targets: ${group}`);
    out.push(pad([['target', 'measured', 'result', 'detail'], ...targets.map((t) => [t.name, `${fmt(t.value)} ${t.unit}`, mark(t, (x) => (x === 'met' ? x : x.toUpperCase())), t.detail])]));
  }
  return out.join('\n');
}

/** Chart files (name → SVG) for a run. */
export function charts(res: BenchResults): Record<string, string> {
  const out: Record<string, string> = {};
  const ratio = (r: Row): string => (r.vsLimit !== null && r.vsLimit !== undefined && r.kind !== 'limit' ? `(${fmt(r.vsLimit)} × limit)` : '');
  for (const w of ['download-1x', 'download-parallel', 'keepalive-small', 'latency-syn', 'latency-data', 'idle-10k', 'two-path', 'buffer', 'mtu']) {
    const rows = res.rows.filter((r) => r.workload === w);
    if (rows.length) out[`${w}.svg`] = barChart(`${info(w).title} — ${rows[0].unit}${rows[0].higherIsBetter ? ' (higher is better)' : ' (lower is better)'}`, rows, { ratioLabel: rows[0].higherIsBetter ? ratio : undefined });
  }
  const s = res.series;
  if (s['buffer-0.18MB'] || s['buffer-0.72MB'] || s['buffer-auto']) {
    out['fig4-buffer.svg'] = linePanels('Fig. 4 again: MPTCP through mptcp-proxy, client receive buffer max', 'Mbit/s', [
      { title: '(a) 0.18 MB', series: s['buffer-0.18MB'] },
      { title: '(b) 0.72 MB', series: s['buffer-0.72MB'] },
      { title: '(c) auto', series: s['buffer-auto'] },
    ]);
  }
  if (s['mtu-1500'] || s['mtu-1000']) {
    out['fig5-mtu.svg'] = linePanels('Fig. 5 again: MPTCP through mptcp-proxy, MTU 1500 vs 1000 (0.72 MB buffer)', 'Mbit/s', [
      { title: 'MTU 1500', series: s['mtu-1500'] },
      { title: 'MTU 1000', series: s['mtu-1000'] },
    ]);
  }
  if (s['two-path']) out['two-path-series.svg'] = linePanels('One MPTCP download through mptcp-proxy over two 50 Mbit/s paths', 'Mbit/s', [{ title: 'per path and total', series: s['two-path'] }]);
  return out;
}

function mdTable(head: string[], body: string[][]): string {
  const esc = (c: string): string => c.replace(/\|/g, '\\|');
  return [`| ${head.map(esc).join(' | ')} |`, `|${head.map((_, i) => (i === 0 ? ' --- ' : ' ---: ')).join('|')}|`, ...body.map((r) => `| ${r.map(esc).join(' | ')} |`)].join('\n');
}

/** bench/RESULTS.md for a run; `chartDir` is where the SVGs sit relative to the file; notes are hand-written. */
/** "3", or "3–5" when workloads ran different numbers of repeats (read off the rows' runs). */
function bestOfText(res: BenchResults): string {
  const counts = res.rows.map((r) => r.runs.length).filter((n) => n > 0);
  const lo = Math.min(res.bestOf, ...counts);
  const hi = Math.max(res.bestOf, ...counts);
  return lo === hi ? String(hi) : `${lo}–${hi}`;
}

export function markdown(res: BenchResults, chartDir: string, notes: string): string {
  const m = res.machine;
  const out: string[] = [
    '# Benchmark results',
    '',
    `Measured ${m.date} on ${m.nproc} cores (${m.cpu}), ${m.memGiB} GiB, Linux ${m.kernel}, Node ${m.node}; ` +
      `\`npm run bench\` (${res.mode} mode, best of ${bestOfText(res)} per subject, ${Math.round(res.seconds)} s in all). ` +
      'Figures move from run to run on a shared machine: compare ratios within this run, not across runs.',
    '',
    '## Targets',
    '',
    ...targetGroups(res.targets).flatMap(([group, targets]) => [
      `### ${group[0]!.toUpperCase()}${group.slice(1)}`,
      '',
      mdTable(['target', 'measured', 'result', 'detail'], targets.map((t) => [t.name, `${fmt(t.value)} ${t.unit}`, mark(t, (x) => `**${x}**`), t.detail])),
      '',
    ]),
  ];
  if (notes.trim()) out.push('## Notes', '', notes.trim(), '');
  const chartFiles = new Set(Object.keys(charts(res)));
  for (const w of workloadsIn(res.rows)) {
    const rows = res.rows.filter((r) => r.workload === w);
    const { head, body } = cellsFor(rows);
    out.push(`## ${info(w).title}`, '');
    if (chartFiles.has(`${w}.svg`)) out.push(`![${w}](${chartDir}/${w}.svg)`, '');
    out.push(mdTable(head, body), '');
    if (w === 'two-path' && chartFiles.has('two-path-series.svg')) out.push(`![two-path time series](${chartDir}/two-path-series.svg)`, '');
    if (w === 'buffer' && chartFiles.has('fig4-buffer.svg')) out.push(`![Fig. 4 buffer](${chartDir}/fig4-buffer.svg)`, '');
    if (w === 'mtu' && chartFiles.has('fig5-mtu.svg')) out.push(`![Fig. 5 MTU](${chartDir}/fig5-mtu.svg)`, '');
  }
  if (Object.keys(res.skipped).length) {
    out.push('## Skipped', '', ...Object.entries(res.skipped).map(([w, why]) => `- ${w}: ${why}`), '');
  }
  return out.join('\n');
}

/** Hand-written commentary kept beside the published figures (bench/results/NAME); '' when absent. */
export function readNotes(name: string): string {
  try {
    return fs.readFileSync(path.join(REPO_ROOT, 'bench', 'results', name), 'utf8');
  } catch {
    return '';
  }
}
