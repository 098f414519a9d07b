/**
 * Small keep-alive requests: wrk (under mptcpize) sends a fixed number of GETs for a 128-byte
 * document over a few persistent connections. Through a forward proxy the request line carries
 * the absolute URL (a Lua script sets it); HAProxy and the limit get origin-form paths.
 */
import fs from 'node:fs';
import path from 'node:path';
import { Daemon, have } from '../lib/proc';
import { SUBJECTS, type Servers, type Subject } from '../lib/peers';
import { measure, type Measured } from '../lib/measure';
import type { Row } from '../lib/results';

/**
 * wrk only stops on its -d timer or SIGINT: the script says "LIMIT" on stderr after BENCH_REQUESTS
 * responses, the bench answers with SIGINT, and done() prints one JSON line.
 */
const WRK_SCRIPT = `
local n, limit = 0, tonumber(os.getenv("BENCH_REQUESTS"))
local req = nil
function init(args)
  wrk.headers["Host"] = os.getenv("BENCH_HOST")
  req = wrk.format("GET", os.getenv("BENCH_PATH"))
end
function request() return req end
function response(status, headers, body)
  n = n + 1
  if n == limit then io.stderr:write("LIMIT\\n"); io.stderr:flush() end
end
function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format('BENCH {"requests":%d,"us":%d,"p50":%d,"p99":%d,"errors":%d}\\n',
    summary.requests, summary.duration, latency:percentile(50), latency:percentile(99),
    e.connect + e.read + e.write + e.status + e.timeout))
end
`;

/** Who can carry plain HTTP requests: forward proxies, a TCP relay, and the limit. */
export const KEEPALIVE_SUBJECTS = SUBJECTS.filter((s) => s.mode === 'forward' || s.mode === 'direct');

export async function keepalive(servers: Servers, o: { requests: number; connections: number; repeats: number; dir: string; subjects?: readonly Subject[] }, log: (s: string) => void): Promise<Row[]> {
  const workload = 'keepalive-small';
  if (!have('wrk')) {
    return (o.subjects ?? KEEPALIVE_SUBJECTS).map((s) => ({ workload, subject: s.id, label: s.label, kind: s.kind, value: null, unit: 'req/s', higherIsBetter: true, runs: [], extra: {}, note: 'wrk not installed' }));
  }
  const script = path.join(o.dir, 'keepalive.lua');
  fs.writeFileSync(script, WRK_SCRIPT);
  const spec = { workload, unit: 'req/s', higherIsBetter: true, repeats: o.repeats, describe: (b: Measured) => `${b.value.toFixed(0)} req/s, p50 ${b.extra.p50?.toFixed(3)} ms, p99 ${b.extra.p99?.toFixed(3)} ms, ${b.extra.errors} errors` };
  const rows: Row[] = [];
  for (const s of o.subjects ?? KEEPALIVE_SUBJECTS) {
    // Unmeasured first pass: the origin's and the subject's keep-alive connections, JIT and caches
    // warm, so the measured passes compare steady states rather than start-up.
    await wrkOnce(servers, s, { ...o, requests: Math.ceil(o.requests / 10) }, script);
    rows.push(await measure(spec, s, () => wrkOnce(servers, s, o, script), log));
  }
  return rows;
}

async function wrkOnce(servers: Servers, s: Subject, o: { requests: number; connections: number }, script: string): Promise<Measured> {
  const port = await servers.port(s);
  const origin = `127.0.0.1:${await servers.originPort()}`;
  const small = servers.files.small.path;
  const env = { ...process.env, BENCH_REQUESTS: String(o.requests), BENCH_HOST: origin, BENCH_PATH: s.mode === 'forward' ? `http://${origin}${small}` : small };
  const argv = ['mptcpize', 'run', 'wrk', '-t1', `-c${o.connections}`, '-d120s', '-s', script, `http://127.0.0.1:${port}${small}`];
  const wrk = new Daemon('wrk', argv, { env });
  const limit = setInterval(() => {
    if (wrk.output().includes('LIMIT')) wrk.kill('SIGINT');
  }, 5);
  const code = await new Promise<number | null>((resolve) => (wrk.exited ? resolve(wrk.proc.exitCode) : wrk.proc.once('exit', (c) => resolve(c))));
  clearInterval(limit);
  const m = /^BENCH (\{.*\})$/m.exec(wrk.output());
  if (!m) throw new Error(`wrk exit ${code}: ${wrk.output().trim().slice(-300)}`);
  const j = JSON.parse(m[1]) as { requests: number; us: number; p50: number; p99: number; errors: number };
  if (j.requests < o.requests) throw new Error(`wrk finished ${j.requests}/${o.requests} requests (${j.errors} errors)`);
  return { value: j.requests / (j.us / 1e6), extra: { p50: j.p50 / 1000, p99: j.p99 / 1000, errors: j.errors, requests: j.requests } };
}
