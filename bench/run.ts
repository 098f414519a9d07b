/**
 * `npm run bench`: every figure of issues 6 and 14 side by side, in one run on one machine; issue
 * 14's targets are ratios to HAProxy and Squid measured in the same run.
 *
 *   node dist/bench/run.js [--quick] [--out DIR] [--only w1,w2] [--subjects s1,s2] [--repeats N] [--rate N] [--count N] [--publish]
 *
 * --quick     seconds-long sizes, one run each, no external scripts: for CI (no thresholds enforced)
 * --out       where results-<date>.json and the SVG charts go (default bench/out)
 * --only      workloads: bulk, parallel, keepalive, latency, sweep, idle, twopath, external
 *             (latency = every latency subject at 500/s, the fast path and HAProxy over 10,000
 *             tunnels, then those three again at 2000/s; sweep = the highest rate each of those
 *             three sustains with p99 < 10 ms)
 * --subjects  only these subjects (ids from bench/lib/peers.ts, e.g. ours-connect-splice,dante);
 *             the limit is measured anyway where a workload divides by it
 * --publish   also write bench/RESULTS.md and copy the charts to bench/results/
 * --rate N    new connections per second in the main latency pass (default 500, the target's)
 * --count N   tunnels per latency burst for every subject (default 3000, and 10000 for the
 *             subjects of the CPU-per-tunnel target)
 * --host      run in the host's network namespace. By default everything runs inside a private
 *             namespace (loopback only, its own MPTCP state): the host's MPTCP blackhole
 *             detection, once tripped by SYN losses anywhere on the host, silently turns every
 *             "MPTCP" client into plain TCP. (--netns, the old opt-in, is still accepted.)
 * --render F  no measuring: redraw charts and bench/RESULTS.md from a results JSON file F
 *
 * Needs root (tcpdump, namespaces). Peers missing on the machine are reported, not fatal;
 * `scripts/setup.sh bench` installs them.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { REPO_ROOT } from '../testkit/testbed';
import { inBenchNetns, inPrivateNetns } from './lib/netns';
import { CLASSIC_PEERS, Servers, subject, SUBJECTS, type Subject } from './lib/peers';
import { have } from './lib/proc';
import { charts, consoleTable, markdown, readNotes } from './lib/report';
import { addRatios, CPU_TUNNELS, evaluateTargets, HIGH_RATE, type BenchResults, type Machine, type Row } from './lib/results';
import { CONCURRENCY_SUBJECTS, concurrency } from './workloads/concurrency';
import { external } from './workloads/external';
import { KEEPALIVE_SUBJECTS, keepalive } from './workloads/keepalive';
import { LATENCY_SUBJECTS, latency, rateSweep } from './workloads/latency';
import { bulk } from './workloads/throughput';
import { twoPath } from './workloads/two-path';

const WORKLOAD_NAMES = ['bulk', 'parallel', 'keepalive', 'latency', 'sweep', 'idle', 'twopath', 'external'] as const;
type WorkloadName = (typeof WORKLOAD_NAMES)[number];

interface Plan {
  mode: 'quick' | 'full';
  repeats: number;
  /** The 1 GiB and parallel downloads: cheap runs whose figures are bimodal on loopback MPTCP, so more of them. */
  bulkRepeats: number;
  bigBytes: number;
  mediumBytes: number;
  parallel: number;
  requests: number;
  /** The main latency pass: every latency subject at this rate, this many tunnels, best of this many runs. */
  latencyCount: number;
  latencyRate: number;
  latencyRepeats: number;
  /** Tunnels for the subjects issue 14 compares (CPU per tunnel over 10,000), in the main pass and at HIGH_RATE. */
  latencyCountIssue14: number;
  /** The rate sweep: rates tried in turn, seconds of tunnels at each. */
  sweepRates: number[];
  sweepSeconds: number;
  idleCount: number;
  twoPathBytes: number;
  /** Quick mode: fewer subjects where each costs seconds (latency captures, tunnel batches). */
  latencySubjects?: string[];
  /** Quick mode: of the subjects issue 14 compares, those of the second rate and the sweep. */
  issue14Subjects?: string[];
  idleSubjects?: string[];
}

/** The subjects issue 14's latency targets compare: the fast path (the default configuration) and HAProxy. */
const ISSUE14_SUBJECTS = ['ours-connect-fast', 'ours-socks-fast', 'haproxy'];

