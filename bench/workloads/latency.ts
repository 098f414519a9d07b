/**
 * Conversion latency from packet timestamps: tcpdump on lo (nanosecond stamps) while a client
 * opens new tunnels at a fixed rate through a subject to an echo server. Four figures per
 * subject: client SYN → upstream SYN, last request byte → upstream SYN, first byte in → out
 * (client to server) and back (server to client); and the subject's CPU per tunnel over the
 * captured burst (user + system of its process tree), also per thread kind (`cpuMs:main`,
 * `cpuMs:mpx-fastpath`, ... from /proc/PID/task). SYN → SYN is also split at the client's first
 * data segment: the client's own part (handshake, think time; HAProxy in TCP mode does not wait
 * for it) and the proxy's, with the split of the slowest 1 %. The prototype's 7.8 ms / 15.3 ms sit beside.
 * Each row also says how well the client kept to the rate (`achieved`, `lagP99`). A pass at
 * another rate gets its own workload names (`latency-syn@2000`, ...); rateSweep finds the highest
 * rate a subject sustains with SYN → SYN p99 < 10 ms.
 * The RFC 8803 Convert subject's client (bench/tools/convert-client.py --burst) puts its message
 * and ID line in the MPTCP SYN with TCP Fast Open, so its request time is its SYN's.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { REPO_ROOT } from '../../testkit/testbed';
import { conversionLatency, p50p99, readPcap, tailSplit } from '../lib/capture';
import { measure, rowFrom, type Measured } from '../lib/measure';
import { inBenchNetns } from '../lib/netns';
import { CONVERT_DEST_ADDR, CONVERT_SUBJECT, SUBJECTS, type Servers, type Subject } from '../lib/peers';
import { Daemon, have, run, threadCpuSeconds, treeCpuSeconds, withNofile } from '../lib/proc';
import { CLIENT_SHORTFALL, type Row } from '../lib/results';
import { sleep } from '../../testkit/sleep';

export const PROTOTYPE_MS = { syn: 7.8, data: 15.3 };
export const LATENCY_SUBJECTS = [...SUBJECTS.filter((s) => s.kind !== 'limit' && s.mode !== 'forward'), CONVERT_SUBJECT];

const TOOL = path.join(REPO_ROOT, 'dist/bench/tools/latency-client.js');
const CONVERT_CLIENT = path.join(REPO_ROOT, 'bench/tools/convert-client.py');

/** A helper daemon that prints one number (its port) as its first line. */
export async function startEcho(host = '127.0.0.1'): Promise<{ daemon: Daemon; port: number }> {
  const daemon = new Daemon('echo', withNofile(['mptcpize', 'run', process.execPath, TOOL, 'echo', host]));
  const deadline = Date.now() + 10_000;
  for (;;) {
    const m = /^(\d+)$/m.exec(daemon.output());
    if (m) return { daemon, port: Number(m[1]) };
    if (daemon.exited || Date.now() > deadline) throw new Error(`echo server did not start: ${daemon.output()}`);
    await sleep(20);
  }
}

async function capture<T>(dir: string, ports: number[], fn: () => Promise<T>): Promise<{ result: T; pcap: Buffer; dropped: number }> {
  const file = path.join(dir, `lat-${ports.join('-')}.pcap`);
  const filter = `tcp and (${ports.map((p) => `port ${p}`).join(' or ')})`;
  const dump = new Daemon('tcpdump', ['tcpdump', '-i', 'lo', '-n', '-s', '256', '-B', '65536', '--time-stamp-precision=nano', '--immediate-mode', '-U', '-w', file, filter]);
  const deadline = Date.now() + 10_000;
  while (!dump.output().includes('listening on')) {
    if (dump.exited || Date.now() > deadline) throw new Error(`tcpdump did not start: ${dump.output()}`);
    await sleep(20);
  }
  try {
    const result = await fn();
    await sleep(200);
    return { result, pcap: await stopDump(dump, file), dropped: Number(/(\d+) packets? dropped by kernel/.exec(dump.output())?.[1] ?? 0) };
  } finally {
    await dump.stop();
    if (!process.env.BENCH_KEEP_PCAP) fs.rmSync(file, { force: true });
  }
}

