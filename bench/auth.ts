/**
 * Proxy authentication under load (issue 12): what users cost the proxy, and what a password
 * guesser costs other clients. Our proxy runs as its own process (as in production), a Node
 * origin (bench/tools/origin) as another; the clients are Node's http client in this process.
 *  - keep-alive: requests/s over 10 persistent connections with users configured (every request
 *    carries Proxy-Authorization) ÷ the same without users; target ≥ 0.9;
 *  - victim: a client making a new connection per request with the right password (so every
 *    request goes through the credential check) at a steady rate; its p99 while one address
 *    sends 50 wrong passwords a second ÷ its p99 alone (6 interleaved rounds of 8 s, percentiles
 *    over all rounds of a kind); target ≤ 2. Also reported, without a
 *    target: the control, 50 requests a second without credentials from that address (what any
 *    50 connections a second cost, with no password check), and the guesses spread over 250
 *    addresses (no per-client slow-down applies: every guess is hashed until the queue is full).
 * Run: node dist/bench/auth.js [--quick] [--root DIR]   (DIR: another checkout's build to compare)
 */
import fs from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { hashPassword } from '../src/access/passwords';
import { REPO_ROOT } from '../testkit/testbed';
import { Daemon, freePort, run as runTool, waitPort } from './lib/proc';
import { percentile } from './lib/results';
import { sleep } from '../testkit/sleep';

export interface AuthBenchOptions {
  quick?: boolean;
  /** Repository whose dist/ runs as the proxy (default: this one). */
  root?: string;
}

const USER = 'alice';
const REQUEST_TIMEOUT_MS = 10_000;
const PASSWORD = 'correct horse';
const basic = (user: string, password: string): string => `Basic ${Buffer.from(`${user}:${password}`).toString('base64')}`;

interface Proxy {
  port: number;
  daemon: Daemon;
}

async function startProxy(root: string, dir: string, users: boolean): Promise<Proxy> {
  const [port, socks] = [await freePort(), await freePort()];
  const cfg = path.join(dir, `proxy-${users ? 'users' : 'open'}.yaml`);
  const access = users ? { users: [{ name: USER, password: hashPassword(PASSWORD) }] } : {};
  // JSON is YAML. Per-client limits off: every client here is on loopback.
  fs.writeFileSync(cfg, JSON.stringify({ access, limits: { maxConnectionsPerClient: 40_000 }, timeouts: { drainMs: 500 } }));
  const argv = [process.execPath, path.join(root, 'dist/src/cli/main.js'), '--config', cfg, '--http', `127.0.0.1:${port}`, '--socks', `127.0.0.1:${socks}`, '--allow-dest', '127.0.0.0/8', '--log-level', 'error', '--no-metrics'];
  const daemon = new Daemon(users ? 'proxy-users' : 'proxy-open', argv);
  await waitPort(port, 15_000, daemon);
  return { port, daemon };
}

interface Target {
  proxyPort: number;
  url: string;
}

/** One GET through the proxy: status and milliseconds from request to the end of the response. */
function get(t: Target, o: { auth?: string; agent?: http.Agent | false; from?: string }): Promise<{ status: number; ms: number }> {
  const start = process.hrtime.bigint();
  return new Promise((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port: t.proxyPort, path: t.url, agent: o.agent ?? false, localAddress: o.from, headers: o.auth ? { 'Proxy-Authorization': o.auth } : {} }, (res) => {
      res.resume();
      res.on('end', () => resolve({ status: res.statusCode ?? 0, ms: Number(process.hrtime.bigint() - start) / 1e6 }));
    });
    req.on('error', reject);
    // A proxy that stalls (the event-loop scrypt of old builds) fails the request instead of the run.
    req.setTimeout(REQUEST_TIMEOUT_MS, () => req.destroy(new Error(`no answer in ${REQUEST_TIMEOUT_MS} ms`)));
    req.end();
  });
}

/** Requests/s over `connections` keep-alive connections, `total` requests in all. */
async function keepAliveRate(t: Target, auth: string | undefined, connections: number, total: number): Promise<number> {
  const agent = new http.Agent({ keepAlive: true, maxSockets: connections });
  let left = total;
  const start = process.hrtime.bigint();
  await Promise.all(
    Array.from({ length: connections }, async () => {
      while (left-- > 0) {
        const r = await get(t, { auth, agent });
        if (r.status !== 200) throw new Error(`keep-alive request answered ${r.status}`);
      }
    }),
  );
  const s = Number(process.hrtime.bigint() - start) / 1e9;
  agent.destroy();
  return total / s;
}