// Latency: one run per subject (percentiles over thousands of tunnels are steady from run to run,
// and three runs of 10,000 would cost ten minutes), 3,000 tunnels each at 500/s, 10,000 for the
// three subjects issue 14 compares.
const FULL: Plan = { mode: 'full', repeats: 3, bulkRepeats: 5, bigBytes: 2 ** 30, mediumBytes: 10 * 2 ** 20, parallel: 100, requests: 100_000, latencyCount: 3000, latencyRate: 500, latencyRepeats: 1, latencyCountIssue14: CPU_TUNNELS, sweepRates: [500, 1000, 1500, 2000, 3000, 4000, 6000, 8000], sweepSeconds: 3, idleCount: 10_000, twoPathBytes: 100e6 };
const QUICK: Plan = { mode: 'quick', repeats: 1, bulkRepeats: 1, bigBytes: 32 * 2 ** 20, mediumBytes: 2 ** 20, parallel: 10, requests: 1000, latencyCount: 100, latencyRate: 500, latencyRepeats: 1, latencyCountIssue14: 100, sweepRates: [2000], sweepSeconds: 0.3, idleCount: 200, twoPathBytes: 1.5e6, latencySubjects: ['ours-connect-fast', 'ours-connect-stream', 'ours-socks-stream', 'haproxy'], issue14Subjects: ['ours-connect-fast', 'haproxy'], idleSubjects: ['ours-connect-stream'] };

function machine(): Machine {
  return {
    date: new Date().toISOString(),
    hostname: os.hostname(),
    nproc: os.cpus().length,
    cpu: os.cpus()[0]?.model.trim() ?? 'unknown',
    memGiB: Math.round(os.totalmem() / 2 ** 30),
    kernel: os.release(),
    node: process.version,
  };
}

