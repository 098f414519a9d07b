/**
 * tc (HTB) for the steering engine. The proxy owns the root qdisc with handle 4d50: ("MP") on
 * each interface it shapes, and only when that interface had the kernel's default root qdisc
 * (handle 0:): an operator's own qdisc is reported, never replaced. The root has no default
 * class, so unclassified traffic goes out HTB's direct queue unshaped; nftables puts subflow
 * packets into their class with `meta priority`. Builders are pure text for `tc -batch -`.
 */
import { ExecError, execTool, parseJsonOutput, tryExecTool } from './exec';

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
 * A short leaf queue: HTB's default leaf queues txqueuelen (1000) packets, seconds at a low
 * rate, and MPTCP's receiver then waits on that path (head-of-line blocking) instead of letting
 * the scheduler shift data to the other path. About 50 ms of the class's ceil, at least 8 packets.
 */
export function leafLimit(ceilBits: number): number {
  return Math.max(8, Math.ceil((ceilBits / 8) * 0.05 / 1514));
}

export function buildLeaf(op: 'add' | 'replace', dev: string, minor: number, ceilBits: number): string {
  return `qdisc ${op} dev ${dev} parent ${classId(minor)} pfifo limit ${leafLimit(ceilBits)}`;
}

export function buildClassDelete(dev: string, minor: number): string {
  return `class del dev ${dev} parent ${TC_HANDLE} classid ${classId(minor)}`;
}

export async function tcBatch(lines: readonly string[]): Promise<void> {
  if (lines.length === 0) return;
  await execTool(['tc', '-batch', '-'], { input: lines.join('\n') + '\n' });
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
