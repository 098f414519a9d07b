/**
 * The steering engine: turns the operator's policies into per-subflow kernel state as subflows
 * come and go (registry events), keeps uplinks' health and moves subflows off a failed uplink
 * (fast recovery) and back (failback), and manages the proxy's MPTCP endpoints and limits.
 *
 * Kernel state, all owned and named (see src/sys/{nft,tc,iproute}.ts):
 * - nft table `inet mptcp_proxy`: subflow 4-tuple → HTB class (`meta priority`) and → routing mark;
 * - HTB root 4d50: on each interface a rate policy shapes (only over the kernel's default qdisc),
 *   one class per subflow or per `share`;
 * - per uplink: `ip rule fwmark` → its own table with its default route;
 * - MPTCP signal endpoints for uplink source addresses, backup flags, raised subflow limit.
 *
 * Every change for one event is one `tc -batch` and one `nft -f` transaction; events are
 * applied in order through one queue, so the installed state is always what was last applied.
 */
import { EventEmitter } from 'node:events';
import type client from 'prom-client';
import { Counter, Gauge, Histogram } from 'prom-client';
import { unmapIPv6 } from '../core/address';
import type { ClientConnection } from '../core/connection';
import type { ProxyEvents } from '../core/events';
import type { PolicyConfig, SteeringConfig, UplinkConfig } from '../config/steering';
import type { Logger } from '../log/logger';
import type { MptcpConnectionRecord, Subflow, SubflowRegistry } from '../registry/registry';
import { buildElementScript, buildTableScript, nftApply, type FourTuple, type NftElementOp } from '../sys/nft';
import { buildClass, buildClassDelete, buildLeaf, buildRootAdd, classId, listRootQdiscs, rootOwner, tcBatch } from '../sys/tc';
import { routeDevice, slotMark } from '../sys/iproute';
import { cleanupOwnedState } from './cleanup';
import { UplinkHealth, type ProbeFn, type UplinkState } from './health';
import { PathManager } from './paths';
import { compilePolicies, firstMatch, type CompiledPolicy, type SubflowSubject } from './policy';

interface ClassWant {
  dev: string;
  /** "share:NAME" or "sf:<subflow key>": subflows with the same key on one dev share a class. */
  key: string;
  rate: number;
  ceil: number;
}

interface Plan {
  policy: string | null;
  cls: ClassWant | null;
  mark: number | null;
}

interface Installed extends Plan {
  tuple: FourTuple;
  minor: number | null;
}

interface HtbClass {
  minor: number;
  rate: number;
  ceil: number;
  refs: number;
}

export interface SteeringEngineOptions {
  /** Re-evaluate a connection's subflows when its user/destination become known. */
  events?: ProxyEvents;
  /** Register the engine's metrics here (the proxy's prom-client registry). */
  metrics?: client.Registry;
  /** Uplink probe; the TCP connect probe by default (tests inject their own). */
  probe?: ProbeFn;
}

export interface SteeringEngineEvents {
  /** A subflow's state was applied; `at` is process.hrtime.bigint() after the kernel took it. */
  applied: [subflow: Subflow, plan: { policy: string | null; classid: string | null; mark: number | null }, at: bigint];
  'uplink-change': [name: string, state: UplinkState];
}

const ROUTE_CACHE_MS = 30_000;
const EMPTY: Plan = { policy: null, cls: null, mark: null };

function tupleOf(s: Subflow): FourTuple {
  return { localAddr: unmapIPv6(s.local.host), localPort: s.local.port, remoteAddr: unmapIPv6(s.remote.host), remotePort: s.remote.port };
}

function subjectOf(s: Subflow, client: ClientConnection | null): SubflowSubject {
  return {
    client: unmapIPv6(s.remote.host),
    local: unmapIPv6(s.local.host),
    interface: s.interface,
    kind: s.kind,
    destinationHost: client?.destination?.host ?? null,
    destinationAddress: client?.upstreamAddress ?? null,
    user: client?.user ?? null,
    listener: client?.listener ?? null,
  };
}

export class SteeringEngine extends EventEmitter<SteeringEngineEvents> {
  private policies: CompiledPolicy[];
  private uplinks: { cfg: UplinkConfig; slot: number }[] = [];
  private readonly installed = new Map<string, Installed>();
  private readonly classes = new Map<string, HtbClass>();
  private readonly roots = new Map<string, 'ours' | 'foreign'>();
  private readonly routeCache = new Map<string, { dev: string | null; at: number }>();
  private readonly health: UplinkHealth;
  private readonly paths: PathManager;
  private queue: Promise<void> = Promise.resolve();
  private running = false;
  private readonly detach: (() => void)[] = [];
  private readonly m: {
    uplinkUp: Gauge<'uplink'>;
    uplinkChanges: Counter<'uplink' | 'state'>;
    steered: Gauge<'policy'>;
    apply: Histogram;
    failures: Counter;
  } | null;

