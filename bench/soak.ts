/**
 * `npm run bench:soak`: the proxy under a long steady load (issue 12 item 5), not part of
 * `npm run bench` and not run in CI.
 *
 *   node dist/bench/soak.js [--minutes 60] [--tunnels 10000] [--rate 75] [--bytes 16384]
 *                           [--reload-every S] [--sample-every S] [--workers N] [--relay splice|stream]
 *                           [--out DIR] [--publish] [--render FILE]
 *
 * One mptcp-proxy (splice relay unless --relay stream, metrics on) in a private namespace holds --tunnels long-lived
 * tunnels to an echo server (half CONNECT, half SOCKS5; each echoes a line once a minute, so
 * the idle timeout never closes them), while a second client opens --rate short tunnels a
 * second (CONNECT and SOCKS5 in turn, --bytes each way, then close). Every --reload-every
 * seconds (300, or a quarter of a shorter run) the config file changes and the proxy gets SIGHUP.
 * Every --sample-every seconds (60, or 1/24 of a shorter run, so each window holds samples) the
 * proxy's descriptors, RSS and listening sockets are read from /proc, and heap, active handles,
 * timers, open connections and error counters from its /metrics.
 *
 * Verdict: the last quarter of the run against the first quarter after warm-up (1/12 of the
 * run), within the tolerances in bench/lib/soak.ts; and zero client failures, zero error-metric
 * deltas, zero warn/error lines in the proxy's log, one reload logged per serving process per
 * SIGHUP, the same listening sockets and proxy processes throughout. Exit status 0 = pass,
 * 3 = the verdict failed (results written all the same), 1 = the soak could not run.
 *
 * --publish writes bench/results/soak.json, soak.svg and soak.md (the results section);
 * --render FILE draws the chart and the section again from a soak's JSON, measuring nothing.
 * The section takes hand-written notes from bench/results/soak-notes.md (edits to soak.md are overwritten).
 *
 * The open-file hard limit (20,000 here, not raisable without CAP_SYS_RESOURCE) caps one
 * process at ~9,900 tunnels (two descriptors each): without --workers, as many workers as the
 * tunnels need are started (2 for 10,000).
 */
import fs from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import readline from 'node:readline';
import { parseArgs } from 'node:util';
import { REPO_ROOT } from '../testkit/testbed';
import { inBenchNetns, inPrivateNetns } from './lib/netns';
import { BENCH_PROXY_CONFIG, proxyCommand } from './lib/peers';
import { Daemon, NOFILE, freePort, have, processTree, waitPort, withNofile } from './lib/proc';
import { readNotes } from './lib/report';
import { fmt } from './lib/results';
import { promSum, soakChart, soakMarkdown, verdict, windowsFor, TOLERANCES, type Settings, type SoakCounts, type SoakResults, type SoakSample } from './lib/soak';
import { startEcho } from './workloads/latency';
import { sleep } from '../testkit/sleep';

const TOOL = path.join(REPO_ROOT, 'dist/bench/tools/latency-client.js');
/** Each held tunnel echoes a line once per this many seconds (well inside the 300 s idle timeout). */
const KEEP_PERIOD_S = 60;

/** A client or server whose stdout carries one JSON object a line; keeps the last (and first) of them. */
class JsonLines {
  first: Record<string, unknown> | null = null;
  last: Record<string, unknown> | null = null;
  constructor(readonly daemon: Daemon) {
    readline.createInterface({ input: daemon.proc.stdout! }).on('line', (l) => {
      if (!l.startsWith('{')) return;
      try {
        this.last = JSON.parse(l) as Record<string, unknown>;
        this.first ??= this.last;
      } catch {
        /* a partial line from a dying process: the next status supersedes it */
      }
    });
  }

  async waitFirst(timeoutMs: number): Promise<Record<string, unknown>> {
    const deadline = Date.now() + timeoutMs;
    while (!this.first) {
      if (this.daemon.exited || Date.now() > deadline) throw new Error(`${this.daemon.name} gave no result: ${this.daemon.output().slice(-500)}`);
      await sleep(100);
    }
    return this.first;
  }

