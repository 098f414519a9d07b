/**
 * The HTB side of steering: per interface, our root (over the kernel's default qdisc only), and
 * for shaped uploads an owned IFB with the same root and the same class minors; classes per
 * subflow or per share; u32 filters that put a subflow's upload packets into its class on the IFB.
 *
 * Reaction time is the point of the spare pool: a per-subflow class (HTB class + bfifo leaf
 * bounded in bytes, on the interface and its IFB) is created ahead of use, so a new subflow only
 * needs its nftables map element, which is ~0.1 ms, instead of a `tc` process (5-10 ms) on the
 * critical path. A taken spare is replaced in the background; a released class goes back to the pool.
 *
 * acquire/release/filter* are synchronous and only append `tc -batch` lines: the caller runs
 * them in one batch with its nftables transaction. prepare/warm/prune reach the kernel themselves.
 */
import type { KernelState } from '../kstate/kernel-state';
import type { Logger } from '../log/logger';
import { buildIfbAdd, ipBatch } from '../sys/iproute';
import {
  IFB_PREFIX,
  U32_MAX_ITEM,
  buildClass,
  buildClassDelete,
  buildIfbRoot,
  buildIngressAdd,
  buildIngressRedirect,
  buildLeaf,
  buildRootAdd,
  buildU32Add,
  buildU32Delete,
  hasIngress,
  listRootQdiscs,
  rootOwner,
  tcBatch,
  type IngressTuple,
} from '../sys/tc';

/** Spare per-subflow classes kept ready per interface and rate. */
export const SPARES = 2;
/** Released classes kept beyond that are deleted. */
const SPARES_MAX = 4;
/** HTB minors are 16 bits; 0 is the root. */
const MAX_MINOR = 0xffff;

export interface ClassWant {
  dev: string;
  /** "share:NAME" or "sf:<subflow key>": subflows with the same key on one dev share a class. */
  key: string;
  rate: number;
  ceil: number;
  /** The leaf queue's limit in bytes, when not the default for the ceil (sys/tc.ts leafLimitBytes). */
  leaf?: number;
}

interface HtbClass {
  minor: number;
  rate: number;
  ceil: number;
  leaf?: number;
  refs: number;
}

type Rates = Pick<ClassWant, 'rate' | 'ceil' | 'leaf'>;

interface DevState {
  ifb: string | null;
  /** Classes in use or kept (shares), by ClassWant.key. */
  classes: Map<string, HtbClass>;
  /** Ready, unused per-subflow classes, by rateKey. */
  spares: Map<string, HtbClass[]>;
  /** Every minor taken on this dev (in use, spare, or being created). */
  minors: Set<number>;
  /** u32 items in use on the IFB. */
  items: Set<number>;
}

const rateKey = (r: Rates): string => `${r.rate}/${r.ceil}/${r.leaf ?? ''}`;

function lowestFree(used: Set<number>, max: number): number | null {
  for (let i = 1; i <= max; i++) if (!used.has(i)) return i;
  return null;
}

export class Shaper {
  private readonly devs = new Map<string, DevState | 'foreign'>();
  private readonly refills = new Set<Promise<void>>();

  constructor(
    private readonly log: Logger,
    private readonly kstate: KernelState,
  ) {}

  /** Our root on dev (and its IFB when `upload`); null where an operator's qdisc is in the way. */
  async prepare(dev: string, upload: boolean): Promise<DevState | null> {
    let st = this.devs.get(dev);
    if (st === 'foreign') return null;
    if (!st) {
      const owner = rootOwner((await listRootQdiscs(dev))[0]);
      if (owner === 'foreign') {
        this.devs.set(dev, 'foreign');
        this.log.error('steering: interface has its own root qdisc; rate policies are not applied there', { interface: dev });
        return null;
      }
      if (owner === 'default') await this.kstate.install({ kind: 'root-qdisc', dev }, () => tcBatch([buildRootAdd(dev)]));
      st = { ifb: null, classes: new Map(), spares: new Map(), minors: new Set(), items: new Set() };
      this.devs.set(dev, st);
    }
    if (upload && st.ifb === null) await this.addIfb(dev, st);
    return st;
  }

