/**
 * Failover times (issue 6; seed 003 §IV): T-throughput and T-latency when the uplink a client's
 * path-1 subflow is pinned to is cut mid-transfer (nftables drop) and later restored, with the
 * proxy's fast recovery (health probes on: the subflow is moved to the other uplink and back)
 * and without it (probes off: MPTCP alone, the subflow sits in retransmission backoff).
 *
 * Two-uplink testbed of test/e2e/steering-failover.test.ts (testkit/failover.ts), the real
 * CLI, an MPTCP client in the client namespace reached through a unix-socket bridge, so every
 * received byte is timestamped here as the application sees it:
 * - bulk: a long download through the forward proxy; T-throughput-failure = cut → goodput back to
 *   ≥ `fraction` × one path's rate (what the surviving uplink can carry), T-throughput-recovery =
 *   restore → goodput back to ≥ `fraction` × the rate before the cut; goodput as a mean over 500 ms;
 * - echo: a 16-byte request every 10 ms through a CONNECT tunnel to an echo server;
 *   T-latency-failure = cut → the first request sent after the cut answered within the bound.
 * Each is the p50 over `repetitions` cuts; detection and failback times come from the proxy log.
 *
 * Beside the uplink figures, the client-path case (issue 15): the client's path 1 itself is
 * blackholed both ways (nftables drop on its interface in the client namespace) and repaired,
 * with the proxy's `paths.rtoMaxMs: 1000` (repaired paths return within the capped backoff) and
 * without it; no uplinks, no probes: MPTCP moves the data, the cap only shortens the return.
 *
 *   node dist/bench/failover.js [--quick] [--repetitions N] [--outage MS] [--trace] [--no-save]
 *     → one JSON object on stdout, also saved as bench/results/failover.json unless --no-save
 */
import net from 'node:net';
import { performance } from 'node:perf_hooks';
import { parseArgs } from 'node:util';
import { cutClientPath1, cutUplink1, logTime, PINNED_POLICY, restoreClientPath1, restoreUplink1, uplinkChange, writeUplinkConfig } from '../testkit/failover';
import { startLegacyServer, type LegacyServer } from '../testkit/legacy-server';
import { withTestbed, type ProxyHandle, type ProxyLogLine, type Testbed } from '../testkit/testbed';
import { startSteeredProxy, steered, writeConfig } from '../testkit/steered-proxy';
import { rateMbit, timeToLatency, timeToThroughput, worstRtt, type ByteSample, type Exchange } from './lib/handoff';
import { percentile } from './lib/results';
import { finishStandalone } from './lib/standalone';
import { sleep } from '../testkit/sleep';

export interface FailoverOptions {
  /** Short windows and one repetition: seconds, for CI (default false). */
  quick?: boolean;
  repetitions?: number;
  /** How long the uplink stays cut, ms. */
  outageMs?: number;
  /** T-throughput target as a fraction of the reference rate (default 0.8). */
  fraction?: number;
  /** T-latency bound on an exchange's round trip, ms (default 20). */
  latencyBoundMs?: number;
  /** Also return each download's goodput in 100 ms slots from 1 s before the cut (default false). */
  trace?: boolean;
}

interface Timing {
  warmMs: number;
  afterMs: number;
  echoWarmMs: number;
  echoAfterMs: number;
}

const FULL: Timing = { warmMs: 1500, afterMs: 6000, echoWarmMs: 1000, echoAfterMs: 1000 };
const QUICK: Timing = { warmMs: 800, afterMs: 2500, echoWarmMs: 400, echoAfterMs: 800 };
const ECHO_INTERVAL_MS = 10;
const MSG = 16;

interface Figure {
  unit: 'ms';
  p50: number | null;
  p99: number | null;
  /** One value per repetition; null = not reached within the measuring window. */
  runs: (number | null)[];
}