  /** End its stdin and wait for the final status line it prints then. */
  async finish(timeoutMs = 15_000): Promise<Record<string, unknown> | null> {
    this.daemon.proc.stdin?.end();
    const deadline = Date.now() + timeoutMs;
    while (!this.daemon.exited && Date.now() < deadline) await sleep(100);
    await this.daemon.stop();
    return this.last?.final ? this.last : null;
  }
}

const num = (o: Record<string, unknown> | null | undefined, k: string): number => (typeof o?.[k] === 'number' ? (o[k] as number) : 0);

/** The proxy's log: counts reloads and warn/error lines, keeps the first few of those. */
class ProxyLog {
  reloads = 0;
  problems = 0;
  excerpt: string[] = [];
  constructor(daemon: Daemon) {
    for (const stream of [daemon.proc.stdout!, daemon.proc.stderr!]) {
      readline.createInterface({ input: stream }).on('line', (l) => this.line(l));
    }
  }

  private line(l: string): void {
    let level = 'unparsed';
    try {
      const o = JSON.parse(l) as { level?: string; message?: string };
      level = o.level ?? 'unparsed';
      if (o.message === 'config reloaded') this.reloads++;
    } catch {
      /* not JSON (e.g. a Node warning on stderr): counted as a problem below */
    }
    if (level === 'info' || level === 'debug') return;
    this.problems++;
    // Also now: if the soak itself aborts, these lines are the proxy's side of it.
    if (this.problems <= 20) process.stderr.write(`soak: proxy log: ${l.slice(0, 400)}\n`);
    if (this.excerpt.length < 20) this.excerpt.push(l.slice(0, 400));
  }
}

function get(url: string, timeoutMs = 15_000): Promise<string> {
  return new Promise((resolve, reject) => {
    const req = http.get(url, { timeout: timeoutMs }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => (body += d));
      res.on('end', () => (res.statusCode === 200 ? resolve(body) : reject(new Error(`${url}: HTTP ${res.statusCode}`))));
    });
    req.on('timeout', () => req.destroy(new Error(`${url}: no answer in ${timeoutMs} ms`)));
    req.on('error', reject);
  });
}

/** The proxy's Node processes (short-lived helpers such as nft are not the proxy). */
function proxyPids(root: number): number[] {
  return processTree(root).filter((p) => {
    try {
      return fs.readFileSync(`/proc/${p}/comm`, 'utf8').trim() === 'node';
    } catch {
      return false;
    }
  });
}

/** Inodes of listening TCP sockets in this namespace (MPTCP listeners show here too). */
function listeningInodes(): Set<string> {
  const out = new Set<string>();
  for (const f of ['/proc/net/tcp', '/proc/net/tcp6']) {
    let text = '';
    try {
      text = fs.readFileSync(f, 'utf8');
    } catch {
      continue;
    }
    for (const line of text.split('\n').slice(1)) {
      const c = line.trim().split(/\s+/);
      if (c[3] === '0A') out.add(c[9]);
    }
  }
  return out;
}

function procFigures(pids: readonly number[]): { fds: number; rssMB: number; listeners: number } {
  const listening = listeningInodes();
  let fds = 0;
  let kb = 0;
  let listeners = 0;
  for (const p of pids) {
    try {
      const entries = fs.readdirSync(`/proc/${p}/fd`);
      fds += entries.length;
      for (const e of entries) {
        let link = '';
        try {
          link = fs.readlinkSync(`/proc/${p}/fd/${e}`);
        } catch {
          continue; // closed since the directory was read (the churn's sockets come and go)
        }
        const m = /^socket:\[(\d+)\]$/.exec(link);
        if (m && listening.has(m[1])) listeners++;
      }
      kb += Number(/^VmRSS:\s+(\d+) kB/m.exec(fs.readFileSync(`/proc/${p}/status`, 'utf8'))?.[1] ?? 0);
    } catch {
      /* the process went: the pid check at the end sees it */
    }
  }
  return { fds, rssMB: kb / 1024, listeners };
}

