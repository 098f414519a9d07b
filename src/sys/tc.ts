/**
 * tc (HTB) for the steering engine. The proxy owns the root qdisc with handle 4d50: ("MP") on
 * each interface it shapes, and only when that interface had the kernel's default root qdisc
 * (handle 0:): an operator's own qdisc is reported, never replaced. The root has no default
 * class, so unclassified traffic goes out HTB's direct queue unshaped; nftables puts subflow
 * packets into their class with `meta priority`. Builders are pure text for `tc -batch -`.
 *
 * The client→proxy direction (uploads) is shaped on an owned IFB, `mpx-ifb<N>`: the interface
 * gets an ingress qdisc whose one filter (preference 0x4d50, our mark of ownership) redirects
 * everything to the IFB, and the IFB gets the same HTB root and classes. nftables never sees
 * packets on an IFB's egress, so there each subflow's packets are classified by a u32 filter on
 * its 4-tuple (the `fw`/`flower` classifiers and skbedit are absent on these kernels; u32's mark
 * match is compiled out).
 */
import { spawn, type ChildProcessWithoutNullStreams } from 'node:child_process';
import { ExecError, ExecErrorCode, execTool, parseJsonOutput, tryExecTool } from './exec';

/** Our qdisc major, "MP" in ASCII: the product's name in the one place a number must do. */
export const TC_MAJOR = 0x4d50;
export const TC_HANDLE = `${TC_MAJOR.toString(16)}:`;

export function classId(minor: number): string {
  return `${TC_MAJOR.toString(16)}:${minor.toString(16)}`;
}

/** HTB's derived quantum (rate/r2q) is "big" at high rates and below the MTU at low ones. */
export function htbQuantum(rateBits: number): number {
  return Math.max(1514, Math.min(200_000, Math.round(rateBits / 8 / 10)));
}

export function buildRootAdd(dev: string): string {
  // "add", not "replace": the kernel itself refuses to replace a non-default root qdisc.
  return `qdisc add dev ${dev} root handle ${TC_HANDLE} htb default 0`;
}

export function buildRootDelete(dev: string): string {
  return `qdisc del dev ${dev} root handle ${TC_HANDLE}`;
}

export function buildClass(op: 'add' | 'change', dev: string, minor: number, rateBits: number, ceilBits: number): string {
  return `class ${op} dev ${dev} parent ${TC_HANDLE} classid ${classId(minor)} htb rate ${rateBits}bit ceil ${ceilBits}bit quantum ${htbQuantum(ceilBits)}`;
}

/**
 * A short leaf queue, bounded in bytes: HTB's default leaf queues txqueuelen (1000) packets,
 * seconds at a low rate, and MPTCP's receiver then waits on that path (head-of-line blocking)
 * instead of the scheduler shifting data to the other path. A packet limit is not enough: with
 * GSO one queued packet can be a 64 KB burst, so 21 "packets" held ~1.3 MB (2 s at 5 Mbit/s).
 * bfifo counts bytes: about 50 ms of the class's ceil, at least 8 full-size frames; its drops
 * are what keep the capped subflow's loss-based congestion control near the cap.
 */
export function leafLimitBytes(ceilBits: number): number {
  return Math.max(8 * 1514, Math.ceil((ceilBits / 8) * 0.05));
}

/**
 * A standby class's leaf (steering modes): a few frames, whatever the rate. Its subflow runs a
 * loss-based congestion control at a low pacing rate, so its GSO packets are 2 segments; a longer
 * queue only delays the data on it, and the whole connection waits for that data (head-of-line).
 */
export const STANDBY_LEAF_BYTES = 3 * 1514;

export function buildLeaf(op: 'add' | 'replace', dev: string, minor: number, ceilBits: number, limitBytes?: number): string {
  return `qdisc ${op} dev ${dev} parent ${classId(minor)} bfifo limit ${limitBytes ?? leafLimitBytes(ceilBits)}`;
}

export function buildClassDelete(dev: string, minor: number): string {
  return `class del dev ${dev} parent ${TC_HANDLE} classid ${classId(minor)}`;
}

/** Preference of every filter the proxy installs: how cleanup knows an ingress qdisc is ours. */
export const TC_FILTER_PREF = 0x4d50;
export const IFB_PREFIX = 'mpx-ifb';
/** u32 filter handles on an IFB: 800::1 .. 800::fff (IPv4), 801::N (IPv6): the root hash tables. */
export const U32_MAX_ITEM = 0xfff;