  /**
   * Uploads: an owned IFB with our root and every class the dev has, then the dev's ingress
   * redirected to it (last, so no packet meets a half-built IFB). An operator's ingress qdisc
   * is reported and left alone; downloads are still shaped.
   */
  private async addIfb(dev: string, st: DevState): Promise<void> {
    if (await hasIngress(dev)) {
      st.ifb = null;
      this.log.error('steering: interface has its own ingress qdisc; uploads are not shaped there', { interface: dev });
      return;
    }
    const taken = new Set([...this.devs.values()].flatMap((d) => (d !== 'foreign' && d.ifb ? [Number(d.ifb.slice(IFB_PREFIX.length))] : [])));
    let n = 0;
    while (taken.has(n)) n++;
    const ifb = `${IFB_PREFIX}${n}`;
    await this.kstate.install({ kind: 'ifb', name: ifb }, () => ipBatch(buildIfbAdd(ifb)));
    const all = [...st.classes.values(), ...[...st.spares.values()].flat()];
    await this.kstate.install({ kind: 'root-qdisc', dev: ifb }, () => tcBatch([...buildIfbRoot(ifb), ...all.flatMap((c) => classLines('add', ifb, c))]));
    await this.kstate.install({ kind: 'ingress', dev }, () => tcBatch([buildIngressAdd(dev), buildIngressRedirect(dev, ifb)]));
    st.ifb = ifb;
  }

  /** Create what the first subflows will need: spares for per-subflow rates, the shared classes. */
  async warm(dev: string, upload: boolean, rates: readonly (Rates & { share?: string })[]): Promise<void> {
    const st = await this.prepare(dev, upload);
    if (!st) return;
    const lines: string[] = [];
    const made: [string, HtbClass][] = [];
    for (const r of rates) {
      if (r.share) this.acquire({ dev, key: `share:${r.share}`, rate: r.rate, ceil: r.ceil }, false, lines);
      else {
        const k = rateKey(r);
        const have = (st.spares.get(k)?.length ?? 0) + made.filter(([mk]) => mk === k).length;
        for (let i = have; i < SPARES; i++) {
          const c = this.newSpare(st, dev, r, lines);
          if (c) made.push([k, c]);
        }
      }
    }
    await tcBatch(lines);
    for (const [k, c] of made) st.spares.set(k, [...(st.spares.get(k) ?? []), c]);
  }

  /**
   * The class for `want`, appending tc lines when it must be created or re-rated; a per-subflow
   * class comes from the spare pool when one is ready (no tc at all). `addRef` counts a new user.
   */
  acquire(want: ClassWant, addRef: boolean, lines: string[]): number {
    const st = this.state(want.dev);
    let c = st.classes.get(want.key);
    if (!c) {
      const spare = want.key.startsWith('sf:') ? st.spares.get(rateKey(want))?.pop() : undefined;
      if (spare) {
        c = spare;
        this.refill(want.dev, want);
      } else {
        const minor = lowestFree(st.minors, MAX_MINOR);
        if (minor === null) throw new Error(`steering: no free HTB class on ${want.dev}`);
        st.minors.add(minor);
        c = { minor, rate: want.rate, ceil: want.ceil, ...(want.leaf ? { leaf: want.leaf } : {}), refs: 0 };
        lines.push(...this.devLines('add', want.dev, st, c));
      }
      st.classes.set(want.key, c);
    } else if (c.rate !== want.rate || c.ceil !== want.ceil || c.leaf !== want.leaf) {
      // SIGHUP with a new rate, or a mode's new cap: change the class in place; its subflows keep their place.
      c.rate = want.rate;
      c.ceil = want.ceil;
      c.leaf = want.leaf;
      lines.push(...this.devLines('change', want.dev, st, c));
    }
    if (addRef) c.refs++;
    return c.minor;
  }

  /** One user fewer; an unused per-subflow class goes back to the pool (or away when it is full). */
  release(want: ClassWant, lines: string[]): void {
    const st = this.devs.get(want.dev);
    if (!st || st === 'foreign') return;
    const c = st.classes.get(want.key);
    if (!c || --c.refs > 0 || want.key.startsWith('share:')) return;
    st.classes.delete(want.key);
    const pool = st.spares.get(rateKey(c)) ?? [];
    if (pool.length < SPARES_MAX) {
      pool.push(c);
      st.spares.set(rateKey(c), pool);
      return;
    }
    lines.push(...this.deleteLines(want.dev, st, c));
  }