async function stopDump(dump: Daemon, file: string): Promise<Buffer> {
  const exited = new Promise<void>((r) => (dump.exited ? r() : dump.proc.once('exit', () => r())));
  dump.proc.kill('SIGINT');
  await exited;
  return fs.readFileSync(file);
}

export interface LatencyOptions {
  rate: number;
  count: number;
  /** Tunnels per burst by subject id, over `count`: the 10,000 of the CPU-per-tunnel target for the subjects it compares. */
  countFor?: Readonly<Record<string, number>>;
  repeats: number;
  dir: string;
  subjects?: readonly Subject[];
  /** Appended to the workload names: '@2000' for a pass at another rate than the main one. */
  suffix?: string;
}

export async function latency(servers: Servers, o: LatencyOptions, log: (s: string) => void): Promise<Row[]> {
  const suffix = o.suffix ?? '';
  return withEcho(servers, async (echoPort) => {
    const rows: Row[] = [];
    for (const s of o.subjects ?? LATENCY_SUBJECTS) {
      const count = o.countFor?.[s.id] ?? o.count;
      const spec = {
        workload: `latency-syn${suffix}`,
        unit: 'ms p50',
        higherIsBetter: false,
        repeats: o.repeats,
        describe: (b: Measured) =>
          `SYN→SYN p50 ${b.value.toFixed(3)} / p99 ${b.extra.p99?.toFixed(3)} ms, byte in→out p50 ${b.extra.dataP50?.toFixed(3)} / p99 ${b.extra.dataP99?.toFixed(3)} ms, client part p50 ${b.extra.clientP50?.toFixed(3)} / p99 ${b.extra.clientP99?.toFixed(3)}, proxy part p50 ${b.extra.proxyP50?.toFixed(3)} / p99 ${b.extra.proxyP99?.toFixed(3)}, slowest 1 % client ${b.extra.tailClient?.toFixed(3)} / proxy ${b.extra.tailProxy?.toFixed(3)} ms, CPU ${b.extra.cpuMsPerTunnel?.toFixed(3)} ms/tunnel [${threadsText(b.extra)}] (${b.extra.n} conns at ${b.extra.achieved?.toFixed(0)} of ${b.extra.rate}/s asked, ${b.extra.errors} errors, load ${b.extra.load1?.toFixed(1)})`,
      };
      const row = await measure(spec, s, async () => once(servers, s, await echoPort(s), { count, rate: o.rate, dir: o.dir, warm: Math.min(count, WARM_TUNNELS) }), log);
      rows.push(...splitLatencyRow(row, suffix));
    }
    return rows;
  });
}

/** A subject's SYN → SYN p99 must stay under this for its rate to count as sustained. */
export const SWEEP_P99_MS = 10;

/**
 * The highest sustained rate: each subject gets `seconds` of new tunnels at each rate in turn and
 * stops at the first rate with errors or a SYN → SYN p99 ≥ 10 ms in both of two tries; its figure
 * is the highest rate before that. Where the client could not offer a rate (achieved < 90 % of it), the sweep stops
 * there too and the figure is a lower bound (`clientLimitAt`); where the client's own part of
 * SYN → SYN alone has p99 past 10 ms, the stop is marked the client's too (`clientBoundAt`). The
 * row's note says why the sweep stopped.
 */