/** Start a request every 1000/rate ms for `ms` (open loop: a slow answer does not delay the next). */
async function steady<T>(rate: number, ms: number, one: (i: number) => Promise<T>): Promise<T[]> {
  const pending: Promise<T>[] = [];
  const start = Date.now();
  for (let i = 0; Date.now() - start < ms; i++) {
    pending.push(one(i));
    const due = start + ((i + 1) * 1000) / rate;
    await sleep(Math.max(0, due - Date.now()));
  }
  return Promise.all(pending);
}

interface VictimSamples {
  /** Latencies of the answered requests, ms. */
  ok: number[];
  errors: number;
}

/** The victim's latencies while `attack` (if any) runs beside it. */
async function victim(t: Target, rate: number, ms: number, attack?: () => Promise<unknown>): Promise<VictimSamples> {
  const auth = basic(USER, PASSWORD);
  // A failed request counts as an error, not as the end of the run.
  const [answers] = await Promise.all([steady(rate, ms, () => get(t, { auth }).catch(() => ({ status: 0, ms: 0 }))), attack?.()]);
  const ok = answers.filter((a) => a.status === 200).map((a) => a.ms);
  return { ok, errors: answers.length - ok.length };
}

/** Percentiles over the samples of several rounds together. */
function pooled(rounds: readonly VictimSamples[]): { p50: number | null; p99: number | null; errors: number } {
  const all = rounds.flatMap((r) => r.ok);
  return { p50: percentile(all, 50), p99: percentile(all, 99), errors: rounds.reduce((n, r) => n + r.errors, 0) };
}

interface GuessPlan {
  target: Target;
  rate: number;
  ms: number;
  /** Source addresses 127.0.1.1 .. 127.0.1.N in turn; 1 = all from 127.0.0.2. */
  addresses: number;
  /** false: the control, requests without credentials (answered 407 with no password check). */
  credentials: boolean;
}

/** Wrong passwords at `rate` per second, each on a new connection; answers counted by status. */
async function guesses(g: GuessPlan): Promise<Record<string, number>> {
  const from = (i: number): string => (g.addresses === 1 ? '127.0.0.2' : `127.0.1.${1 + (i % g.addresses)}`);
  const statuses = await steady(g.rate, g.ms, (i) => get(g.target, { ...(g.credentials ? { auth: basic(USER, `guess-${i}`) } : {}), from: from(i) }).then((a) => a.status, () => 0));
  const counts: Record<string, number> = {};
  for (const s of statuses) counts[s] = (counts[s] ?? 0) + 1;
  return counts;
}

/** The guesser in a process of its own, so its client work does not delay the victim's clock. */
async function guessesElsewhere(g: GuessPlan): Promise<Record<string, number>> {
  const r = await runTool([process.execPath, __filename, '--guesser', JSON.stringify(g)], { timeoutMs: g.ms + 60_000 });
  if (r.code !== 0) throw new Error(`guesser exit ${r.code}: ${r.stderr.slice(-300)}`);
  return JSON.parse(r.stdout) as Record<string, number>;
}

const ratio = (a: number | null, b: number | null): number | null => (a !== null && b !== null && b > 0 ? a / b : null);
const round = (x: number | null, digits = 3): number | null => (x === null ? null : Number(x.toFixed(digits)));

