/**
 * Process plumbing for the bench: servers started in their own process group (so a peer's
 * workers die with it), one-shot tools run to completion, free loopback ports, and what the
 * kernel says a process tree has cost (CPU from /proc/PID/stat, memory from /proc/PID/status).
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import { killGroup, run, type ExecOptions, type ExecResult } from '../../testkit/run';
import { sleep } from '../../testkit/sleep';

export { run, type ExecResult, type ExecOptions };

/** The open-file hard limit this process may raise its soft limit to (no CAP_SYS_RESOURCE here to go past it). */
export const NOFILE = ((): number => {
  const m = /^Max open files\s+(\d+)\s+(\d+|unlimited)/m.exec(fs.readFileSync('/proc/self/limits', 'utf8'));
  return m ? (m[2] === 'unlimited' ? 1_048_576 : Number(m[2])) : 1024;
})();
/** argv run with its soft open-file limit raised to the hard one (10,000 tunnels need ~20,000 fds). */
export const withNofile = (argv: readonly string[]): string[] => ['prlimit', `--nofile=${NOFILE}:${NOFILE}`, '--', ...argv];

/** Is an executable on PATH? */
export function have(cmd: string): boolean {
  try {
    execFileSync('sh', ['-c', `command -v ${cmd}`], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

/** A loopback port nobody listens on right now. */
export async function freePort(): Promise<number> {
  const s = net.createServer();
  await new Promise<void>((resolve, reject) => {
    s.once('error', reject);
    s.listen(0, '127.0.0.1', resolve);
  });
  const port = (s.address() as net.AddressInfo).port;
  await new Promise<void>((r) => s.close(() => r()));
  return port;
}

/** Resolves once host:port accepts a TCP connection; rejects after timeoutMs or if `child` exits. */
export async function waitPort(port: number, timeoutMs = 10_000, child?: Daemon, host = '127.0.0.1'): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (child && child.exited) throw new Error(`${child.name} exited before listening on ${port}: ${child.output().slice(-2000)}`);
    const ok = await new Promise<boolean>((resolve) => {
      const s = net.connect(port, host);
      s.once('connect', () => (s.destroy(), resolve(true)));
      s.once('error', () => resolve(false));
    });
    if (ok) return;
    if (Date.now() > deadline) throw new Error(`nothing listening on ${host}:${port} after ${timeoutMs} ms${child ? `: ${child.output().slice(-2000)}` : ''}`);
    await sleep(50);
  }
}

const live = new Set<Daemon>();
let hooked = false;
function hookExit(): void {
  if (hooked) return;
  hooked = true;
  process.on('exit', () => {
    for (const d of live) d.kill('SIGKILL');
  });
  for (const sig of ['SIGINT', 'SIGTERM'] as const) {
    process.once(sig, () => {
      for (const d of live) d.kill('SIGKILL');
      process.exit(130);
    });
  }
}

/** A long-running process in its own group, with its output kept (bounded) for error messages. */
export class Daemon {
  readonly proc: ChildProcess;
  exited = false;
  private out = '';

  constructor(
    readonly name: string,
    argv: readonly string[],
    opts: { cwd?: string; env?: NodeJS.ProcessEnv } = {},
  ) {
    hookExit();
    this.proc = spawn(argv[0], argv.slice(1), { cwd: opts.cwd, env: opts.env ?? process.env, stdio: ['pipe', 'pipe', 'pipe'], detached: true });
    const keep = (d: Buffer): void => {
      this.out = (this.out + d.toString()).slice(-16_384);
    };
    this.proc.stdout?.on('data', keep);
    this.proc.stderr?.on('data', keep);
    this.proc.stdin?.on('error', () => undefined);
    this.proc.on('error', (e) => keep(Buffer.from(String(e))));
    this.proc.on('exit', () => {
      this.exited = true;
      live.delete(this);
    });
    live.add(this);
  }

  get pid(): number {
    if (this.proc.pid === undefined) throw new Error(`${this.name} did not start: ${this.out}`);
    return this.proc.pid;
  }

  output(): string {
    return this.out;
  }

  kill(signal: NodeJS.Signals): void {
    if (!this.exited && this.proc.pid) killGroup(this.proc.pid, signal);
  }

  /** SIGTERM to the group, SIGKILL after graceMs. */
  async stop(graceMs = 2000): Promise<void> {
    if (this.exited) return;
    const done = new Promise<void>((r) => this.proc.once('exit', () => r()));
    this.kill('SIGTERM');
    const t = setTimeout(() => this.kill('SIGKILL'), graceMs);
    await done;
    clearTimeout(t);
    // Peers that fork (danted, nginx workers) may leave members of the group behind briefly.
    this.kill('SIGKILL');
  }
}

const CLK_TCK = ((): number => {
  try {
    return Number(execFileSync('getconf', ['CLK_TCK']).toString().trim()) || 100;
  } catch {
    return 100;
  }
})();

interface ProcStat {
  pid: number;
  ppid: number;
  /** utime + stime + cutime + cstime, in clock ticks. */
  ticks: number;
}

/** Fields of /proc/PID/stat after the parenthesised command name (which may hold spaces). */
export function parseStat(text: string): ProcStat | null {
  const close = text.lastIndexOf(')');
  if (close < 0) return null;
  const pid = Number(text.slice(0, text.indexOf(' ')));
  const f = text.slice(close + 2).split(' ');
  // f[0] = state (field 3), so field N is f[N - 3].
  const n = (field: number): number => Number(f[field - 3]);
  if (f.length < 15 || !Number.isFinite(pid)) return null;
  return { pid, ppid: n(4), ticks: n(14) + n(15) + n(16) + n(17) };
}

function allStats(): ProcStat[] {
  const out: ProcStat[] = [];
  for (const name of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(name)) continue;
    try {
      const s = parseStat(fs.readFileSync(`/proc/${name}/stat`, 'utf8'));
      if (s) out.push(s);
    } catch {
      /* exited meanwhile */
    }
  }
  return out;
}