  constructor(
    private config: SteeringConfig,
    private readonly registry: SubflowRegistry,
    private readonly log: Logger,
    private readonly opts: SteeringEngineOptions = {},
  ) {
    super();
    this.policies = compilePolicies(config.policies);
    this.health = new UplinkHealth(opts.probe);
    this.paths = new PathManager(log);
    const r = opts.metrics ? [opts.metrics] : null;
    this.m = r && {
      uplinkUp: new Gauge({ name: 'mptcp_proxy_uplink_up', help: 'Uplink health from its probes (1 up, 0 down)', labelNames: ['uplink'] as const, registers: r }),
      uplinkChanges: new Counter({ name: 'mptcp_proxy_uplink_changes_total', help: 'Uplink state changes (failover and failback)', labelNames: ['uplink', 'state'] as const, registers: r }),
      steered: new Gauge({ name: 'mptcp_proxy_steered_subflows', help: 'Subflows under a steering policy now', labelNames: ['policy'] as const, registers: r }),
      apply: new Histogram({ name: 'mptcp_proxy_steering_apply_seconds', help: 'Subflow event to kernel state applied', buckets: [0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 1], registers: r }),
      failures: new Counter({ name: 'mptcp_proxy_steering_failures_total', help: 'Kernel changes the steering engine could not apply', registers: r }),
    };
  }

  /** The brief's lifecycle name for the constructor. */
  static provision(config: SteeringConfig, registry: SubflowRegistry, log: Logger, opts?: SteeringEngineOptions): SteeringEngine {
    return new SteeringEngine(config, registry, log, opts);
  }

  get active(): boolean {
    return this.config.policies.length > 0 || this.config.uplinks.length > 0;
  }

  /** Remove a crashed run's leftovers, install the table and paths, steer subflows already up. */
  async start(): Promise<void> {
    if (this.running) return;
    this.running = true;
    await this.enqueue(async () => {
      const removed = await cleanupOwnedState(this.log);
      if (removed.length > 0) this.log.warn('steering: removed state left by an earlier run', { removed });
      if (!this.active) return;
      await nftApply(buildTableScript());
      await this.provisionUplinks();
    });
    const onUp = (s: Subflow, c: MptcpConnectionRecord): void => this.onSubflowUp(s, c);
    const onDown = (s: Subflow): void => void this.enqueue(() => this.apply([[s, EMPTY]]));
    this.registry.on('subflow-up', onUp);
    this.registry.on('subflow-down', onDown);
    this.detach.push(() => this.registry.off('subflow-up', onUp), () => this.registry.off('subflow-down', onDown));
    const onHealth = (name: string, state: UplinkState): void => this.onUplinkChange(name, state);
    this.health.on('change', onHealth);
    this.detach.push(() => this.health.off('change', onHealth));
    if (this.opts.events) {
      const ev = this.opts.events;
      const onUpstream = (conn: ClientConnection): void => {
        for (const rec of this.registry.connections.values()) if (rec.client === conn) void this.enqueue(() => this.reconcile([...rec.subflows.values()]));
      };
      ev.on('upstream-connected', onUpstream);
      this.detach.push(() => ev.off('upstream-connected', onUpstream));
    }
    await this.enqueue(() => this.reconcile(this.registry.activeSubflows()));
  }

  /** SIGHUP: new policies and uplinks; subflows already up are re-evaluated at once. */
  async reload(next: SteeringConfig): Promise<void> {
    await this.enqueue(async () => {
      const uplinksChanged = JSON.stringify(next.uplinks) !== JSON.stringify(this.config.uplinks);
      const wasActive = this.active;
      this.config = next;
      this.policies = compilePolicies(next.policies);
      if (!wasActive && this.active) await nftApply(buildTableScript());
      if (uplinksChanged) {
        await this.teardownUplinks();
        await this.provisionUplinks();
      } else await this.paths.applyBackupPolicies(next.policies, this.uplinks);
      await this.reconcile(this.registry.activeSubflows());
      this.log.info('steering reloaded', { policies: next.policies.map((p) => p.name), uplinks: next.uplinks.map((u) => u.name) });
    });
  }

  /** Remove everything installed (SIGTERM, SIGINT, fatal error). Never throws. */
  async stop(): Promise<void> {
    if (!this.running) return;
    this.running = false;
    for (const d of this.detach.splice(0)) d();
    this.health.stop();
    await this.enqueue(async () => {
      await this.paths.restore();
      const removed = await cleanupOwnedState(this.log);
      this.installed.clear();
      this.classes.clear();
      this.roots.clear();
      this.log.info('steering stopped, kernel state removed', { removed });
    });
  }