async function main(): Promise<number> {
  const { values } = parseArgs({
    options: { quick: { type: 'boolean' }, out: { type: 'string' }, only: { type: 'string' }, repeats: { type: 'string' }, subjects: { type: 'string' }, netns: { type: 'boolean' }, host: { type: 'boolean' }, rate: { type: 'string' }, count: { type: 'string' }, publish: { type: 'boolean' }, render: { type: 'string' } },
  });
  if (values.render) {
    const res = JSON.parse(fs.readFileSync(values.render, 'utf8')) as BenchResults;
    // Targets are recomputed (their rules may have changed); external scripts' targets are kept.
    res.targets = [...evaluateTargets(res.rows, CLASSIC_PEERS), ...res.targets.filter((t) => t.name.includes('(bench/'))];
    publish(res);
    return 0;
  }
  if (!values.host && !inBenchNetns()) return inPrivateNetns();
  const plan = { ...(values.quick ? QUICK : FULL) };
  if (values.repeats) plan.repeats = plan.bulkRepeats = plan.latencyRepeats = Math.max(1, Number(values.repeats));
  if (values.rate) plan.latencyRate = Math.max(1, Number(values.rate));
  if (values.count) plan.latencyCount = plan.latencyCountIssue14 = Math.max(1, Number(values.count));
  // Quick mode leaves out other engineers' scripts (each builds its own testbed; they have their
  // own tests) unless asked for with --only.
  const only = new Set((values.only?.split(',') ?? WORKLOAD_NAMES.filter((w) => !(values.quick && w === 'external'))) as WorkloadName[]);
  for (const w of only) if (!WORKLOAD_NAMES.includes(w)) throw new Error(`unknown workload ${w} (expected ${WORKLOAD_NAMES.join(', ')})`);
  // Subjects asked for, in the suite's order; each workload keeps those it measures at all.
  const picked = values.subjects ? new Set(values.subjects.split(',').map((id) => subject(id).id)) : null;
  const pick = (all: readonly Subject[], quickIds?: string[]): readonly Subject[] => (picked ? all.filter((s) => picked.has(s.id) || s.kind === 'limit') : (quickIds?.map(subject) ?? all));
  const outDir = path.resolve(values.out ?? path.join(REPO_ROOT, 'bench', 'out'));
  fs.mkdirSync(outDir, { recursive: true });
  if (process.getuid?.() !== 0) process.stderr.write('bench: not root: tcpdump and the namespace testbed will fail\n');
  if (!have('mptcpize')) throw new Error('mptcpize not found (apt-get install mptcpize, or npm run bench which runs scripts/setup.sh bench)');

  const started = Date.now();
  const log = (s: string): void => void process.stderr.write(`${s}\n`);
  const res: BenchResults = { mode: plan.mode, machine: machine(), seconds: 0, bestOf: plan.repeats, rows: [], targets: [], charts: [], series: {}, skipped: {} };
  // tmpfs: the origin's documents cost no disk reads.
  const tmp = fs.mkdtempSync(path.join(fs.existsSync('/dev/shm') ? '/dev/shm' : os.tmpdir(), 'mpx-bench-'));
  // Also on Ctrl-C / SIGTERM (bench/lib/proc exits from its signal handler, past the finally below).
  process.once('exit', () => fs.rmSync(tmp, { recursive: true, force: true }));
  const servers = new Servers(tmp, { big: plan.bigBytes, medium: plan.mediumBytes });
  const step = async (name: WorkloadName, fn: () => Promise<Row[]>): Promise<void> => {
    if (!only.has(name)) return;
    log(`bench: ${name}`);
    try {
      res.rows.push(...(await fn()));
    } catch (e) {
      res.skipped[name] = (e as Error).message.split('\n')[0].slice(0, 300);
      log(`  ${name} failed: ${res.skipped[name]}`);
    }
  };
  try {
    await step('bulk', () => bulk(servers, { workload: 'download-1x', file: 'big', parallel: 1, repeats: plan.bulkRepeats, subjects: pick(SUBJECTS) }, log));
    await step('parallel', () =>
      bulk(servers, { workload: 'download-parallel', file: 'medium', parallel: plan.parallel, repeats: plan.bulkRepeats, subjects: pick(SUBJECTS.filter((s) => s.id !== 'ours-forward' && s.id !== 'squid-forward')) }, log),
    );
    await step('keepalive', () => keepalive(servers, { requests: plan.requests, connections: 10, repeats: plan.repeats, dir: tmp, subjects: pick(KEEPALIVE_SUBJECTS) }, log));
    const issue14 = pick(LATENCY_SUBJECTS.filter((s) => ISSUE14_SUBJECTS.includes(s.id)), plan.issue14Subjects);
    await step('latency', async () => [
      ...(await latency(servers, { count: plan.latencyCount, countFor: Object.fromEntries(ISSUE14_SUBJECTS.map((id) => [id, plan.latencyCountIssue14])), rate: plan.latencyRate, repeats: plan.latencyRepeats, dir: tmp, subjects: pick(LATENCY_SUBJECTS, plan.latencySubjects) }, log)),
      ...(await latency(servers, { count: plan.latencyCountIssue14, rate: HIGH_RATE, repeats: plan.latencyRepeats, dir: tmp, subjects: issue14, suffix: `@${HIGH_RATE}` }, log)),
    ]);
    await step('sweep', () => rateSweep(servers, { rates: plan.sweepRates, seconds: plan.sweepSeconds, dir: tmp, subjects: issue14 }, log));
    // Memory is steady from run to run: one run each keeps the suite inside its time budget.
    await step('idle', () => concurrency(servers, { count: plan.idleCount, repeats: 1, subjects: pick(CONCURRENCY_SUBJECTS, plan.idleSubjects) }, log));
    await servers.stopAll();
    await step('twopath', async () => {
      const r = await twoPath({ bytes: plan.twoPathBytes, repeats: plan.repeats }, log);
      Object.assign(res.series, r.series);
      return r.rows;
    });
    await step('external', async () => {
      const r = await external(plan.mode, log);
      res.targets.push(...r.targets);
      Object.assign(res.skipped, Object.fromEntries(Object.entries(r.skipped).map(([k, v]) => [`external ${k}`, v])));
      return r.rows;
    });
  } finally {
    await servers.stopAll();
    fs.rmSync(tmp, { recursive: true, force: true });
  }

  addRatios(res.rows);
  res.targets.unshift(...evaluateTargets(res.rows, CLASSIC_PEERS));
  res.seconds = (Date.now() - started) / 1000;
  const svgs = charts(res);
  res.charts = Object.keys(svgs);
  const stamp = res.machine.date.replace(/[:.]/g, '-');
  const jsonFile = path.join(outDir, `results-${stamp}.json`);
  fs.writeFileSync(jsonFile, JSON.stringify(res, null, 2) + '\n');
  for (const [name, svg] of Object.entries(svgs)) fs.writeFileSync(path.join(outDir, name), svg);
  fs.writeFileSync(path.join(outDir, 'RESULTS.md'), markdown(res, '.', readNotes('notes.md')));
  if (values.publish) publish(res);
  process.stdout.write(consoleTable(res) + '\n');
  process.stdout.write(`\nbench: ${res.mode} run took ${res.seconds.toFixed(0)} s; ${jsonFile}, charts in ${outDir}\n`);
  return 0;
}

/** Charts and the run's JSON to bench/results/, and bench/RESULTS.md around them. */
function publish(res: BenchResults): void {
  const pub = path.join(REPO_ROOT, 'bench', 'results');
  fs.mkdirSync(pub, { recursive: true });
  for (const [name, svg] of Object.entries(charts(res))) fs.writeFileSync(path.join(pub, name), svg);
  fs.writeFileSync(path.join(pub, 'results.json'), JSON.stringify(res, null, 2) + '\n');
  fs.writeFileSync(path.join(REPO_ROOT, 'bench', 'RESULTS.md'), markdown(res, 'results', readNotes('notes.md')));
}

main().then(
  (code) => process.exit(code),
  (e: unknown) => {
    process.stderr.write(`bench: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}\n`);
    process.exit(1);
  },
);