/** An IFB's HTB root plus its two empty u32 filters, so their hash tables are 800: (IPv4) and 801: (IPv6) whatever comes first. */
export function buildIfbRoot(ifb: string): string[] {
  return [
    buildRootAdd(ifb),
    `filter add dev ${ifb} parent ${TC_HANDLE} pref ${TC_FILTER_PREF} protocol ip u32`,
    `filter add dev ${ifb} parent ${TC_HANDLE} pref ${TC_FILTER_PREF + 1} protocol ipv6 u32`,
  ];
}

export function buildIngressAdd(dev: string): string {
  return `qdisc add dev ${dev} handle ffff: ingress`;
}

export function buildIngressDelete(dev: string): string {
  return `qdisc del dev ${dev} handle ffff: ingress`;
}

export function buildIngressRedirect(dev: string, ifb: string): string {
  return `filter add dev ${dev} parent ffff: pref ${TC_FILTER_PREF} protocol all u32 match u32 0 0 action mirred egress redirect dev ${ifb}`;
}

/** A subflow's packets as they arrive from the client: from `src` to `dst` (its 4-tuple reversed). */
export interface IngressTuple {
  src: string;
  srcPort: number;
  dst: string;
  dstPort: number;
  ipv6: boolean;
}

const u32Handle = (item: number, ipv6: boolean): string => `${ipv6 ? '801' : '800'}::${item.toString(16)}`;

function u32Head(ifb: string, item: number, ipv6: boolean): string {
  return `filter %s dev ${ifb} parent ${TC_HANDLE} pref ${TC_FILTER_PREF + (ipv6 ? 1 : 0)} protocol ${ipv6 ? 'ipv6' : 'ip'} handle ${u32Handle(item, ipv6)} u32`;
}

/** One subflow's upload packets into class `minor` of the IFB's HTB. TCP only; no IPv6 extension headers. */
export function buildU32Add(ifb: string, item: number, t: IngressTuple, minor: number): string {
  const f = t.ipv6 ? 'ip6' : 'ip';
  const len = t.ipv6 ? 128 : 32;
  const m = [`match ${f} protocol 6 0xff`, `match ${f} src ${t.src}/${len}`, `match ${f} dst ${t.dst}/${len}`, `match ${f} sport ${t.srcPort} 0xffff`, `match ${f} dport ${t.dstPort} 0xffff`];
  return `${u32Head(ifb, item, t.ipv6).replace('%s', 'add')} ${m.join(' ')} flowid ${classId(minor)}`;
}

export function buildU32Delete(ifb: string, item: number, ipv6: boolean): string {
  return u32Head(ifb, item, ipv6).replace('%s', 'del');
}

/** Devices with an ingress qdisc (pure over `tc -j qdisc show`). */
export function parseIngressDevs(json: unknown): string[] {
  if (!Array.isArray(json)) return [];
  return json
    .filter((q): q is { dev: string; kind: string } => typeof q === 'object' && q !== null && q.kind === 'ingress' && typeof q.dev === 'string')
    .map((q) => q.dev);
}

/** Filter preferences from `tc -j filter show dev X ingress` (pure). */
export function parseFilterPrefs(json: unknown): number[] {
  if (!Array.isArray(json)) return [];
  const prefs = json.map((f) => (f as { pref?: unknown } | null)?.pref).filter((p): p is number => typeof p === 'number');
  return [...new Set(prefs)];
}

/** An ingress qdisc is ours when it carries our redirect filter: the proxy only adds it to ingress qdiscs it created. */
export async function listOwnedIngress(): Promise<string[]> {
  const argv = ['tc', '-j', 'qdisc', 'show'];
  const devs = parseIngressDevs(parseJsonOutput(argv, (await execTool(argv)).stdout));
  const out: string[] = [];
  for (const dev of devs) {
    const fa = ['tc', '-j', 'filter', 'show', 'dev', dev, 'ingress'];
    const r = await tryExecTool(fa);
    if (r instanceof ExecError) continue;
    if (parseFilterPrefs(parseJsonOutput(fa, r.stdout)).includes(TC_FILTER_PREF)) out.push(dev);
  }
  return out;
}