export async function rateSweep(servers: Servers, o: { rates: readonly number[]; seconds: number; dir: string; subjects: readonly Subject[] }, log: (s: string) => void): Promise<Row[]> {
  return withEcho(servers, async (echoPort) => {
    const rows: Row[] = [];
    for (const s of o.subjects) {
      const extra: Record<string, number | null> = {};
      let sustained = 0;
      let stop = `sustained every rate swept (up to ${o.rates[o.rates.length - 1]}/s)`;
      for (const [i, rate] of o.rates.entries()) {
        const count = Math.max(2, Math.round(rate * o.seconds));
        let m: Measured | undefined;
        try {
          // A rate that fails is tried once more and judged by the better try: on a shared
          // machine one burst of a few seconds can meet another job's spike.
          for (let attempt = 0; attempt < SWEEP_TRIES && !(m && passes(m)); attempt++) {
            const next = await once(servers, s, await echoPort(s), { count, rate, dir: o.dir, warm: i === 0 && attempt === 0 ? Math.min(count, WARM_TUNNELS) : 0 });
            if (!m || better(next, m)) m = next;
          }
        } catch (e) {
          stop = `failed at ${rate}/s: ${(e as Error).message.split('\n')[0].slice(0, 200)}`;
          break;
        }
        const { p99, errors, achieved } = m!.extra;
        extra[`p99@${rate}`] = p99;
        if (errors) {
          stop = `${errors} errors at ${rate}/s (p99 ${p99?.toFixed(2)} ms)`;
          break;
        }
        if (p99 === null || p99 >= SWEEP_P99_MS) {
          const { clientP99, proxyP99 } = m!.extra;
          stop = `p99 ${p99?.toFixed(2)} ms at ${rate}/s (split at the client's first data: client part p99 ${clientP99?.toFixed(2)}, proxy part p99 ${proxyP99?.toFixed(2)} ms; client reached ${achieved?.toFixed(0)}/s)`;
          // The client's own part counts in a CONNECT or SOCKS5 SYN → SYN (not in HAProxy's, which
          // connects on accept), and it shares the cores with the subject: past the threshold on
          // its own, the bound is the client's as much as the subject's.
          if ((clientP99 ?? 0) >= SWEEP_P99_MS) {
            extra.clientBoundAt = rate;
            stop +=
              s.mode === 'direct'
                ? `; the client's own turnaround is past ${SWEEP_P99_MS} ms too (not part of this subject's figure): client and subject share the cores, and both were saturated`
                : `; the client's own part alone is past ${SWEEP_P99_MS} ms: a bound of the client (one Node thread on the same cores) as much as of the subject`;
          }
          break;
        }
        if (achieved !== null && achieved < CLIENT_SHORTFALL * rate) {
          Object.assign(extra, { clientLimitAt: rate, clientReached: achieved });
          stop = `the latency client reached only ${achieved.toFixed(0)} of ${rate}/s asked (p99 ${p99.toFixed(2)} ms there): a lower bound set by the client`;
          break;
        }
        sustained = rate;
      }
      extra.load1 = os.loadavg()[0]!;
      const spec = { workload: 'rate-sweep', unit: 'conns/s', higherIsBetter: true, repeats: 1, describe: (b: Measured) => `${b.value}/s sustained with p99 < ${SWEEP_P99_MS} ms; ${stop}` };
      rows.push({ ...rowFrom(spec, s, [{ value: sustained, extra }], undefined, log), note: stop });
    }
    return rows;
  });
}

/** Tries of a rate before the sweep stops there. */
const SWEEP_TRIES = 2;
const passes = (m: Measured): boolean => !m.extra.errors && m.extra.p99 !== null && m.extra.p99 !== undefined && m.extra.p99 < SWEEP_P99_MS;
/** Fewer errors first, then the lower p99. */
const better = (a: Measured, b: Measured): boolean => ((a.extra.errors ?? 0) !== (b.extra.errors ?? 0) ? (a.extra.errors ?? 0) < (b.extra.errors ?? 0) : (a.extra.p99 ?? Infinity) < (b.extra.p99 ?? Infinity));

/**
 * Runs `fn` with an echo server up (and the Convert subject's, started on first use: its own
 * address); `echoPort(s)` is the port a subject's tunnels go to. Everything stops afterwards.
 */
