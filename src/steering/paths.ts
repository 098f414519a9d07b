/**
 * Path management from the uplinks config: per-uplink policy routing (fwmark → table), the
 * proxy's MPTCP signal endpoints (so clients learn its other addresses) and the subflow limit
 * sized to path diversity (seeds 000/001: subflows = proxy paths × client paths; the limit counts
 * the additional ones).
 *
 * Backup (MP_PRIO) goes through endpoint flags: with the in-kernel path manager the kernel only
 * changes backup per local address (`ip mptcp endpoint change id N backup` sends MP_PRIO on every
 * subflow from that address); per-subflow MPTCP_PM_CMD_SET_FLAGS needs the userspace path
 * manager, which would take announcements and joins away from the kernel for the whole
 * namespace. So `backup: true` is a policy on a proxy address, and fast recovery marks a failed
 * uplink's address backup only when no healthy uplink is left to move its subflows to.
 */
import net from 'node:net';
import type { PolicyConfig, UplinkConfig } from '../config/steering';
import type { KernelItem, KernelState } from '../kstate/kernel-state';
import type { Logger } from '../log/logger';
import { ANNOUNCE_ENDPOINT_ID, OWN_ENDPOINT_BASE, buildEndpointAdd, buildEndpointBackup, buildLimits, buildUplinkRouting, getLimits, ipBatch, isOwnedEndpointId, listEndpoints, slotTable } from '../sys/iproute';

/** Client path count assumed when sizing the limit (a phone: Wi-Fi + cellular). */
export const ASSUMED_CLIENT_PATHS = 2;
/** The kernel's hard cap on subflows per connection (MPTCP_PM_ADDR_MAX). */
const KERNEL_MAX_SUBFLOWS = 8;
const UPLINK_ENDPOINT_BASE = OWN_ENDPOINT_BASE + 32;

type Slotted = { cfg: UplinkConfig; slot: number };

interface OwnedEndpoint {
  address: string;
  backup: boolean;
}

export function desiredSubflowLimit(proxyPaths: number, clientPaths = ASSUMED_CLIENT_PATHS): number {
  return Math.min(KERNEL_MAX_SUBFLOWS, Math.max(1, proxyPaths) * clientPaths - 1);
}

const bareAddress = (cidr: string): string => cidr.split('/')[0]!;
const uplinkV6 = (u: Slotted): boolean => net.isIPv6(u.cfg.gateway ?? u.cfg.source ?? '');
const uplinkSlot = (u: Slotted): KernelItem => ({ kind: 'route-slot', table: slotTable(u.slot), v6: uplinkV6(u) });
const endpointItem = (id: number, address: string): KernelItem => ({ kind: 'endpoint', id, address });

export class PathManager {
  private readonly endpoints = new Map<number, OwnedEndpoint>();
  private policyBackup = new Set<string>();
  private failoverBackup = new Set<string>();
  /** Addresses the steering modes want backup (backup.ts EndpointBackup). */
  private modeBackup = new Set<string>();
  /**
   * Addresses the modes ever marked, while the config has modes: their endpoints stay (flag
   * cleared) when no longer wanted backup, because deleting an endpoint makes the in-kernel path
   * manager close every subflow from its address: the path a mode switches back to would lose
   * its subflow at that moment (seen: smallest-delay's return to path 1 left only the capped standby).
   */
  private modeAddresses = new Set<string>();
  private modesOn = false;

  constructor(
    private readonly log: Logger,
    private readonly kstate: KernelState,
  ) {}

  async provision(uplinks: readonly Slotted[], policies: readonly PolicyConfig[]): Promise<void> {
    for (const u of uplinks) {
      try {
        await this.kstate.install(uplinkSlot(u), () => ipBatch(buildUplinkRouting({ slot: u.slot, dev: u.cfg.interface, gateway: u.cfg.gateway, source: u.cfg.source, ipv6: uplinkV6(u) })));
      } catch (e) {
        this.log.error('steering: uplink routing not installed', { uplink: u.cfg.name, error: (e as Error).message });
      }
    }
    const foreign = new Map((await listEndpoints()).filter((e) => !isOwnedEndpointId(e.id)).map((e) => [e.address, e.id]));
    for (const u of uplinks) {
      if (!u.cfg.signal || !u.cfg.source) continue;
      if (foreign.has(u.cfg.source)) {
        this.log.warn('steering: address already has an endpoint not owned by the proxy; left as it is', { uplink: u.cfg.name, address: u.cfg.source, id: foreign.get(u.cfg.source) });
        continue;
      }
      await this.addEndpoint(UPLINK_ENDPOINT_BASE + u.slot, u.cfg.source, ['signal'], u.cfg.interface);
    }
    await this.applyBackupPolicies(policies, uplinks, foreign);
    const proxyPaths = uplinks.filter((u) => u.cfg.source).length;
    const cur = await getLimits();
    const want = desiredSubflowLimit(proxyPaths);
    if (cur && cur.subflows < want) {
      // The owner keeps the limits found before the first raise, and puts them back.
      await this.kstate.install({ kind: 'mptcp-limits', original: cur }, () => ipBatch([buildLimits({ ...cur, subflows: want })]));
      this.log.info('steering: MPTCP subflow limit raised', { from: cur.subflows, to: want });
    }
  }