function parseSettings(): { s: Settings; out: string; publish: boolean; render?: string } {
  const { values } = parseArgs({
    options: {
      minutes: { type: 'string', default: '60' },
      tunnels: { type: 'string', default: '10000' },
      rate: { type: 'string', default: '75' },
      bytes: { type: 'string', default: '16384' },
      'reload-every': { type: 'string' },
      'sample-every': { type: 'string' },
      workers: { type: 'string' },
      relay: { type: 'string', default: 'splice' },
      out: { type: 'string' },
      publish: { type: 'boolean' },
      render: { type: 'string' },
    },
  });
  const n = (k: keyof typeof values, min: number): number => {
    const v = Number(values[k]);
    if (!Number.isFinite(v) || v < min) throw new Error(`--${k} must be a number ≥ ${min}`);
    return v;
  };
  const tunnels = Math.floor(n('tunnels', 2));
  // Two descriptors a tunnel, a 10 % uneven SO_REUSEPORT split, and room for the churn and the rest.
  const need = (w: number): number => Math.ceil(((tunnels * 2) / w) * (w > 1 ? 1.1 : 1)) + 300;
  let workers = values.workers === undefined ? 1 : Math.floor(n('workers', 1));
  if (values.workers === undefined) while (need(workers) > NOFILE) workers++;
  if (need(workers) > NOFILE) throw new Error(`${tunnels} tunnels need ~${need(workers)} descriptors per process, the hard limit is ${NOFILE}: use more --workers`);
  if (values.relay !== 'splice' && values.relay !== 'stream') throw new Error('--relay must be splice or stream');
  const minutes = n('minutes', 0.1);
  const reloadEveryS = values['reload-every'] === undefined ? Math.min(300, minutes * 15) : n('reload-every', 1);
  const sampleEveryS = values['sample-every'] === undefined ? Math.min(60, minutes * 2.5) : n('sample-every', 1);
  const s: Settings = { relay: values.relay, minutes, tunnels, rate: n('rate', 1), bytes: Math.floor(n('bytes', 12)), reloadEveryS, sampleEveryS, workers };
  return { s, out: path.resolve(values.out ?? path.join(REPO_ROOT, 'bench', 'out')), publish: values.publish ?? false, render: values.render };
}