  /** The u32 filter for one subflow's upload packets on dev's IFB; its item, or null without an IFB. */
  filterAdd(dev: string, t: IngressTuple, minor: number, lines: string[]): number | null {
    const st = this.state(dev);
    if (!st.ifb) return null;
    const item = lowestFree(st.items, U32_MAX_ITEM);
    if (item === null) {
      this.log.warn('steering: upload filter table full; subflow uploads not shaped', { interface: dev });
      return null;
    }
    st.items.add(item);
    lines.push(buildU32Add(st.ifb, item, t, minor));
    return item;
  }

  filterDelete(dev: string, item: number, ipv6: boolean, lines: string[]): void {
    const st = this.devs.get(dev);
    if (!st || st === 'foreign' || !st.ifb || !st.items.delete(item)) return;
    lines.push(buildU32Delete(st.ifb, item, ipv6));
  }

  /** After a reload: drop spares and unused shared classes; warm() then makes what the new policies need. */
  async prune(): Promise<void> {
    await this.settle();
    const lines: string[] = [];
    for (const [dev, st] of this.devs) {
      if (st === 'foreign') continue;
      for (const pool of st.spares.values()) for (const c of pool) lines.push(...this.deleteLines(dev, st, c));
      st.spares.clear();
      for (const [k, c] of st.classes) {
        if (c.refs > 0) continue;
        st.classes.delete(k);
        lines.push(...this.deleteLines(dev, st, c));
      }
    }
    await tcBatch(lines);
  }

  /** Stop: no refill lands after this; the owner of kernel state removes roots, redirects and IFBs. */
  async teardown(): Promise<void> {
    await this.settle();
    this.devs.clear();
  }

  /** Wait for background refills (before tearing down, so none lands after). */
  async settle(): Promise<void> {
    while (this.refills.size > 0) await Promise.all([...this.refills]);
  }

  private state(dev: string): DevState {
    const st = this.devs.get(dev);
    if (!st || st === 'foreign') throw new Error(`steering: ${dev} is not prepared`);
    return st;
  }

  private newSpare(st: DevState, dev: string, r: Rates, lines: string[]): HtbClass | null {
    const minor = lowestFree(st.minors, MAX_MINOR);
    if (minor === null) return null;
    st.minors.add(minor);
    const c: HtbClass = { minor, rate: r.rate, ceil: r.ceil, ...(r.leaf ? { leaf: r.leaf } : {}), refs: 0 };
    lines.push(...this.devLines('add', dev, st, c));
    return c;
  }

  /** Replace a taken spare off the critical path; the new one joins the pool once tc made it. */
  private refill(dev: string, r: Rates): void {
    const st = this.state(dev);
    const lines: string[] = [];
    const c = this.newSpare(st, dev, r, lines);
    if (!c) return;
    const p = tcBatch(lines)
      .then(
        () => {
          if (this.devs.get(dev) !== st) return;
          const k = rateKey(r);
          st.spares.set(k, [...(st.spares.get(k) ?? []), c]);
        },
        (e: Error) => {
          st.minors.delete(c.minor);
          this.log.debug('steering: spare class not created', { interface: dev, error: e.message });
        },
      )
      .finally(() => this.refills.delete(p));
    this.refills.add(p);
  }

  private devLines(op: 'add' | 'change', dev: string, st: DevState, c: HtbClass): string[] {
    return [...classLines(op, dev, c), ...(st.ifb ? classLines(op, st.ifb, c) : [])];
  }

  private deleteLines(dev: string, st: DevState, c: HtbClass): string[] {
    st.minors.delete(c.minor);
    return [buildClassDelete(dev, c.minor), ...(st.ifb ? [buildClassDelete(st.ifb, c.minor)] : [])];
  }
}

function classLines(op: 'add' | 'change', dev: string, c: HtbClass): string[] {
  return [buildClass(op, dev, c.minor, c.rate, c.ceil), buildLeaf(op === 'add' ? 'add' : 'replace', dev, c.minor, c.ceil, c.leaf)];
}