export interface FailoverResult {
  name: 'failover';
  unit: 'ms';
  mode: 'quick' | 'full';
  repetitions: number;
  outageMs: number;
  fraction: number;
  latencyBoundMs: number;
  /** Goodput before the cut, Mbit/s (p50 of the runs), and one path's shaped rate. */
  beforeMbit: number | null;
  pathMbit: number;
  tThroughputFailureFrMs: Figure;
  tThroughputFailureNoFrMs: Figure;
  tThroughputRecoveryFrMs: Figure;
  tThroughputRecoveryNoFrMs: Figure;
  tLatencyFailureFrMs: Figure;
  tLatencyFailureNoFrMs: Figure;
  /** The client's path 1 blackholed and repaired, with paths.rtoMaxMs 1000 (Rto) and without (NoRto). */
  tThroughputFailureClientRtoMs: Figure;
  tThroughputFailureClientNoRtoMs: Figure;
  tThroughputRecoveryClientRtoMs: Figure;
  tThroughputRecoveryClientNoRtoMs: Figure;
  tLatencyFailureClientRtoMs: Figure;
  tLatencyFailureClientNoRtoMs: Figure;
  /** Fast recovery only: cut → the engine's "uplink down", restore → "uplink up" (proxy log). */
  detectMs: Figure;
  failbackMs: Figure;
  /** Worst exchange round trip after the cut (p50 over runs), ms. */
  worstRttFrMs: number | null;
  worstRttNoFrMs: number | null;
  /** With `trace`: Mbit/s per 100 ms slot, from 1 s before the cut to the end, per run. */
  timelines?: { fr: number[][]; nofr: number[][]; clientRto: number[][]; clientNoRto: number[][] };
}

/** The client-path case's cap on retransmission backoff (paths.rtoMaxMs; the kernel's floor). */
const CLIENT_RTO_MAX_MS = 1000;

/** What is cut and restored, and how the proxy is set up for it. */
interface Scenario {
  key: 'fr' | 'nofr' | 'clientRto' | 'clientNoRto';
  /** The uplink set-up with its health probes (fast recovery) on. */
  probes: boolean;
  /** The subflow is pinned to uplink 1: wait for the proxy to have steered it. */
  pinned: boolean;
  config(tb: Testbed): string;
  cut(tb: Testbed): Promise<void>;
  restore(tb: Testbed): Promise<void>;
}

const uplinkCase = (probes: boolean): Scenario => ({
  key: probes ? 'fr' : 'nofr',
  probes,
  pinned: true,
  config: (tb) => writeUplinkConfig(tb, `failover-${probes ? 'fr' : 'nofr'}.yaml`, { probes }),
  cut: cutUplink1,
  restore: restoreUplink1,
});

const clientCase = (rto: boolean): Scenario => ({
  key: rto ? 'clientRto' : 'clientNoRto',
  probes: false,
  pinned: false,
  config: (tb) => writeConfig(tb, `failover-client-${rto ? 'rto' : 'norto'}.yaml`, rto ? { paths: { rtoMaxMs: CLIENT_RTO_MAX_MS } } : {}),
  cut: cutClientPath1,
  restore: restoreClientPath1,
});

const SCENARIOS: readonly Scenario[] = [uplinkCase(true), uplinkCase(false), clientCase(true), clientCase(false)];

function figure(runs: (number | null)[]): Figure {
  // A run that never got there counts as the longest: p50/p99 stay honest (null only if all are).
  const reached = runs.filter((r): r is number => r !== null);
  const missing = runs.length - reached.length;
  const pad = missing > 0 ? Array<number>(missing).fill(Number.POSITIVE_INFINITY) : [];
  const pick = (p: number): number | null => {
    const v = percentile([...reached, ...pad], p);
    return v === null || !Number.isFinite(v) ? null : Math.round(v);
  };
  return { unit: 'ms', p50: pick(50), p99: pick(99), runs: runs.map((r) => (r === null ? null : Math.round(r))) };
}

/** Resolves when the proxy has steered one more pinned subflow than `seen` (at once when nothing is pinned: the join comes within the warm-up). */
async function nextSteered(h: ProxyHandle, sc: Scenario, seen: number, timeoutMs = 10_000): Promise<void> {
  if (!sc.pinned) return;
  const deadline = Date.now() + timeoutMs;
  while (h.logs.filter(steered(PINNED_POLICY)).length <= seen) {
    if (Date.now() > deadline) throw new Error('the pinned subflow was not steered');
    await sleep(20);
  }
}