async function soak(s: Settings, log: (l: string) => void): Promise<SoakResults> {
  const started = Date.now();
  const tmp = fs.mkdtempSync(path.join(fs.existsSync('/dev/shm') ? '/dev/shm' : os.tmpdir(), 'mpx-soak-'));
  process.once('exit', () => fs.rmSync(tmp, { recursive: true, force: true }));
  const echo = await startEcho();
  const [httpPort, socksPort, metricsPort] = [await freePort(), await freePort(), await freePort()];
  const cfg = path.join(tmp, 'config.yaml');
  // What each reload changes: something every serving process applies, harmless to open tunnels.
  const config = (i: number): string => BENCH_PROXY_CONFIG.replace('drainMs: 500', `drainMs: ${500 + (i % 2) * 100}`);
  fs.writeFileSync(cfg, config(0));
  const proxy = new Daemon('mptcp-proxy', proxyCommand({ config: cfg, http: httpPort, socks: socksPort, relay: s.relay, workers: s.workers, fastPath: false, metrics: metricsPort, logLevel: 'info' }));
  const plog = new ProxyLog(proxy);
  const clients: JsonLines[] = [];
  try {
    for (const p of [httpPort, socksPort, metricsPort]) await waitPort(p, 20_000, proxy);
    const metricsUrl = `http://127.0.0.1:${metricsPort}/metrics`;
    const pidsAtStart = new Set(proxyPids(proxy.pid));
    const pidsSeen = new Set(pidsAtStart);
    const samples: SoakSample[] = [];
    let reloads = 0;
    let partialScrapes = 0;
    let incompleteSamples = 0;
    const status = { heldOpen: 0, churnOk: 0, clientErrors: 0 };
    let t0 = Date.now();
    const sample = async (): Promise<SoakSample> => {
      const pids = proxyPids(proxy.pid);
      for (const p of pids) pidsSeen.add(p);
      const proc = procFigures(pids);
      // With workers, /metrics sums the answers that came within the supervisor's 2 s: a busy
      // worker's figures go missing. prom-client's own descriptor count then falls well short of
      // /proc's: scrape again; still short after that, the sample keeps only the /proc figures.
      const short = (text: string): boolean => (promSum(text, 'process_open_fds') ?? 0) < proc.fds * 0.9;
      // A scrape that fails (no answer, connection closed) is retried like a short one.
      const scrape = (): Promise<string> =>
        get(metricsUrl).catch((e: Error) => {
          log(`  scrape failed: ${e.message}`);
          return '';
        });
      let text = await scrape();
      for (let i = 0; i < 6 && short(text); i++) {
        partialScrapes++;
        await sleep(3000);
        text = await scrape();
      }
      const complete = !short(text);
      if (!complete) incompleteSamples++;
      const m = (name: string, labels?: string, absent: number | null = null): number | null => (complete ? (promSum(text, name, labels) ?? absent) : null);
      const finished = m('mptcp_proxy_connections_total', undefined, 0);
      const ok = m('mptcp_proxy_connections_total', 'result="ok"', 0);
      const mb = (v: number | null): number | null => (v === null ? null : v / 2 ** 20);
      const x: SoakSample = {
        t: (Date.now() - t0) / 1000,
        ...proc,
        processes: pids.length,
        heapUsedMB: mb(m('nodejs_heap_size_used_bytes')),
        heapTotalMB: mb(m('nodejs_heap_size_total_bytes')),
        handles: m('nodejs_active_handles_total'),
        // prom-client lists a resource type only while one exists: no Timeout line = no timers.
        timers: m('nodejs_active_resources', 'type="Timeout"', 0),
        resources: m('nodejs_active_resources_total'),
        connectionsActive: m('mptcp_proxy_connections_active', undefined, 0),
        proxyErrors: m('mptcp_proxy_errors_total', undefined, 0),
        finishedConnections: finished,
        failedConnections: finished === null || ok === null ? null : finished - ok,
        ...status,
        reloads,
      };
      samples.push(x);
      log(`  ${fmt(x.t / 60)} min: ${x.fds} fds, RSS ${x.rssMB.toFixed(1)} MB, heap ${fmt(x.heapUsedMB)}/${fmt(x.heapTotalMB)} MB, ${x.handles} handles, ${x.timers} timers, ${x.listeners} listeners, ${x.connectionsActive} open, ${x.churnOk} short ok, ${x.clientErrors} client errors, ${x.proxyErrors} proxy errors, ${reloads} reloads${complete ? '' : ' (/metrics incomplete)'}`);
      return x;
    };
    await sleep(1000);
    const idleAt = Date.now();
    const idle = await sample();

    // The held tunnels: half through each front end, opened and checked before the clock starts.
    log(`soak: opening ${s.tunnels} tunnels (${s.workers} proxy process${s.workers > 1 ? 'es' : ''} serving)`);
    const half = [Math.ceil(s.tunnels / 2), Math.floor(s.tunnels / 2)];
    const keep = [
      new JsonLines(new Daemon('keep-connect', withNofile(['mptcpize', 'run', process.execPath, TOOL, 'keep', 'connect', String(httpPort), String(echo.port), String(half[0]), String(KEEP_PERIOD_S)]))),
      new JsonLines(new Daemon('keep-socks5', withNofile(['mptcpize', 'run', process.execPath, TOOL, 'keep', 'socks5', String(socksPort), String(echo.port), String(half[1]), String(KEEP_PERIOD_S)]))),
    ];
    clients.push(...keep);
    const opened = await Promise.all(keep.map((k) => k.waitFirst(300_000)));
    const tunnelsOpened = opened.reduce((a, o) => a + num(o, 'open'), 0);
    const openErrors = opened.reduce((a, o) => a + num(o, 'errors'), 0);
    log(`soak: ${tunnelsOpened} tunnels open, ${openErrors} errors, in ${fmt(Math.max(...opened.map((o) => num(o, 'ms'))) / 1000)} s`);
    const churn = new JsonLines(new Daemon('churn', withNofile(['mptcpize', 'run', process.execPath, TOOL, 'churn', String(httpPort), String(socksPort), String(echo.port), String(s.rate), String(s.bytes)])));
    clients.push(churn);
    const refresh = (): void => {
      status.heldOpen = keep.reduce((a, k) => a + num(k.last, 'open'), 0);
      status.churnOk = num(churn.last, 'ok');
      status.clientErrors = keep.reduce((a, k) => a + num(k.last, 'errors'), 0) + num(churn.last, 'errors');
    };
    t0 = Date.now();
    idle.t = (idleAt - t0) / 1000;
    status.heldOpen = tunnelsOpened;
    await sample();
    const endMs = t0 + s.minutes * 60_000;
    let nextSample = t0 + s.sampleEveryS * 1000;
    let nextReload = t0 + s.reloadEveryS * 1000;
    while (Date.now() < endMs) {
      await sleep(Math.max(0, Math.min(nextSample, nextReload, endMs) - Date.now()));
      if (proxy.exited) throw new Error(`the proxy exited: ${proxy.output().slice(-1000)}`);
      if (Date.now() >= nextReload && nextReload < endMs) {
        reloads++;
        fs.writeFileSync(cfg, config(reloads));
        proxy.proc.kill('SIGHUP');
        log(`  reload ${reloads} (SIGHUP)`);
        nextReload += s.reloadEveryS * 1000;
      }
      if (Date.now() >= nextSample && nextSample < endMs) {
        refresh();
        await sample();
        nextSample += s.sampleEveryS * 1000;
      }
    }
    refresh();
    // Reloads and samples once more at the end, so the last window ends at the run's end.
    await sample();
    // Closing 10,000 tunnels at once is not the steady state: log lines from then on are kept apart.
    const problemsUntilEnd = plog.problems;
    const excerptUntilEnd = plog.excerpt.length;
    const [k1, k2, ch] = await Promise.all([...keep, churn].map((c) => c.finish()));
    const finals = [k1, k2];
    // Counters from the idle sample to the last sample whose /metrics had every process in it.
    const delta = (f: (x: SoakSample) => number | null): number | null => {
      const end = samples.findLast((x) => f(x) !== null);
      const a = f(idle);
      return end && a !== null ? f(end)! - a : null;
    };
    const counts: SoakCounts = {
      tunnelsWanted: s.tunnels,
      tunnelsOpened,
      openErrors,
      heldDropped: finals.reduce((a, f, i) => a + (f ? num(f, 'dropped') : num(opened[i], 'open')), 0),
      heldPings: finals.reduce((a, f) => a + num(f, 'pings'), 0),
      heldPingErrors: finals.reduce((a, f) => a + num(f, 'errors'), 0) + finals.filter((f) => !f).length,
      churnOk: num(ch, 'ok'),
      churnErrors: ch ? num(ch, 'errors') + num(ch, 'inFlight') : 1,
      churnBytes: num(ch, 'bytes'),
      reloadsSent: reloads,
      reloadsLogged: plog.reloads,
      proxyErrorsDelta: delta((x) => x.proxyErrors),
      failedConnectionsDelta: delta((x) => x.failedConnections),
      logProblems: problemsUntilEnd,
      partialScrapes,
      incompleteSamples,
      listenersMin: Math.min(...samples.map((x) => x.listeners)),
      listenersMax: Math.max(...samples.map((x) => x.listeners)),
      pidsSeen: pidsSeen.size,
      pidsAtStart: pidsAtStart.size,
    };
    const w = windowsFor(s.minutes * 60);
    const servers = s.workers > 1 ? s.workers : 1;
    return {
      date: new Date(started).toISOString(),
      machine: { hostname: os.hostname(), nproc: os.cpus().length, cpu: os.cpus()[0]?.model.trim() ?? 'unknown', memGiB: Math.round(os.totalmem() / 2 ** 30), kernel: os.release(), node: process.version, nofile: NOFILE },
      command: `node dist/bench/soak.js ${process.argv.slice(2).join(' ')}`.trim(),
      settings: s,
      windows: w,
      tolerances: TOLERANCES,
      samples,
      counts,
      verdict: verdict(samples, w, counts, servers),
      logExcerpt: plog.excerpt.slice(0, excerptUntilEnd),
      teardownLog: plog.excerpt.slice(excerptUntilEnd),
      clientFirstErrors: [...opened, k1, k2, ch].map((o) => o?.firstError).filter((e): e is string => typeof e === 'string'),
      seconds: (Date.now() - started) / 1000,
    };
  } finally {
    await Promise.all(clients.map((c) => c.daemon.stop()));
    await proxy.stop(10_000);
    await echo.daemon.stop();
  }
}