/** pid and every live descendant. */
export function processTree(root: number): number[] {
  const stats = allStats();
  const children = new Map<number, number[]>();
  for (const s of stats) children.set(s.ppid, [...(children.get(s.ppid) ?? []), s.pid]);
  const out: number[] = [];
  const todo = [root];
  while (todo.length) {
    const p = todo.pop()!;
    out.push(p);
    todo.push(...(children.get(p) ?? []));
  }
  return out;
}

/** CPU seconds (user + system, reaped children included) of a process tree. */
export function treeCpuSeconds(root: number): number {
  const tree = new Set(processTree(root));
  let ticks = 0;
  for (const pid of tree) {
    try {
      ticks += parseStat(fs.readFileSync(`/proc/${pid}/stat`, 'utf8'))?.ticks ?? 0;
    } catch {
      /* exited meanwhile */
    }
  }
  return ticks / CLK_TCK;
}

/**
 * CPU seconds (user + system) of every thread in pid's process tree, summed per thread kind:
 * `main` (each process's own first thread), the thread's name where it set one (the fast path's
 * `mpx-fastpath`, the splice relay's `mpx-splice`, the netlink reader's `mpx-netlink`), and
 * `other` for Node's unnamed threads (libuv pool, V8 platform workers, other worker_threads).
 */
export function threadCpuSeconds(root: number): Map<string, number> {
  const out = new Map<string, number>();
  for (const pid of processTree(root)) {
    let tids: string[];
    try {
      tids = fs.readdirSync(`/proc/${pid}/task`);
    } catch {
      continue; // exited meanwhile
    }
    for (const tid of tids) {
      try {
        const text = fs.readFileSync(`/proc/${pid}/task/${tid}/stat`, 'utf8');
        const name = text.slice(text.indexOf('(') + 1, text.lastIndexOf(')'));
        const f = text.slice(text.lastIndexOf(')') + 2).split(' ');
        // utime and stime are fields 14 and 15 (f[0] is field 3); a thread has no children's times.
        const ticks = Number(f[11]) + Number(f[12]);
        const kind = Number(tid) === pid ? 'main' : name.startsWith('mpx-') ? name : 'other';
        out.set(kind, (out.get(kind) ?? 0) + ticks / CLK_TCK);
      } catch {
        /* exited meanwhile */
      }
    }
  }
  return out;
}

/** Jiffies the whole machine spent busy and in all, from /proc/stat's first line. */
export interface MachineCpu {
  busy: number;
  total: number;
}

export function machineCpu(): MachineCpu {
  const fields = fs.readFileSync('/proc/stat', 'utf8').split('\n', 1)[0].trim().split(/\s+/).slice(1).map(Number);
  // user nice system idle iowait irq softirq steal …: idle and iowait are the only non-busy ones.
  const total = fields.slice(0, 8).reduce((a, b) => a + b, 0);
  return { busy: total - fields[3] - fields[4], total };
}

/** Share of all cores busy between two readings (0..1). */
export const busyShare = (a: MachineCpu, b: MachineCpu): number => (b.total > a.total ? (b.busy - a.busy) / (b.total - a.total) : 0);

/** Resident memory of a process tree, bytes. */
export function treeRssBytes(root: number): number {
  let kb = 0;
  for (const pid of processTree(root)) {
    try {
      const m = /^VmRSS:\s+(\d+) kB/m.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'));
      if (m) kb += Number(m[1]);
    } catch {
      /* exited meanwhile */
    }
  }
  return kb * 1024;
}

/** Run a tool; a non-zero exit becomes an error with the tail of its output. */
export async function mustRun(argv: readonly string[], opts: ExecOptions = {}): Promise<ExecResult> {
  const r = await run(argv, opts);
  if (r.code !== 0) throw new Error(`${argv.slice(0, 6).join(' ')}… exit ${r.code ?? r.signal}: ${(r.stderr || r.stdout).trim().slice(-600)}`);
  return r;
}