/** The first log line matching pred stamped at or after `since` (epoch ms), waiting up to timeoutMs. */
async function logAfter(h: ProxyHandle, pred: (l: ProxyLogLine) => boolean, since: number, timeoutMs: number): Promise<number | null> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const l = h.logs.find((x) => pred(x) && logTime(x) >= since);
    if (l) return logTime(l) - since;
    if (Date.now() > deadline) return null;
    await sleep(20);
  }
}

interface Cut {
  cutAt: number;
  restoreAt: number;
  detectMs: number | null;
  failbackMs: number | null;
}

/** Cut the scenario's path for outageMs, restore it; with probes, wait for the engine's failover and failback. */
async function cutAndRestore(tb: Testbed, h: ProxyHandle, sc: Scenario, outageMs: number): Promise<Cut> {
  const probes = sc.probes;
  const epochCut = Date.now();
  await sc.cut(tb);
  const cutAt = performance.now();
  const detect = probes ? logAfter(h, uplinkChange('up1', 'down'), epochCut, outageMs + 3000) : Promise.resolve(null);
  await sleep(outageMs);
  const epochRestore = Date.now();
  await sc.restore(tb);
  const restoreAt = performance.now();
  const detectMs = await detect;
  const failbackMs = probes ? await logAfter(h, uplinkChange('up1', 'up'), epochRestore, 5000) : null;
  return { cutAt, restoreAt, detectMs, failbackMs };
}

interface BulkRun extends Cut {
  beforeMbit: number;
  timeline: number[];
  tFail: number | null;
  tRec: number | null;
}

async function bulk(tb: Testbed, srv: LegacyServer, h: ProxyHandle, sock: string, sc: Scenario, o: Required<FailoverOptions>, tm: Timing): Promise<BulkRun> {
  const series: ByteSample[] = [];
  let total = 0;
  const s = net.connect(sock);
  s.on('data', (d: Buffer) => {
    total += d.length;
    series.push({ t: performance.now(), bytes: total });
  });
  s.on('error', () => undefined);
  try {
    const seen = h.logs.filter(steered(PINNED_POLICY)).length;
    // Far more than the run can carry; the socket is closed when the measuring window ends.
    s.write(`GET ${srv.url('/bytes/4000000000')} HTTP/1.1\r\nHost: ${srv.host}:${srv.httpPort}\r\n\r\n`);
    await nextSteered(h, sc, seen);
    await sleep(tm.warmMs);
    const cut = await cutAndRestore(tb, h, sc, o.outageMs);
    const endAt = cut.restoreAt + tm.afterMs;
    await sleep(Math.max(0, endAt - performance.now()));
    const beforeMbit = rateMbit(series, cut.cutAt - Math.min(1000, tm.warmMs - 200), cut.cutAt);
    return {
      ...cut,
      beforeMbit,
      timeline: Array.from({ length: Math.floor((endAt - cut.cutAt + 1000) / 100) }, (_, i) => Math.round(rateMbit(series, cut.cutAt - 1000 + i * 100, cut.cutAt - 900 + i * 100) * 10) / 10),
      tFail: timeToThroughput(series, cut.cutAt, o.fraction * tb.shapeMbit),
      tRec: timeToThroughput(series, cut.restoreAt, o.fraction * beforeMbit),
    };
  } finally {
    s.destroy();
  }
}