export async function run(opts: AuthBenchOptions = {}): Promise<object[]> {
  const root = opts.root ?? REPO_ROOT;
  const requests = opts.quick ? 2_000 : 20_000;
  const repeats = opts.quick ? 1 : 3;
  const rounds = opts.quick ? 1 : 6;
  const victimMs = opts.quick ? 3_000 : 8_000;
  const victimRate = 100;
  const guessRate = 50;
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'mpx-auth-bench-'));
  const daemons: Daemon[] = [];
  try {
    fs.writeFileSync(path.join(dir, 'small.txt'), 'x'.repeat(128));
    const originPort = await freePort();
    const origin = new Daemon('origin', [process.execPath, path.join(REPO_ROOT, 'dist/bench/tools/origin.js'), String(originPort), dir]);
    daemons.push(origin);
    await waitPort(originPort, 10_000, origin);
    const url = `http://127.0.0.1:${originPort}/small.txt`;

    const open = await startProxy(root, dir, false);
    daemons.push(open.daemon);
    const withUsers = await startProxy(root, dir, true);
    daemons.push(withUsers.daemon);
    const tOpen = { proxyPort: open.port, url };
    const tUsers = { proxyPort: withUsers.port, url };
    const auth = basic(USER, PASSWORD);

    // Interleaved, best of `repeats` each: the machine's load drifts between runs.
    const openRuns: number[] = [];
    const usersRuns: number[] = [];
    for (let i = 0; i < repeats; i++) {
      openRuns.push(await keepAliveRate(tOpen, undefined, 10, requests));
      usersRuns.push(await keepAliveRate(tUsers, auth, 10, requests));
    }
    const openRps = Math.max(...openRuns);
    const usersRps = Math.max(...usersRuns);

    await get(tUsers, { auth }); // verified once: the victim's checks are cache hits from here on
    const plan = { target: tUsers, rate: guessRate, ms: victimMs };
    const beside = async (g: GuessPlan): Promise<{ victim: VictimSamples; guesses: Record<string, number> }> => {
      let counts: Record<string, number> = {};
      const v = await victim(tUsers, victimRate, victimMs, async () => {
        counts = await guessesElsewhere(g);
      });
      await sleep(3_000); // slowed refusals drain, the failure scores of the next round start lower
      return { victim: v, guesses: counts };
    };
    // Short rounds back to back (alone, under guesses, under as many requests without
    // credentials), percentiles over all rounds of a kind: the machine's load drifts and stalls
    // (other sessions share it), and interleaving spreads that over the three kinds alike.
    const alones: VictimSamples[] = [];
    const attackeds: VictimSamples[] = [];
    const controls: VictimSamples[] = [];
    const oneAddress: Record<string, number> = {};
    for (let i = 0; i < rounds; i++) {
      alones.push(await victim(tUsers, victimRate, victimMs));
      const attacked = await beside({ ...plan, addresses: 1, credentials: true });
      attackeds.push(attacked.victim);
      for (const [k, n] of Object.entries(attacked.guesses)) oneAddress[k] = (oneAddress[k] ?? 0) + n;
      controls.push((await beside({ ...plan, addresses: 1, credentials: false })).victim);
    }
    const [alone, attacked, control] = [pooled(alones), pooled(attackeds), pooled(controls)];
    const roundRatios = alones.map((a, i) => round(ratio(percentile(attackeds[i]!.ok, 99), percentile(a.ok, 99)), 2)).join(', ');
    const { victim: spreadVictim, guesses: spread } = await beside({ ...plan, addresses: 250, credentials: true });
    const distributed = pooled([spreadVictim]);

    const keepAliveRatio = ratio(usersRps, openRps);
    const p99Ratio = ratio(attacked.p99, alone.p99);
    return [
      {
        name: 'auth.keepAliveUsersVsOpen',
        unit: '×',
        value: round(keepAliveRatio),
        usersReqPerS: Math.round(usersRps),
        openReqPerS: Math.round(openRps),
        target: { op: '>=', threshold: 0.9, met: keepAliveRatio === null ? null : keepAliveRatio >= 0.9 },
      },
      {
        name: 'auth.victimP99UnderGuessesVsAlone',
        unit: '×',
        value: round(p99Ratio),
        p50: round(attacked.p50),
        p99: round(attacked.p99),
        aloneP50: round(alone.p50),
        aloneP99: round(alone.p99),
        victimErrors: alone.errors + attacked.errors,
        guesses407: oneAddress['407'] ?? 0,
        guesses503: oneAddress['503'] ?? 0,
        roundRatios,
        controlP50: round(control.p50),
        controlP99: round(control.p99),
        controlRatio: round(ratio(control.p99, alone.p99)),
        target: { op: '<=', threshold: 2, met: p99Ratio === null ? null : p99Ratio <= 2 },
      },
      {
        name: 'auth.victimP99UnderSpreadGuessesVsAlone',
        unit: '×',
        value: round(ratio(distributed.p99, alone.p99)),
        p50: round(distributed.p50),
        p99: round(distributed.p99),
        victimErrors: distributed.errors,
        guesses407: spread['407'] ?? 0,
        guesses503: spread['503'] ?? 0,
      },
    ];
  } finally {
    await Promise.all(daemons.map((d) => d.stop()));
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

if (require.main === module) {
  const { values } = parseArgs({ options: { quick: { type: 'boolean' }, root: { type: 'string' }, guesser: { type: 'string' } } });
  if (values.guesser) {
    void guesses(JSON.parse(values.guesser) as GuessPlan).then((c) => process.stdout.write(JSON.stringify(c)));
  } else run({ quick: values.quick ?? false, ...(values.root ? { root: path.resolve(values.root) } : {}) }).then(
    (r) => process.stdout.write(JSON.stringify(r, null, 2) + '\n'),
    (e: unknown) => {
      process.stderr.write(`auth: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}\n`);
      process.exit(1);
    },
  );
}