async function main(): Promise<number> {
  const { s, out, publish, render } = parseSettings();
  const log = (l: string): void => void process.stderr.write(`${l}\n`);
  if (render) {
    // No measuring: the chart and the section again from a soak's JSON (e.g. after a change to them).
    const r = JSON.parse(fs.readFileSync(render, 'utf8')) as SoakResults;
    write(r, out, path.basename(render), publish);
    return 0;
  }
  if (!inBenchNetns()) return inPrivateNetns();
  if (!have('mptcpize')) throw new Error('mptcpize not found (npm run bench:soak runs scripts/setup.sh bench)');
  log(`soak: ${fmt(s.minutes)} min, ${s.tunnels} tunnels, ${s.rate}/s short tunnels of ${s.bytes} bytes, SIGHUP every ${s.reloadEveryS} s, samples every ${s.sampleEveryS} s`);
  const r = await soak(s, log);
  const json = `soak-${r.date.replace(/[:.]/g, '-')}.json`;
  write(r, out, json, publish);
  process.stdout.write(soakMarkdown(r, 'soak.svg'));
  log(`soak: ${r.verdict.pass ? 'pass' : 'FAIL'}; ${path.join(out, json)}${publish ? ', published to bench/results/soak.{json,svg,md}' : ''}`);
  return r.verdict.pass ? 0 : 3;
}

/** JSON, chart and section into `out` (and bench/results/soak.* with `publish`). */
function write(r: SoakResults, out: string, json: string, publish: boolean): void {
  const s = r.settings;
  const title = `mptcp-proxy soak: ${fmt(s.minutes)} min, ${r.counts.tunnelsOpened} held tunnels + ${s.rate}/s short ones, SIGHUP every ${fmt(s.reloadEveryS)} s`;
  const svg = soakChart(title, r.samples, s.minutes);
  const into = (dir: string, jsonName: string): void => {
    fs.mkdirSync(dir, { recursive: true });
    fs.writeFileSync(path.join(dir, jsonName), JSON.stringify(r, null, 2) + '\n');
    fs.writeFileSync(path.join(dir, 'soak.svg'), svg);
    fs.writeFileSync(path.join(dir, 'soak.md'), soakMarkdown(r, 'soak.svg', readNotes('soak-notes.md')));
  };
  into(out, json);
  if (publish) into(path.join(REPO_ROOT, 'bench', 'results'), 'soak.json');
}

main().then(
  (code) => process.exit(code),
  (e: unknown) => {
    process.stderr.write(`soak: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}\n`);
    process.exit(1);
  },
);
