/**
 * The steering engine: turns the operator's policies into per-subflow kernel state as subflows
 * come and go (registry events), keeps uplinks' health and moves subflows off a failed uplink
 * (fast recovery) and back (failback), and manages the proxy's MPTCP endpoints and limits.
 *
 * Kernel state, all owned and named (see src/sys/{nft,tc,iproute}.ts), installed through the one
 * owner of kernel state (src/kstate), which journals it and removes it at stop or after a crash:
 * - nft table `inet mptcp_proxy`: subflow 4-tuple → HTB class (`meta priority`) and → routing mark;
 * - HTB root 4d50: on each interface a rate policy shapes (only over the kernel's default qdisc),
 *   one class per subflow or per `share`; uploads on an owned IFB with u32 filters (shaper.ts);
 * - per uplink: `ip rule fwmark` → its own table with its default route;
 * - MPTCP signal endpoints for uplink source addresses, backup flags, raised subflow limit;
 * - for download caps on `client` ranges: a route copy with `congctl lock cubic` (congestion.ts:
 *   under BBR a capped subflow misleads MPTCP's scheduler and the whole transfer collapses).
 *
 * Reaction time (subflow up → under its policy) is kept off process spawns: roots, IFBs, shared
 * classes and spare per-subflow classes are made at start for the interfaces the policies can
 * reach, the interface comes from the registry (no route lookup), and the map element goes in
 * through libnftables. Changes for one event are one nftables transaction plus, only when
 * something must be created, one `tc -batch`, run side by side; events are applied in order
 * through one queue, so the installed state is always what was last applied.
 */
import { EventEmitter } from 'node:events';
import type client from 'prom-client';
import { unmapIPv6 } from '../core/address';
import { interfaceOf } from '../core/subflow-id';
import type { ClientView } from '../core/connection';
import net from 'node:net';
import type { PolicyConfig, ShapeDirection, SteeringConfig, UplinkConfig } from '../config/steering';
import type { KernelState } from '../kstate/kernel-state';
import type { Logger } from '../log/logger';
import { steeringMetrics, type SteeringMetrics } from '../metrics/metrics';
import type { MptcpConnectionRecord, Subflow, SubflowOf, SubflowRegistry } from '../registry/registry';
import { NFT_TABLE, buildElementScript, buildTableScript, nftApply, type FourTuple, type NftElementOp } from '../sys/nft';
import { STANDBY_LEAF_BYTES, classId, tcBatch } from '../sys/tc';
import { routeDevice, slotMark } from '../sys/iproute';
import { parseCidr } from '../core/address';
import { CongestionRoutes } from './congestion';
import { UplinkHealth, type ProbeFn, type UplinkState } from './health';
import { PathManager } from './paths';
import { compilePolicies, firstMatch, type CompiledPolicy, type SubflowSubject } from './policy';
import { Shaper, type ClassWant } from './shaper';
import { EndpointBackup, type BackupMarker } from './backup';
import { ModeControl } from './mode-control';

/** How often the steering modes measure their paths and decide (ms). */
export const MODE_TICK_MS = 200;

interface ClassPlan extends ClassWant {
  direction: ShapeDirection;
}

interface Plan {
  policy: string | null;
  cls: ClassPlan | null;
  mark: number | null;
}

interface Installed extends Plan {
  tuple: FourTuple;
  minor: number | null;
  /** u32 item of the upload filter on the class's IFB. */
  upItem: number | null;
}

const uplinkInterfaces = (c: SteeringConfig): Map<string, string> => new Map(c.uplinks.map((u) => [u.name, u.interface]));
const hasModes = (c: SteeringConfig): boolean => c.policies.some((p) => p.mode);