/** Request/response through a CONNECT tunnel to the echo server: 16-byte messages carrying their index. */
async function echo(tb: Testbed, srv: LegacyServer, h: ProxyHandle, sock: string, sc: Scenario, o: Required<FailoverOptions>, tm: Timing): Promise<Cut & { tLat: number | null; worst: number | null }> {
  const s = net.connect(sock);
  s.on('error', () => undefined);
  const exchanges: Exchange[] = [];
  let timer: NodeJS.Timeout | null = null;
  try {
    const seen = h.logs.filter(steered(PINNED_POLICY)).length;
    const target = `${srv.host}:${srv.echoPort}`;
    s.write(`CONNECT ${target} HTTP/1.1\r\nHost: ${target}\r\n\r\n`);
    let buf = Buffer.alloc(0);
    await new Promise<void>((resolve, reject) => {
      const onData = (d: Buffer): void => {
        buf = Buffer.concat([buf, d]);
        const end = buf.indexOf('\r\n\r\n');
        if (end < 0) return;
        s.off('data', onData);
        const head = buf.subarray(0, end).toString('latin1');
        buf = buf.subarray(end + 4);
        if (/^HTTP\/1\.[01] 200/.test(head)) resolve();
        else reject(new Error(`CONNECT refused: ${head.split('\r\n')[0]}`));
      };
      s.on('data', onData);
      s.once('close', () => reject(new Error('tunnel closed before its answer')));
    });
    s.on('data', (d: Buffer) => {
      buf = Buffer.concat([buf, d]);
      const now = performance.now();
      while (buf.length >= MSG) {
        const i = buf.readUInt32BE(0);
        if (exchanges[i]) exchanges[i]!.answered = now;
        buf = buf.subarray(MSG);
      }
    });
    await nextSteered(h, sc, seen);
    timer = setInterval(() => {
      const m = Buffer.alloc(MSG);
      m.writeUInt32BE(exchanges.length, 0);
      exchanges.push({ sent: performance.now(), answered: null });
      s.write(m);
    }, ECHO_INTERVAL_MS);
    await sleep(tm.echoWarmMs);
    const cut = await cutAndRestore(tb, h, sc, o.outageMs);
    await sleep(Math.max(0, cut.restoreAt + tm.echoAfterMs - performance.now()));
    clearInterval(timer);
    timer = null;
    // Replies still on their way.
    await sleep(300);
    return { ...cut, tLat: timeToLatency(exchanges, cut.cutAt, o.latencyBoundMs), worst: worstRtt(exchanges, cut.cutAt) };
  } finally {
    if (timer) clearInterval(timer);
    s.destroy();
  }
}

export async function run(opts: FailoverOptions = {}): Promise<FailoverResult> {
  const quick = opts.quick ?? false;
  const tm = quick ? QUICK : FULL;
  const o: Required<FailoverOptions> = {
    quick,
    repetitions: Math.max(1, opts.repetitions ?? (quick ? 1 : 5)),
    outageMs: opts.outageMs ?? (quick ? 1000 : 3000),
    fraction: opts.fraction ?? 0.8,
    latencyBoundMs: opts.latencyBoundMs ?? 20,
    trace: opts.trace ?? false,
  };
  return withTestbed({}, async (tb) => {
    const srv = await startLegacyServer(tb);
    const sock = await tb.bridge('client', tb.addr.proxy1, 3128, { mptcp: true });
    const mk = (): { fail: (number | null)[]; rec: (number | null)[]; lat: (number | null)[]; worst: number[]; timelines: number[][] } => ({ fail: [], rec: [], lat: [], worst: [], timelines: [] });
    const per = { fr: mk(), nofr: mk(), clientRto: mk(), clientNoRto: mk() };
    const detect: (number | null)[] = [];
    const failback: (number | null)[] = [];
    const before: number[] = [];
    for (const sc of SCENARIOS) {
      const k = per[sc.key];
      const h = await startSteeredProxy(tb, sc.config(tb));
      try {
        for (let i = 0; i < o.repetitions; i++) {
          const b = await bulk(tb, srv, h, sock, sc, o, tm);
          k.fail.push(b.tFail);
          k.rec.push(b.tRec);
          k.timelines.push(b.timeline);
          if (sc.pinned) before.push(b.beforeMbit);
          const e = await echo(tb, srv, h, sock, sc, o, tm);
          k.lat.push(e.tLat);
          if (e.worst !== null) k.worst.push(e.worst);
          // Every cut is a detection sample, the echo's as well as the download's.
          if (sc.probes) {
            detect.push(b.detectMs, e.detectMs);
            failback.push(b.failbackMs, e.failbackMs);
          }
        }
      } finally {
        await h.stop(8000);
      }
    }
    const p50 = (xs: number[]): number | null => {
      const v = percentile(xs, 50);
      return v === null ? null : Math.round(v * 10) / 10;
    };
    return {
      name: 'failover',
      unit: 'ms',
      mode: quick ? 'quick' : 'full',
      repetitions: o.repetitions,
      outageMs: o.outageMs,
      fraction: o.fraction,
      latencyBoundMs: o.latencyBoundMs,
      beforeMbit: p50(before),
      pathMbit: tb.shapeMbit,
      tThroughputFailureFrMs: figure(per.fr.fail),
      tThroughputFailureNoFrMs: figure(per.nofr.fail),
      tThroughputRecoveryFrMs: figure(per.fr.rec),
      tThroughputRecoveryNoFrMs: figure(per.nofr.rec),
      tLatencyFailureFrMs: figure(per.fr.lat),
      tLatencyFailureNoFrMs: figure(per.nofr.lat),
      tThroughputFailureClientRtoMs: figure(per.clientRto.fail),
      tThroughputFailureClientNoRtoMs: figure(per.clientNoRto.fail),
      tThroughputRecoveryClientRtoMs: figure(per.clientRto.rec),
      tThroughputRecoveryClientNoRtoMs: figure(per.clientNoRto.rec),
      tLatencyFailureClientRtoMs: figure(per.clientRto.lat),
      tLatencyFailureClientNoRtoMs: figure(per.clientNoRto.lat),
      detectMs: figure(detect),
      failbackMs: figure(failback),
      worstRttFrMs: p50(per.fr.worst),
      worstRttNoFrMs: p50(per.nofr.worst),
      ...(o.trace ? { timelines: { fr: per.fr.timelines, nofr: per.nofr.timelines, clientRto: per.clientRto.timelines, clientNoRto: per.clientNoRto.timelines } } : {}),
    };
  });
}