const TC_ARGV = ['tc', '-force', '-batch', '-'] as const;
type Refable = { ref?: () => void; unref?: () => void };
const SESSION_TIMEOUT_MS = 10_000;

/**
 * One long-lived `tc -force -batch -` reading commands from a pipe: a change costs a netlink
 * round trip instead of a process spawn (5-15 ms on a busy 2-core host, and Node's fork blocks
 * the event loop meanwhile). tc 6.1 has no per-command acknowledgement, so each batch ends with
 * a sentinel that must fail (`qdisc show dev mpx/sync<N>`: no interface name can hold '/'); its
 * "Command failed -:LINE" on stderr, which is unbuffered, says every line before it has run.
 * With -force tc goes on after a failed line, which it reports the same way with its line number.
 */
class TcSession {
  private child: ChildProcessWithoutNullStreams | null = null;
  private line = 0;
  private seq = 0;
  private stderr = '';
  private waiter: { sentinelLine: number; first: number; resolve: () => void; reject: (e: Error) => void } | null = null;
  private chain: Promise<void> = Promise.resolve();

  run(lines: readonly string[]): Promise<void> {
    const next = this.chain.then(() => this.send(lines));
    this.chain = next.catch(() => undefined);
    return next;
  }

  /**
   * End the running tc after the batches before this call; the next batch starts a fresh one.
   * tc resolves an interface name once and keeps its index: after a link is deleted and made
   * again under the same name (an IFB after a crash-restart), the old tc would name a device
   * that no longer exists ("No such device"), half-building the shaping.
   */
  restart(): Promise<void> {
    const next = this.chain.then(() => {
      this.child?.stdin.end();
      this.child = null;
    });
    this.chain = next;
    return next;
  }

  private start(): ChildProcessWithoutNullStreams {
    const child = spawn(TC_ARGV[0], TC_ARGV.slice(1), { stdio: ['pipe', 'pipe', 'pipe'] });
    this.line = 0;
    this.stderr = '';
    child.stdout.resume();
    child.stderr.on('data', (d: Buffer) => {
      this.stderr += d.toString();
      this.check();
    });
    const gone = (e: ExecError): void => {
      if (this.child === child) this.child = null;
      this.waiter?.reject(e);
      this.waiter = null;
    };
    child.on('error', (e: NodeJS.ErrnoException) => gone(new ExecError(e.code === 'ENOENT' ? ExecErrorCode.NotFound : ExecErrorCode.Spawn, TC_ARGV, e.message, null)));
    child.on('exit', (code) => gone(new ExecError(ExecErrorCode.Failed, TC_ARGV, `exited: ${this.stderr.slice(-500)}`, code)));
    child.stdin.on('error', () => undefined);
    // Idle, tc must not keep the proxy alive (it ends with the proxy: EOF on its stdin); while
    // a batch waits for its answer it must (see hold).
    for (const s of [child.stdin, child.stdout] as unknown as Refable[]) s.unref?.();
    this.hold(child, false);
    this.child = child;
    return child;
  }

  private hold(child: ChildProcessWithoutNullStreams, on: boolean): void {
    for (const h of [child, child.stderr] as unknown as Refable[]) (on ? h.ref : h.unref)?.call(h);
  }

  private check(): void {
    const w = this.waiter;
    if (!w) return;
    const failed = [...this.stderr.matchAll(/Command failed -:(\d+)/g)].map((m) => Number(m[1]));
    if (!failed.includes(w.sentinelLine)) return;
    const text = this.stderr;
    this.stderr = '';
    this.waiter = null;
    const bad = failed.filter((l) => l >= w.first && l < w.sentinelLine);
    if (bad.length === 0) w.resolve();
    else w.reject(new ExecError(ExecErrorCode.Failed, TC_ARGV, text.split('\n').filter((l) => !l.includes('mpx/sync') && l !== `Command failed -:${w.sentinelLine}`).join('\n'), 1));
  }