async function withEcho(servers: Servers, fn: (echoPort: (s: Subject) => Promise<number>) => Promise<Row[]>): Promise<Row[]> {
  if (!have('tcpdump')) throw new Error('tcpdump not installed');
  const echo = await startEcho();
  let convertEcho: Promise<{ daemon: Daemon; port: number }> | undefined;
  try {
    return await fn(async (s) => (s.mode === 'convert' ? (await (convertEcho ??= startConvertEcho())).port : echo.port));
  } finally {
    await echo.daemon.stop();
    await (await convertEcho?.catch(() => null))?.daemon.stop();
    await servers.stopExtra();
  }
}

/**
 * The Convert subject's namespace set-up, only in the bench's own namespace (the host's stays
 * untouched: run without --host): TCP Fast Open server side (0x2) for the proxy's listener and
 * client side (0x1; the client waives the cookie per socket), and CONVERT_DEST_ADDR on lo for its
 * echo server.
 */
async function startConvertEcho(): Promise<{ daemon: Daemon; port: number }> {
  if (!inBenchNetns()) throw new Error('ours-convert sets net.ipv4.tcp_fastopen and adds an address to lo: it runs only in the bench namespace (not with --host)');
  if (!have('python3')) throw new Error('python3 not installed');
  for (const argv of [['sysctl', '-qw', 'net.ipv4.tcp_fastopen=3'], ['ip', 'addr', 'replace', `${CONVERT_DEST_ADDR}/32`, 'dev', 'lo']]) {
    const r = await run(argv, { timeoutMs: 10_000 });
    if (r.code !== 0) throw new Error(`${argv.join(' ')}: ${r.stderr.trim()}`);
  }
  return startEcho(CONVERT_DEST_ADDR);
}

/**
 * Unmeasured tunnels before a capture, so a JIT-compiled subject is measured warm. Our TS path's
 * CPU per tunnel settles after ~3,000 tunnels (2026-11-23, per 1,000: 2.0, 1.6, 1.3, 1.05, 1.05 ...
 * ms; V8 was still optimising ~120 functions during a capture after a 1,000-tunnel warm-up); a cold
 * subject queues its first seconds of connections and never catches up. More than that buys nothing.
 */
const WARM_TUNNELS = 3000;

async function once(servers: Servers, s: Subject, echoPort: number, o: { count: number; rate: number; dir: string; warm: number }): Promise<Measured> {
  // HAProxy relays to one fixed backend: its own instance aimed at the echo server.
  const srv = s.id === 'haproxy' ? await servers.haproxyTo(echoPort) : await servers.get(s.server);
  const port = s.id === 'haproxy' ? srv.ports.tcp! : await servers.port(s);
  const burst = (count: number): ReturnType<typeof run> =>
    run(
      s.mode === 'convert'
        ? ['python3', CONVERT_CLIENT, `127.0.0.1:${port}`, `${CONVERT_DEST_ADDR}:${echoPort}`, '--burst', String(count), '--rate', String(o.rate)]
        : ['mptcpize', 'run', process.execPath, TOOL, 'burst', s.mode, String(port), String(echoPort), String(count), String(o.rate)],
      { timeoutMs: 120_000 },
    );
  if (o.warm > 0) await burst(o.warm);
  let cpu = 0;
  const threads: Record<string, number> = {};
  const { result, pcap, dropped } = await capture(o.dir, [port, echoPort], async () => {
    const cpu0 = treeCpuSeconds(srv.daemon.pid);
    const threads0 = threadCpuSeconds(srv.daemon.pid);
    const r = await burst(o.count);
    // The last tunnels' closes are the subject's work too: wait for them before reading.
    await sleep(500);
    cpu = treeCpuSeconds(srv.daemon.pid) - cpu0;
    for (const [kind, s] of threadCpuSeconds(srv.daemon.pid)) threads[`${THREAD_KEY}${kind}`] = ((s - (threads0.get(kind) ?? 0)) * 1000) / o.count;
    return r;
  });
  const tally = /^\{.*\}$/m.exec(result.stdout);
  if (result.code !== 0 || !tally) throw new Error(`latency client exit ${result.code}: ${result.stderr.trim().slice(-300)}`);
  const t = JSON.parse(tally[0]) as { ok: number; errors: number; firstError: string | null; spanMs?: number; lagP99Ms?: number };
  const read = readPcap(pcap);
  const lat = conversionLatency(read.segments, port, echoPort);
  if (lat.syn.length === 0) throw new Error(`no linked connections in the capture (${read.segments.length} segments, ${t.errors} client errors: ${t.firstError ?? read.error ?? ''})`);
  const syn = p50p99(lat.syn);
  const req = p50p99(lat.request);
  const data = p50p99(lat.data);
  const back = p50p99(lat.back);
  const clientPart = p50p99(lat.split.map((x) => x.client));
  const proxyPart = p50p99(lat.split.map((x) => x.proxy));
  const tail = tailSplit(lat.split);
  return {
    value: syn.p50!,
    extra: { p50: syn.p50, p99: syn.p99, reqP50: req.p50, reqP99: req.p99, dataP50: data.p50, dataP99: data.p99, backP50: back.p50, backP99: back.p99, clientP50: clientPart.p50, clientP99: clientPart.p99, proxyP50: proxyPart.p50, proxyP99: proxyPart.p99, tailClient: tail?.client ?? null, tailProxy: tail?.proxy ?? null, n: lat.syn.length, errors: t.errors, unmatched: lat.unmatched, dropped, rate: o.rate, count: o.count, achieved: t.spanMs && o.count > 1 ? ((o.count - 1) * 1000) / t.spanMs : null, lagP99: t.lagP99Ms ?? null, cpuMsPerTunnel: (cpu * 1000) / o.count, ...threads },
  };
}

