/**
 * Bulk throughput: one big download, and many parallel medium downloads, with curl under
 * mptcpize through each subject. CPU is the subject's whole process tree (utime + stime).
 */
import { performance } from 'node:perf_hooks';
import { busyShare, machineCpu, run, treeCpuSeconds } from '../lib/proc';
import { SUBJECTS, type Servers, type Subject } from '../lib/peers';
import { rowFrom, type Measured } from '../lib/measure';
import type { Row } from '../lib/results';

export interface BulkOptions {
  workload: string;
  file: 'big' | 'medium';
  /** Concurrent transfers (1 = one connection). */
  parallel: number;
  repeats: number;
  subjects?: readonly Subject[];
}

/** curl arguments that send a request through a subject (the URL comes after). */
export function curlVia(s: Subject, port: number): string[] {
  switch (s.mode) {
    case 'direct':
      return [];
    case 'forward':
      return ['-x', `http://127.0.0.1:${port}`];
    case 'connect':
      return ['-p', '-x', `http://127.0.0.1:${port}`];
    case 'socks5':
      return ['--socks5-hostname', `127.0.0.1:${port}`];
    case 'convert':
      throw new Error('curl does not speak RFC 8803 Convert');
  }
}

/** The URL of an origin file as the client asks for it (HAProxy is addressed directly). */
async function urlFor(servers: Servers, s: Subject, port: number, file: 'big' | 'medium'): Promise<string> {
  return s.mode === 'direct' ? `http://127.0.0.1:${port}${servers.files[file].path}` : servers.url(file);
}

async function once(servers: Servers, s: Subject, o: BulkOptions): Promise<Measured> {
  const port = await servers.port(s);
  const url = await urlFor(servers, s, port, o.file);
  const proxyPid = s.kind === 'limit' ? null : (await servers.get(s.server)).daemon.pid;
  const transfers = Array.from({ length: o.parallel }, () => ['-o', '/dev/null', url]).flat();
  const argv = ['mptcpize', 'run', 'curl', '-sS', '--fail', ...(o.parallel > 1 ? ['-Z', '--parallel-max', String(o.parallel), '--parallel-immediate'] : []), '-w', '%{size_download} %{time_total}\\n', ...curlVia(s, port), ...transfers];
  const cpu0 = proxyPid ? treeCpuSeconds(proxyPid) : 0;
  const machine0 = machineCpu();
  const t0 = performance.now();
  const r = await run(argv, { timeoutMs: 300_000 });
  const wall = (performance.now() - t0) / 1000;
  const cpu = proxyPid ? treeCpuSeconds(proxyPid) - cpu0 : 0;
  // Whether the run was CPU-bound: client, origin and subject share the machine's cores.
  const machineBusy = busyShare(machine0, machineCpu());
  const lines = r.stdout.trim().split('\n').filter(Boolean).map((l) => l.split(' ').map(Number));
  const bytes = lines.reduce((a, [b]) => a + b, 0);
  const expected = o.parallel * servers.files[o.file].bytes;
  if (r.code !== 0 || bytes !== expected) throw new Error(`curl exit ${r.code}, ${bytes}/${expected} bytes: ${r.stderr.trim().slice(-300)}`);
  // One transfer: curl's own clock (no process start-up). Parallel: wall time of the batch.
  const seconds = o.parallel === 1 ? lines[0][1] : wall;
  return { value: bytes / seconds / 1e9, extra: { cpuPerGB: proxyPid ? cpu / (bytes / 1e9) : null, seconds, bytes, machineBusy } };
}

export async function bulk(servers: Servers, o: BulkOptions, log: (s: string) => void): Promise<Row[]> {
  const spec = { workload: o.workload, unit: 'GB/s', higherIsBetter: true, repeats: o.repeats, describe: (b: Measured) => `${b.value.toFixed(3)} GB/s, ${b.extra.cpuPerGB?.toFixed(2) ?? '–'} CPU s/GB` };
  // Rounds over all subjects rather than N in a row: a burst of load from elsewhere on the machine
  // then costs every subject one run, not one subject all of its runs.
  const subjects = o.subjects ?? SUBJECTS;
  const runs = new Map<string, Measured[]>(subjects.map((s) => [s.id, []]));
  const notes = new Map<string, string>();
  for (let i = 0; i < o.repeats; i++) {
    for (const s of subjects) {
      if (i > 0 && runs.get(s.id)!.length === 0) continue;
      try {
        runs.get(s.id)!.push(await once(servers, s, o));
      } catch (e) {
        notes.set(s.id, (e as Error).message.split('\n')[0].slice(0, 300));
      }
    }
  }
  return subjects.map((s) => rowFrom(spec, s, runs.get(s.id)!, notes.get(s.id), log));
}