  private send(lines: readonly string[]): Promise<void> {
    const child = this.child ?? this.start();
    const first = this.line + 1;
    this.line += lines.length + 1;
    const sentinel = `qdisc show dev mpx/sync${++this.seq}`;
    return new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.waiter = null;
        this.child = null;
        child.kill('SIGKILL');
        reject(new ExecError(ExecErrorCode.Timeout, TC_ARGV, this.stderr, null));
      }, SESSION_TIMEOUT_MS);
      timer.unref();
      this.hold(child, true);
      const done = (f: () => void) => (): void => {
        clearTimeout(timer);
        this.hold(child, false);
        f();
      };
      this.waiter = { sentinelLine: this.line, first, resolve: done(resolve), reject: (e) => done(() => reject(e))() };
      child.stdin.write([...lines, sentinel].join('\n') + '\n');
    });
  }
}

const session = new TcSession();

/** After deleting a link: later batches must not use tc's cached index of its name (see TcSession.restart). */
export function forgetLinks(): Promise<void> {
  return session.restart();
}

/** Run tc lines in order through the session; an ExecError naming the failed lines if any failed. */
export async function tcBatch(lines: readonly string[]): Promise<void> {
  if (lines.length === 0) return;
  if (lines.some((l) => l.includes('\n'))) throw new TypeError('tc batch lines must be single lines');
  await session.run(lines);
}

export interface RootQdisc {
  dev: string;
  kind: string;
  handle: string;
}

/** "ours" = our HTB; "default" = the kernel's (handle 0:), ours to replace; "foreign" = an operator's. */
export type RootOwner = 'ours' | 'default' | 'foreign';

export function rootOwner(q: RootQdisc | undefined): RootOwner {
  if (!q || q.handle === '0:') return 'default';
  return q.handle === TC_HANDLE && q.kind === 'htb' ? 'ours' : 'foreign';
}

/** Parse `tc -j qdisc show [dev DEV]` into root qdiscs (pure). With `dev DEV`, tc omits "dev". */
export function parseRootQdiscs(json: unknown, dev?: string): RootQdisc[] {
  if (!Array.isArray(json)) return [];
  return json
    .filter((q): q is { dev?: unknown; kind: unknown; handle: unknown; root: true } => typeof q === 'object' && q !== null && q.root === true)
    .map((q) => ({ dev: typeof q.dev === 'string' ? q.dev : (dev ?? ''), kind: String(q.kind), handle: String(q.handle) }))
    .filter((q) => q.dev !== '');
}

/** The kinds of the qdiscs in `tc -j qdisc show dev X` output (pure). */
function qdiscKinds(json: unknown): unknown[] {
  return Array.isArray(json) ? json.map((q) => (q as { kind?: unknown } | null)?.kind) : [];
}

/** Does dev have an ingress (or clsact) qdisc? */
export async function hasIngress(dev: string): Promise<boolean> {
  const argv = ['tc', '-j', 'qdisc', 'show', 'dev', dev];
  const r = await execTool(argv);
  return qdiscKinds(parseJsonOutput(argv, r.stdout)).some((k) => k === 'ingress' || k === 'clsact');
}

/** Root qdiscs of one interface, or of all when dev is omitted. */
export async function listRootQdiscs(dev?: string): Promise<RootQdisc[]> {
  const argv = ['tc', '-j', 'qdisc', 'show', ...(dev ? ['dev', dev] : [])];
  const r = await execTool(argv);
  return parseRootQdiscs(parseJsonOutput(argv, r.stdout), dev);
}

/** Delete our root on dev if it is ours; restores the kernel's default qdisc. */
export async function removeOwnedRoot(dev: string): Promise<boolean> {
  const roots = await tryExecTool(['tc', '-j', 'qdisc', 'show', 'dev', dev]);
  if (roots instanceof ExecError) return false; // interface gone: nothing of ours left on it
  const root = parseRootQdiscs(parseJsonOutput(['tc'], roots.stdout), dev)[0];
  if (rootOwner(root) !== 'ours') return false;
  await tcBatch([buildRootDelete(dev)]);
  return true;
}

/**
 * Delete dev's ingress qdisc (with its filters). For the owner of kernel state, which knows from
 * its journal that the proxy added it, even when the redirect filter that marks it as ours never
 * got there. False when there is none or the interface is gone.
 */
export async function removeIngress(dev: string): Promise<boolean> {
  const argv = ['tc', '-j', 'qdisc', 'show', 'dev', dev];
  const r = await tryExecTool(argv);
  if (r instanceof ExecError) return false;
  if (!qdiscKinds(parseJsonOutput(argv, r.stdout)).includes('ingress')) return false;
  await tcBatch([buildIngressDelete(dev)]);
  return true;
}