/** The SYN → SYN split (client part, proxy part, slowest 1 %) kept on the latency-syn row. */
const SPLIT_KEYS = ['clientP50', 'clientP99', 'proxyP50', 'proxyP99', 'tailClient', 'tailProxy'] as const;
/** The rate asked, the tunnels of the burst, and how well the client kept to the rate (achieved /s, p99 start lag ms). */
const RATE_KEYS = ['rate', 'count', 'achieved', 'lagP99'] as const;
const pick = (extra: Record<string, number | null | undefined>, keys: readonly string[]): Record<string, number | null> => Object.fromEntries(keys.map((k) => [k, extra[k] ?? null]));

/** Keys of the per-thread CPU per tunnel (ms) in a latency row's extra: `cpuMs:main`, `cpuMs:mpx-splice`, ... */
const THREAD_KEY = 'cpuMs:';
const threadFigures = (extra: Record<string, number | null | undefined>): Record<string, number | null> =>
  Object.fromEntries(Object.entries(extra).filter(([k]) => k.startsWith(THREAD_KEY)).map(([k, v]) => [k, v ?? null]));
const threadsText = (extra: Record<string, number | null | undefined>): string =>
  Object.entries(threadFigures(extra))
    .map(([k, v]) => `${k.slice(THREAD_KEY.length)} ${v?.toFixed(3)}`)
    .join(', ');

/** One row per latency figure, so each gets its own ratios in the table; `suffix` marks a pass at another rate. */
function splitLatencyRow(r: Row, suffix: string): Row[] {
  const e = r.extra;
  const derived = (workload: string, p50: number | null | undefined, p99: number | null | undefined): Row => ({
    ...r,
    workload: `${workload}${suffix}`,
    value: p50 ?? null,
    runs: [],
    extra: { p50: p50 ?? null, p99: p99 ?? null, n: e.n ?? null, errors: e.errors ?? null, rate: e.rate ?? null },
  });
  return [
    { ...r, extra: { p50: e.p50 ?? null, p99: e.p99 ?? null, n: e.n ?? null, errors: e.errors ?? null, unmatched: e.unmatched ?? null, dropped: e.dropped ?? null, ...pick(e, RATE_KEYS), cpuMsPerTunnel: e.cpuMsPerTunnel ?? null, load1: e.load1 ?? null, ...threadFigures(e), ...pick(e, SPLIT_KEYS) } },
    derived('latency-request', e.reqP50, e.reqP99),
    derived('latency-data', e.dataP50, e.dataP99),
    derived('latency-back', e.backP50, e.backP99),
  ];
}