export interface SteeringEngineOptions {
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

function subjectOf(s: Subflow, client: ClientView | null): SubflowSubject {
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
  private readonly shaper: Shaper;
  private readonly routeCache = new Map<string, { dev: string | null; at: number }>();
  private readonly health: UplinkHealth;
  private readonly paths: PathManager;
  private readonly congestion: CongestionRoutes;
  private queue: Promise<void> = Promise.resolve();
  private running = false;
  private readonly detach: (() => void)[] = [];
  private readonly m: SteeringMetrics | null;
  private readonly modes = new ModeControl();
  private readonly endpointMarker: BackupMarker = new EndpointBackup((addrs) => this.paths.setModeBackup(addrs, this.uplinks));
  private backupMarker: BackupMarker;
  /** Subflows the backup marker marked; standby subflows outside it get the standby cap. */
  private backupMarked: ReadonlySet<string> = new Set();
  private standbyKeys = '';
  private modeTimer: NodeJS.Timeout | null = null;
  /** Reads every open connection's kernel counters into the registry (the connection plane's sampleAll). */
  private sampler: (() => void | Promise<void>) | null = null;

  constructor(
    private config: SteeringConfig,
    private readonly registry: SubflowRegistry,
    private readonly log: Logger,
    private readonly kstate: KernelState,
    opts: SteeringEngineOptions = {},
  ) {
    super();
    this.policies = compilePolicies(config.policies, uplinkInterfaces(config));
    this.health = new UplinkHealth(opts.probe);
    this.paths = new PathManager(log, kstate);
    this.shaper = new Shaper(log, kstate);
    this.congestion = new CongestionRoutes(log, kstate);
    this.m = opts.metrics ? steeringMetrics(opts.metrics) : null;
    this.backupMarker = this.endpointMarker;
  }

  /** The steering modes' measurements: how to read the open connections' kernel counters. */
  measureWith(sampler: () => void | Promise<void>): void {
    this.sampler = sampler;
  }

  /** Per-subflow backup (the userspace path manager's) instead of the per-endpoint marker; null puts that back. */
  useBackupMarker(marker: BackupMarker | null): void {
    this.backupMarker = marker ?? this.endpointMarker;
    this.standbyKeys = '';
  }

  /** The path a mode policy has active for a connection (status, tests). */
  activePath(token: string, policy: string): string | null {
    return this.modes.activePath(token, policy);
  }

  /** The constructor under the lifecycle's name (provision → start → reload → stop), as in src/app.ts. */
  static provision(config: SteeringConfig, registry: SubflowRegistry, log: Logger, kstate: KernelState, opts?: SteeringEngineOptions): SteeringEngine {
    return new SteeringEngine(config, registry, log, kstate, opts);
  }

  get active(): boolean {
    return this.config.policies.length > 0 || this.config.uplinks.length > 0;
  }

  /** Install the table and paths, steer subflows already up (a crashed run's leftovers are gone: KernelState.adopt). */
  async start(): Promise<void> {
    if (this.running) return;
    this.running = true;
    await this.enqueue(async () => {
      if (!this.active) return;
      await this.installTable();
      await this.provisionUplinks();
      await this.congestion.apply(this.config.policies);
      await this.warm();
    });
    const onUp = (s: Subflow, c: MptcpConnectionRecord): void => this.onSubflowUp(s, c);
    // A path that lost its subflow may be the active one: the mode decides again at once.
    const onDown = (s: Subflow, c: MptcpConnectionRecord): void =>
      void this.enqueue(async () => {
        await this.apply([[s, EMPTY]]);
        await this.applyModes(this.decideModes([c]));
      });
    const onClosed = (c: MptcpConnectionRecord): void => this.modes.forget(c);
    this.registry.on('subflow-up', onUp);
    this.registry.on('subflow-down', onDown);
    this.registry.on('connection-closed', onClosed);
    this.detach.push(() => this.registry.off('subflow-up', onUp), () => this.registry.off('subflow-down', onDown), () => this.registry.off('connection-closed', onClosed));
    this.scheduleModes();
    const onHealth = (name: string, state: UplinkState): void => this.onUplinkChange(name, state);
    this.health.on('change', onHealth);
    this.detach.push(() => this.health.off('change', onHealth));
    const onClient = (rec: MptcpConnectionRecord): void => void this.enqueue(() => this.reconcile([...rec.subflows.values()].map((s) => [s, rec] as const)));
    this.registry.on('client-changed', onClient);
    this.detach.push(() => this.registry.off('client-changed', onClient));
    await this.enqueue(() => this.reconcile(this.registry.activeSubflows()));
  }

  /** SIGHUP: new policies and uplinks; subflows already up are re-evaluated at once. */
  async reload(next: SteeringConfig): Promise<void> {
    if (!this.running) {
      // Never started (no policies or uplinks until now): start with the new config.
      this.config = next;
      this.policies = compilePolicies(next.policies, uplinkInterfaces(next));
      if (this.active) await this.start();
      return;
    }
    await this.enqueue(async () => {
      const uplinksChanged = JSON.stringify(next.uplinks) !== JSON.stringify(this.config.uplinks);
      const wasActive = this.active;
      this.config = next;
      this.policies = compilePolicies(next.policies, uplinkInterfaces(next));
      this.scheduleModes();
      if (!wasActive && this.active) await this.installTable();
      if (uplinksChanged) {
        await this.teardownUplinks();
        await this.provisionUplinks();
      } else await this.paths.applyBackupPolicies(next.policies, this.uplinks);
      await this.congestion.apply(next.policies);
      await this.reconcile([...this.decideModes(this.registry.connections.values()), ...this.registry.activeSubflows()]);
      // After reconcile, so classes still in use are re-rated in place rather than pruned.
      await this.shaper.prune();
      await this.warm();
      this.log.info('steering reloaded', { policies: next.policies.map((p) => p.name), uplinks: next.uplinks.map((u) => u.name) });
    });
  }

  /**
   * Stop reacting (SIGTERM, SIGINT, fatal error): after this no change reaches the kernel, and
   * the owner of kernel state removes what was installed. Never throws.
   */
  async stop(): Promise<void> {
    if (!this.running) return;
    this.running = false;
    if (this.modeTimer) clearInterval(this.modeTimer);
    this.modeTimer = null;
    for (const d of this.detach.splice(0)) d();
    this.health.stop();
    await this.enqueue(async () => {
      await this.shaper.teardown();
      this.installed.clear();
    });
  }

  private installTable(): Promise<void> {
    return this.kstate.install({ kind: 'nft-table', table: NFT_TABLE }, () => nftApply(buildTableScript()));
  }

  /** What is installed for one subflow now (status, tests). */
  stateOf(s: Subflow): { policy: string | null; classid: string | null; mark: number | null } | null {
    const i = this.installed.get(s.key);
    return i ? { policy: i.policy, classid: i.minor === null ? null : classId(i.minor), mark: i.mark } : null;
  }

  uplinkState(name: string): UplinkState {
    return this.health.state(name);
  }

  private enqueue(fn: () => Promise<unknown>): Promise<void> {
    const next = this.queue.then(async () => void (await fn())).catch((e: unknown) => {
      this.m?.failures.inc();
      this.log.error('steering: kernel change failed', { error: (e as Error).message });
    });
    this.queue = next;
    return next;
  }

  private onSubflowUp(s: Subflow, c: MptcpConnectionRecord): void {
    if (!this.active) return;
    const t0 = process.hrtime.bigint();
    void this.enqueue(async () => {
      // A mode decides for the whole connection: the new subflow's path may be the standby.
      const others = this.decideModes([c]).filter(([o]) => o !== s);
      const inst = await this.applyModes([[s, c], ...others]);
      const ms = Number(process.hrtime.bigint() - t0) / 1e6;
      this.m?.apply.observe(ms / 1e3);
      // The reaction time the bench reads: registry event → kernel state in place.
      if (inst.length > 0) this.log.debug('subflow steered', { subflow: s.key, ...this.stateOf(s), reactionMs: Math.round(ms * 1000) / 1000 });
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
      this.decideModes(this.registry.connections.values());
      await this.applyModes(this.registry.activeSubflows());
    });
  }

  /** The modes' clock: measure (sample the open connections), decide, apply what changed. */
  private scheduleModes(): void {
    if (this.modeTimer) clearInterval(this.modeTimer);
    this.modeTimer = null;
    if (!this.running || !hasModes(this.config)) return;
    let busy = false;
    this.modeTimer = setInterval(() => {
      if (busy) return;
      busy = true;
      void Promise.resolve(this.sampler?.())
        .catch((e: unknown) => this.log.warn('steering modes: sampling failed', { error: (e as Error).message }))
        .then(() =>
          this.enqueue(async () => {
            const changed = this.decideModes(this.registry.connections.values());
            if (changed.length > 0) await this.applyModes(changed);
          }),
        )
        .finally(() => (busy = false));
    }, MODE_TICK_MS);
    this.modeTimer.unref();
  }

  /** Decide the modes again for these connections; the subflows whose want changed (to reconcile). */
  private decideModes(conns: Iterable<MptcpConnectionRecord>): SubflowOf[] {
    if (!hasModes(this.config)) return [];
    const now = Date.now();
    const out: SubflowOf[] = [];
    const match = (s: Subflow, rec: MptcpConnectionRecord): { policy: CompiledPolicy; subject: SubflowSubject } | null => {
      const subject = subjectOf(s, rec.client);
      const policy = firstMatch(this.policies, subject);
      return policy ? { policy, subject } : null;
    };
    const pathUp = (p: { uplink?: string }): boolean => !p.uplink || this.health.state(p.uplink) === 'up';
    for (const rec of conns) {
      const changed = this.modes.update(rec, (s) => match(s, rec), pathUp, now);
      for (const s of changed) {
        const w = this.modes.want(s);
        this.log.debug('steering mode: subflow', { subflow: s.key, policy: w?.policy ?? null, path: w?.path ?? null, standby: w?.action.standby ?? false, probe: w?.action.probe ?? false, rateBps: w?.action.rateBps ?? null });
        out.push([s, rec]);
      }
    }
    return out;
  }

  /**
   * Carry out the modes' wants: backup flags, then the subflows' classes. A probe must not run
   * free for a moment, so a subflow starting one gets its standby cap before it leaves backup;
   * one ending it is back in backup (updateBackup) before the cap goes.
   */
  private async applyModes(subflows: readonly SubflowOf[]): Promise<Subflow[]> {
    await this.reconcile(subflows.filter(([s]) => this.modes.want(s)?.action.probe));
    await this.updateBackup();
    return this.reconcile(subflows);
  }

  /** Ask the backup marker for the standby subflows (but those probing), when that set changed. */
  private async updateBackup(): Promise<void> {
    const established = this.registry.activeSubflows().map(([s]) => s);
    const want = new Set(
      established
        .filter((s) => {
          const a = this.modes.want(s)?.action;
          return a?.standby && !a.probe;
        })
        .map((s) => s.key),
    );
    const key = [...want].sort().join(',');
    if (key === this.standbyKeys) return;
    this.standbyKeys = key;
    this.backupMarked = await this.backupMarker.apply(want, established);
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

  private async plan(s: Subflow, rec: MptcpConnectionRecord): Promise<Plan> {
    const p: PolicyConfig | undefined = firstMatch(this.policies, subjectOf(s, rec.client))?.config;
    if (p?.mode) return this.modePlan(s, p);
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
    const cls = wantsRate && dev ? { dev, key: p!.share ? `share:${p!.share}` : `sf:${s.key}`, rate: p!.rate!, ceil: p!.ceil ?? p!.rate!, direction: p!.direction ?? 'both' } : null;
    return { policy: p?.name ?? null, cls, mark };
  }

  /**
   * A mode's want for the subflow as a class: the standby cap (unless marked backup, but always
   * while probing) or a load-balance cap. A standby that is in backup runs uncapped: what the old
   * active path still has queued (megabytes under BBR) drains at the path's speed, not the cap's.
   */
  private async modePlan(s: Subflow, p: PolicyConfig): Promise<Plan> {
    const w = this.modes.want(s);
    const capStandby = w?.action.standby && (w.action.probe || !this.backupMarked.has(s.key));
    const rate = w?.action.rateBps ?? (capStandby ? p.mode!.standbyRate : null);
    const dev = rate === null ? null : (s.interface ?? (await this.egressDevice(tupleOf(s))));
    const leaf = w?.action.standby ? { leaf: STANDBY_LEAF_BYTES } : {};
    return { policy: p.name, cls: rate !== null && dev ? { dev, key: `sf:${s.key}`, rate, ceil: rate, ...leaf, direction: 'both' } : null, mark: null };
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

  /** Apply each subflow's plan; returns the subflows now under some kernel state. */
  private async reconcile(subflows: readonly SubflowOf[]): Promise<Subflow[]> {
    const items: [Subflow, Plan][] = [];
    for (const [s, rec] of subflows) items.push([s, s.state === 'established' ? await this.plan(s, rec) : EMPTY]);
    return this.apply(items);
  }

  /** Move each subflow from what is installed to its plan: one nft transaction, tc only to create. */
  private async apply(items: readonly [Subflow, Plan][]): Promise<Subflow[]> {
    const tcAdd: string[] = [];
    const tcDel: string[] = [];
    const nft: NftElementOp[] = [];
    const done: [Subflow, Installed | null][] = [];
    for (const [s, want] of items) {
      const old = this.installed.get(s.key);
      const tuple = old?.tuple ?? tupleOf(s);
      const v6 = net.isIPv6(tuple.localAddr);
      const same = !!(old?.cls && want.cls && old.cls.dev === want.cls.dev && old.cls.key === want.cls.key && old.cls.direction === want.cls.direction);
      if (old?.cls && old.minor !== null && !same) {
        if (old.cls.direction !== 'upload') nft.push({ op: 'delete', map: 'class', tuple });
        if (old.upItem !== null) this.shaper.filterDelete(old.cls.dev, old.upItem, v6, tcDel);
        this.shaper.release(old.cls, tcDel);
      }
      let minor: number | null = same ? old!.minor : null;
      let upItem: number | null = same ? old!.upItem : null;
      if (want.cls && (await this.shaper.prepare(want.cls.dev, want.cls.direction !== 'download'))) {
        minor = this.shaper.acquire(want.cls, !same, tcAdd);
        if (!same && want.cls.direction !== 'upload') nft.push({ op: 'add', map: 'class', tuple, value: classId(minor) });
        if (!same && want.cls.direction !== 'download') {
          const from = { src: tuple.remoteAddr, srcPort: tuple.remotePort, dst: tuple.localAddr, dstPort: tuple.localPort, ipv6: v6 };
          upItem = this.shaper.filterAdd(want.cls.dev, from, minor, tcAdd);
        }
      } else if (!same) {
        minor = null;
        upItem = null;
      }
      if ((old?.mark ?? null) !== want.mark) {
        if (old?.mark != null) nft.push({ op: 'delete', map: 'mark', tuple });
        if (want.mark !== null) nft.push({ op: 'add', map: 'mark', tuple, value: want.mark });
      }
      if (old?.policy) this.m?.steered.dec({ policy: old.policy });
      if (want.policy) this.m?.steered.inc({ policy: want.policy });
      const inst: Installed | null = want.policy || want.mark !== null ? { ...want, cls: minor === null ? null : want.cls, tuple, minor, upItem } : null;
      done.push([s, inst]);
    }
    // Side by side: a map element naming a class tc has not made yet only sends packets
    // unshaped through HTB's direct queue for those few milliseconds.
    await Promise.all([tcBatch(tcAdd), nftApply(buildElementScript(nft))]);
    await tcBatch(tcDel);
    const at = process.hrtime.bigint();
    const steered: Subflow[] = [];
    for (const [s, inst] of done) {
      if (inst) this.installed.set(s.key, inst);
      else this.installed.delete(s.key);
      if (!inst) continue;
      this.emit('applied', s, { policy: inst.policy, classid: inst.minor === null ? null : classId(inst.minor), mark: inst.mark }, at);
      if (inst.cls || inst.mark !== null) steered.push(s);
    }
    return steered;
  }

  /** Interfaces a rate policy can reach, known before any subflow: named, by uplink, or by the client/local range. */
  private async policyDevices(p: PolicyConfig): Promise<string[]> {
    if (p.match.interface) return [p.match.interface];
    if (p.uplink) return this.uplinks.filter((u) => u.cfg.name === p.uplink).map((u) => u.cfg.interface);
    const devs = new Set<string>();
    if (p.match.client) {
      const { address, prefix } = parseCidr(p.match.client);
      // "Any client" says nothing about the interface: leave it to the first subflow.
      const dev = prefix === 0 ? null : (interfaceOf(address) ?? (await routeDevice(address).catch(() => null)));
      if (dev) devs.add(dev);
    }
    if (p.match.local) {
      const { address } = parseCidr(p.match.local);
      const dev = interfaceOf(address);
      if (dev) devs.add(dev);
    }
    return [...devs];
  }

  /** Roots, IFBs, shared classes and spare classes for the interfaces the policies can reach. */
  private async warm(): Promise<void> {
    const byDev = new Map<string, { upload: boolean; rates: { share?: string; rate: number; ceil: number; leaf?: number }[] }>();
    for (const p of this.config.policies) {
      if (p.rate === undefined) continue;
      for (const dev of await this.policyDevices(p)) {
        const e = byDev.get(dev) ?? { upload: false, rates: [] };
        e.upload ||= p.direction !== 'download';
        e.rates.push({ ...(p.share ? { share: p.share } : {}), rate: p.rate, ceil: p.ceil ?? p.rate });
        byDev.set(dev, e);
      }
    }
    for (const p of this.config.policies) {
      if (!p.mode) continue;
      // The standby cap: its classes ready before the first join, so no path runs free meanwhile.
      for (const path of p.mode.paths) {
        for (const dev of await this.policyDevices({ name: p.name, match: { ...(path.client ? { client: path.client } : {}), ...(path.local ? { local: path.local } : {}), ...(path.interface ? { interface: path.interface } : {}) }, ...(path.uplink ? { uplink: path.uplink } : {}) })) {
          const e = byDev.get(dev) ?? { upload: false, rates: [] };
          e.upload = true;
          e.rates.push({ rate: p.mode.standbyRate, ceil: p.mode.standbyRate, leaf: STANDBY_LEAF_BYTES });
          byDev.set(dev, e);
        }
      }
    }
    for (const [dev, e] of byDev) await this.shaper.warm(dev, e.upload, e.rates);
  }
}