  /** What is installed for one subflow now (status, tests). */
  stateOf(s: Subflow): { policy: string | null; classid: string | null; mark: number | null } | null {
    const i = this.installed.get(s.key);
    return i ? { policy: i.policy, classid: i.minor === null ? null : classId(i.minor), mark: i.mark } : null;
  }

  uplinkState(name: string): UplinkState {
    return this.health.state(name);
  }

  private enqueue(fn: () => Promise<void>): Promise<void> {
    const next = this.queue.then(fn).catch((e: unknown) => {
      this.m?.failures.inc();
      this.log.error('steering: kernel change failed', { error: (e as Error).message });
    });
    this.queue = next;
    return next;
  }

  private onSubflowUp(s: Subflow, _c: MptcpConnectionRecord): void {
    if (!this.active) return;
    const t0 = process.hrtime.bigint();
    void this.enqueue(async () => {
      await this.reconcile([s]);
      this.m?.apply.observe(Number(process.hrtime.bigint() - t0) / 1e9);
    });
  }

  private onUplinkChange(name: string, state: UplinkState): void {
    this.log.warn(state === 'down' ? 'uplink down: moving its subflows' : 'uplink up: moving subflows back', { uplink: name });
    this.m?.uplinkUp.set({ uplink: name }, state === 'up' ? 1 : 0);
    this.m?.uplinkChanges.inc({ uplink: name, state });
    this.emit('uplink-change', name, state);
    void this.enqueue(async () => {
      // Backup only when there is nowhere healthy to move the subflows to.
      const anyHealthy = this.uplinks.some((u) => this.health.state(u.cfg.name) === 'up');
      await this.paths.setUplinkBackup(this.uplinks, (n) => !anyHealthy && this.health.state(n) === 'down');
      await this.reconcile(this.registry.activeSubflows());
    });
  }

  private async provisionUplinks(): Promise<void> {
    this.uplinks = this.config.uplinks.map((cfg, slot) => ({ cfg, slot }));
    await this.paths.provision(this.uplinks, this.config.policies);
    for (const u of this.uplinks) {
      this.m?.uplinkUp.set({ uplink: u.cfg.name }, 1);
      if (u.cfg.probe) this.health.watch(u.cfg.name, u.cfg.probe, slotMark(u.slot));
    }
  }

  private async teardownUplinks(): Promise<void> {
    this.health.stop();
    await this.paths.teardown(this.uplinks);
    this.uplinks = [];
  }

  /** The uplink a subflow should leave by: its own if up, else the first healthy one. */
  private effectiveUplink(u: { cfg: UplinkConfig; slot: number }): { cfg: UplinkConfig; slot: number } {
    if (this.health.state(u.cfg.name) === 'up') return u;
    return this.uplinks.find((o) => this.health.state(o.cfg.name) === 'up') ?? u;
  }

  private async plan(s: Subflow): Promise<Plan> {
    const rec = this.registry.connections.get(s.token);
    const p: PolicyConfig | undefined = firstMatch(this.policies, subjectOf(s, rec?.client ?? null))?.config;
    const wantsRate = p?.rate !== undefined;
    if (!wantsRate && !p?.uplink && this.uplinks.length === 0) return p ? { ...EMPTY, policy: p.name } : EMPTY;
    const tuple = tupleOf(s);
    const natural = s.interface ?? (await this.egressDevice(tuple));
    const chosen = p?.uplink ? this.uplinks.find((u) => u.cfg.name === p.uplink) : this.uplinks.find((u) => u.cfg.interface === natural);
    let dev = natural;
    let mark: number | null = null;
    if (chosen) {
      const eff = this.effectiveUplink(chosen);
      // A policy's uplink is always marked; a natural one only when it has to be left.
      if (p?.uplink || eff !== chosen) {
        mark = slotMark(eff.slot);
        dev = eff.cfg.interface;
      }
    }
    const cls = wantsRate && dev ? { dev, key: p!.share ? `share:${p!.share}` : `sf:${s.key}`, rate: p!.rate!, ceil: p!.ceil ?? p!.rate! } : null;
    return { policy: p?.name ?? null, cls, mark };
  }

  /** Kernel route lookup, cached briefly: a client's joins and reconnects come in bursts. */
  private async egressDevice(t: FourTuple): Promise<string | null> {
    const k = `${t.localAddr}|${t.remoteAddr}`;
    const hit = this.routeCache.get(k);
    if (hit && hit.at > Date.now() - ROUTE_CACHE_MS) return hit.dev;
    const dev = await routeDevice(t.remoteAddr, t.localAddr).catch(() => null);
    this.routeCache.set(k, { dev, at: Date.now() });
    if (this.routeCache.size > 4096) this.routeCache.delete(this.routeCache.keys().next().value!);
    return dev;
  }