  /** `backup: true` policies: owned endpoints with the backup flag for those addresses. */
  async applyBackupPolicies(policies: readonly PolicyConfig[], uplinks: readonly Slotted[], foreign?: Map<string, number>): Promise<void> {
    this.policyBackup = new Set(policies.filter((p) => p.backup && p.match.local).map((p) => bareAddress(p.match.local!)));
    this.modesOn = policies.some((p) => p.mode);
    if (!this.modesOn) this.modeAddresses.clear();
    await this.ensureEndpoints(this.policyBackup, foreign);
    await this.syncBackupFlags(uplinks);
  }

  /** The steering modes' backup addresses; returns those now marked (not those with a foreign endpoint). */
  async setModeBackup(addrs: ReadonlySet<string>, uplinks: readonly Slotted[]): Promise<ReadonlySet<string>> {
    this.modeBackup = new Set(addrs);
    if (this.modesOn) for (const a of addrs) this.modeAddresses.add(a);
    await this.ensureEndpoints(this.modeBackup);
    await this.syncBackupFlags(uplinks);
    return new Set([...this.endpoints.values()].filter((e) => e.backup && this.modeBackup.has(e.address)).map((e) => e.address));
  }

  /** Owned endpoints, with no signal/subflow flag, for addresses that must carry a backup flag. */
  private async ensureEndpoints(addrs: ReadonlySet<string>, foreign?: Map<string, number>): Promise<void> {
    const missing = [...addrs].filter((a) => ![...this.endpoints.values()].some((e) => e.address === a));
    if (missing.length === 0) return;
    const others = foreign ?? new Map((await listEndpoints()).filter((e) => !isOwnedEndpointId(e.id)).map((e) => [e.address, e.id]));
    let next = OWN_ENDPOINT_BASE;
    for (const addr of missing) {
      if (others.has(addr)) {
        this.log.warn('steering: backup address has an endpoint not owned by the proxy; left as it is', { address: addr });
        continue;
      }
      while (this.endpoints.has(next)) next++;
      if (next >= ANNOUNCE_ENDPOINT_ID) break;
      await this.addEndpoint(next, addr, [], undefined);
    }
  }

  /** Fast recovery's last resort: mark the addresses of failed uplinks backup (MP_PRIO). */
  async setUplinkBackup(uplinks: readonly Slotted[], down: (name: string) => boolean): Promise<void> {
    this.failoverBackup = new Set(uplinks.filter((u) => u.cfg.source && down(u.cfg.name)).map((u) => u.cfg.source!));
    await this.syncBackupFlags(uplinks);
  }

  private async syncBackupFlags(uplinks: readonly Slotted[]): Promise<void> {
    const lines: string[] = [];
    const gone: KernelItem[] = [];
    const uplinkAddrs = new Set(uplinks.map((u) => u.cfg.source));
    for (const [id, e] of this.endpoints) {
      const want = this.policyBackup.has(e.address) || this.failoverBackup.has(e.address) || this.modeBackup.has(e.address);
      const backupOnly = !uplinkAddrs.has(e.address) && id < UPLINK_ENDPOINT_BASE;
      if (backupOnly && !this.policyBackup.has(e.address) && !this.modeBackup.has(e.address) && !this.modeAddresses.has(e.address)) {
        gone.push(endpointItem(id, e.address));
        this.endpoints.delete(id);
        continue;
      }
      if (want !== e.backup) {
        lines.push(buildEndpointBackup(id, want));
        e.backup = want;
      }
    }
    await this.kstate.removeInstalled(gone);
    await ipBatch(lines);
  }

  private async addEndpoint(id: number, address: string, flags: ('signal' | 'backup')[], dev: string | undefined): Promise<void> {
    // A mode's address is added unflagged and then changed: only a change sends MP_PRIO on the subflows already up.
    const backup = this.policyBackup.has(address) || (flags.length === 0 && !this.modeBackup.has(address));
    try {
      await this.kstate.install(endpointItem(id, address), () => ipBatch([buildEndpointAdd(id, address, backup ? [...flags, 'backup'] : flags, dev)]));
      this.endpoints.set(id, { address, backup });
    } catch (e) {
      this.log.error('steering: MPTCP endpoint not added', { address, id, error: (e as Error).message });
    }
  }

  /** A reload with other uplinks: their endpoints and routing go (the limits stay raised until stop). */
  async teardown(uplinks: readonly Slotted[]): Promise<void> {
    const items = [...[...this.endpoints].map(([id, e]) => endpointItem(id, e.address)), ...uplinks.map(uplinkSlot)];
    this.endpoints.clear();
    this.modeAddresses.clear();
    await this.kstate.removeInstalled(items);
  }
}