function summary(r: FailoverResult): string {
  const f = (x: Figure): string => `p50 ${x.p50 ?? '-'} ms (runs ${x.runs.map((v) => v ?? 'never').join(', ')})`;
  return [
    `failover (${r.mode}, ${r.repetitions} cut(s) of ${r.outageMs} ms each, before the cut ${r.beforeMbit ?? '-'} Mbit/s, path ${r.pathMbit} Mbit/s)`,
    `  T-throughput-failure   fast recovery ${f(r.tThroughputFailureFrMs)} | MPTCP alone ${f(r.tThroughputFailureNoFrMs)}`,
    `  T-throughput-recovery  fast recovery ${f(r.tThroughputRecoveryFrMs)} | MPTCP alone ${f(r.tThroughputRecoveryNoFrMs)}`,
    `  T-latency-failure      fast recovery ${f(r.tLatencyFailureFrMs)} | MPTCP alone ${f(r.tLatencyFailureNoFrMs)}`,
    `  detection ${f(r.detectMs)}, failback ${f(r.failbackMs)}`,
    `client path 1 blackholed and repaired (no uplinks), with paths.rtoMaxMs ${CLIENT_RTO_MAX_MS} | without:`,
    `  T-throughput-failure   ${f(r.tThroughputFailureClientRtoMs)} | ${f(r.tThroughputFailureClientNoRtoMs)}`,
    `  T-throughput-recovery  ${f(r.tThroughputRecoveryClientRtoMs)} | ${f(r.tThroughputRecoveryClientNoRtoMs)}`,
    `  T-latency-failure      ${f(r.tLatencyFailureClientRtoMs)} | ${f(r.tLatencyFailureClientNoRtoMs)}`,
  ].join('\n');
}

if (require.main === module) {
  const { values } = parseArgs({ options: { quick: { type: 'boolean' }, repetitions: { type: 'string' }, outage: { type: 'string' }, trace: { type: 'boolean' }, 'no-save': { type: 'boolean' } } });
  finishStandalone(
    'failover',
    run({
      quick: values.quick ?? false,
      trace: values.trace ?? false,
      ...(values.repetitions ? { repetitions: Number(values.repetitions) } : {}),
      ...(values.outage ? { outageMs: Number(values.outage) } : {}),
    }),
    summary,
    !values['no-save'],
  );
}