  private async reconcile(subflows: readonly Subflow[]): Promise<void> {
    const items: [Subflow, Plan][] = [];
    for (const s of subflows) items.push([s, s.state === 'established' ? await this.plan(s) : EMPTY]);
    await this.apply(items);
  }

  /** Move each subflow from what is installed to its plan, in one tc batch and one nft transaction. */
  private async apply(items: readonly [Subflow, Plan][]): Promise<void> {
    const tcAdd: string[] = [];
    const tcDel: string[] = [];
    const nft: NftElementOp[] = [];
    const done: [Subflow, Installed | null][] = [];
    for (const [s, want] of items) {
      const old = this.installed.get(s.key);
      const tuple = old?.tuple ?? tupleOf(s);
      const same = !!(old?.cls && want.cls && old.cls.dev === want.cls.dev && old.cls.key === want.cls.key);
      if (old?.cls && old.minor !== null && !same) {
        nft.push({ op: 'delete', map: 'class', tuple });
        this.release(old.cls, tcDel);
      }
      let minor: number | null = same ? old!.minor : null;
      if (want.cls && (await this.ensureRoot(want.cls.dev, tcAdd))) {
        minor = this.acquire(want.cls, !same, tcAdd);
        if (!same) nft.push({ op: 'add', map: 'class', tuple, value: classId(minor) });
      } else if (!same) minor = null;
      if ((old?.mark ?? null) !== want.mark) {
        if (old?.mark != null) nft.push({ op: 'delete', map: 'mark', tuple });
        if (want.mark !== null) nft.push({ op: 'add', map: 'mark', tuple, value: want.mark });
      }
      if (old?.policy) this.m?.steered.dec({ policy: old.policy });
      if (want.policy) this.m?.steered.inc({ policy: want.policy });
      const inst: Installed | null = want.policy || want.mark !== null ? { ...want, cls: minor === null ? null : want.cls, tuple, minor } : null;
      done.push([s, inst]);
    }
    await tcBatch(tcAdd);
    await nftApply(buildElementScript(nft));
    await tcBatch(tcDel);
    const at = process.hrtime.bigint();
    for (const [s, inst] of done) {
      if (inst) this.installed.set(s.key, inst);
      else this.installed.delete(s.key);
      if (inst) this.emit('applied', s, { policy: inst.policy, classid: inst.minor === null ? null : classId(inst.minor), mark: inst.mark }, at);
      if (inst && (inst.cls || inst.mark !== null)) this.log.debug('subflow steered', { subflow: s.key, policy: inst.policy, classid: inst.minor === null ? null : classId(inst.minor), mark: inst.mark });
    }
  }

  /** Our HTB root on dev, added over the kernel's default; an operator's root is reported once. */
  private async ensureRoot(dev: string, tcAdd: string[]): Promise<boolean> {
    const known = this.roots.get(dev);
    if (known) return known === 'ours';
    const owner = rootOwner((await listRootQdiscs(dev))[0]);
    if (owner === 'foreign') {
      this.roots.set(dev, 'foreign');
      this.log.error('steering: interface has its own root qdisc; rate policies are not applied there', { interface: dev });
      return false;
    }
    if (owner === 'default') tcAdd.push(buildRootAdd(dev));
    this.roots.set(dev, 'ours');
    return true;
  }

  private acquire(want: ClassWant, addRef: boolean, tcAdd: string[]): number {
    const k = `${want.dev}|${want.key}`;
    let c = this.classes.get(k);
    if (!c) {
      const used = new Set([...this.classes.entries()].filter(([key]) => key.startsWith(`${want.dev}|`)).map(([, v]) => v.minor));
      let minor = 1;
      while (used.has(minor)) minor++;
      c = { minor, rate: want.rate, ceil: want.ceil, refs: 0 };
      this.classes.set(k, c);
      tcAdd.push(buildClass('add', want.dev, minor, want.rate, want.ceil), buildLeaf('add', want.dev, minor, want.ceil));
    } else if (c.rate !== want.rate || c.ceil !== want.ceil) {
      // SIGHUP with a new rate: change the class in place; the subflow keeps its place.
      c.rate = want.rate;
      c.ceil = want.ceil;
      tcAdd.push(buildClass('change', want.dev, c.minor, want.rate, want.ceil), buildLeaf('replace', want.dev, c.minor, want.ceil));
    }
    if (addRef) c.refs++;
    return c.minor;
  }

  private release(cls: ClassWant, tcDel: string[]): void {
    const k = `${cls.dev}|${cls.key}`;
    const c = this.classes.get(k);
    if (!c || --c.refs > 0) return;
    this.classes.delete(k);
    tcDel.push(buildClassDelete(cls.dev, c.minor));
  }
}
