/**
 * Loss-based congestion control for the subflows a download cap shapes.
 *
 * Why (measured, docs/steering.md "capped-transfer gap"): under BBR one capped subflow drags the
 * whole transfer down to 13–25 Mbit/s on two 50 Mbit/s paths. BBR's bandwidth is the largest
 * delivery-rate sample of the last ~10 round trips; behind the proxy's own HTB class a packet
 * that finds tokens leaves at once and is acked one path RTT later, so single samples read
 * 0.5–15 Gbit/s on a 5 Mbit/s class. MPTCP's default scheduler sends on the subflow with the
 * least queued bytes per pacing rate, so it loads megabytes onto the capped subflow, which
 * drain at the cap while the other path idles with the connection's send buffer full. Cubic
 * (reno where cubic is missing) paces at about cwnd/srtt, which the class's bounded leaf queue
 * keeps near the cap: the same transfer then runs at 50 Mbit/s.
 *
 * Per subflow, the kernel-side lever short of BPF is the route a passive subflow is created
 * with: `congctl lock` on it sets the subflow's congestion control (MP_JOIN subflows included),
 * and `lock` stops MPTCP's socket-option sync from putting the default back. So for each policy
 * that caps downloads of `client` CIDRs, an owned table holds a copy of the kernel's route to the
 * CIDR with `congctl lock`, and an owned rule sends lookups for it there (only where one route
 * covers the whole range: never shadow a more specific route). This reaches subflows
 * created after the policy is in place; the policy's other match keys cannot be seen at route
 * lookup, so every new subflow to that CIDR gets it.
 */
import net from 'node:net';
import { ipv6ToBytes, parseCidr } from '../core/address';
import type { PolicyConfig } from '../config/steering';
import type { KernelItem, KernelState } from '../kstate/kernel-state';
import type { Logger } from '../log/logger';
import { ipBatch, routeGet, routesWithin, slotTable, type RouteHop } from '../sys/iproute';
import { readSysctl } from '../sys/sysctl';

/** The owned slot after the 32 uplink slots: rule priority and table id 0x4d71. */
export const CC_SLOT = 32;
export const CC_TABLE = slotTable(CC_SLOT);

export interface CcRoute {
  /** Network address / prefix, host bits cleared. */
  cidr: string;
  hop: RouteHop;
  ipv6: boolean;
}

/** "10.20.1.7/24" → "10.20.1.0/24" (ip route refuses host bits); IPv6 in full form. */
export function networkOf(cidr: string): string {
  const { address, prefix, family } = parseCidr(cidr);
  const bytes = family === 'ipv4' ? Buffer.from(address.split('.').map(Number)) : ipv6ToBytes(address);
  for (let i = 0; i < bytes.length; i++) {
    const keep = Math.max(0, Math.min(8, prefix - i * 8));
    bytes[i] = bytes[i]! & ((0xff << (8 - keep)) & 0xff);
  }
  const text = family === 'ipv4' ? [...bytes].join('.') : Array.from({ length: 8 }, (_, i) => bytes.readUInt16BE(i * 2).toString(16)).join(':');
  return `${text}/${prefix}`;
}

/** Client CIDRs whose subflows a policy caps in the download direction ("any client" left out). */
export function cappedClientCidrs(policies: readonly PolicyConfig[]): string[] {
  const out = new Set<string>();
  for (const p of policies) {
    if (p.rate === undefined || p.direction === 'upload' || !p.match.client) continue;
    if (parseCidr(p.match.client).prefix === 0) continue;
    out.add(networkOf(p.match.client));
  }
  // A mode caps its other paths (standby shares); its first path keeps the default: cubic there
  // fills the path's queue, and a failover then waits out a retransmission timeout grown with it
  // (measured: 1.5-2.8 s). Load-balance puts every path on loss-based control: with BBR on the
  // free path the kernel's scheduler sometimes parked megabytes on it (its pacing estimate far
  // above the path's rate) and starved the capped path, 91-94 % instead of 75 % in 5 of 66 runs.
  for (const p of policies) {
    const m = p.mode;
    if (!m) continue;
    const free = m.name === 'load-balance' ? undefined : m.paths[0];
    for (const path of m.paths) if (path !== free && path.client && parseCidr(path.client).prefix > 0) out.add(networkOf(path.client));
  }
  return [...out];
}

/**
 * Routes inside the range other than its own: copying one route for the whole range would send
 * traffic for those elsewhere, so such a range is left alone (pure; `within` from `ip route show root`).
 */
export function splitRange(cidr: string, within: readonly string[]): boolean {
  const bits = net.isIPv6(parseCidr(cidr).address) ? 128 : 32;
  return within.some((d) => networkOf(d.includes('/') ? d : `${d}/${bits}`) !== cidr);
}

/** cubic when the kernel has it, else reno (always built in). */
export function pickCongestion(available: string | null): 'cubic' | 'reno' {
  return (available ?? '').split(/\s+/).includes('cubic') ? 'cubic' : 'reno';
}

/** Routes first, so no rule ever points at an empty table. */
export function buildCcRouting(routes: readonly CcRoute[], cc: string): string[] {
  const t = CC_TABLE;
  const f = (r: CcRoute): string => (r.ipv6 ? '-6 ' : '');
  return [
    ...routes.map((r) => `${f(r)}route replace ${r.cidr}${r.hop.gateway ? ` via ${r.hop.gateway}` : ''} dev ${r.hop.dev}${r.hop.prefsrc ? ` src ${r.hop.prefsrc}` : ''} congctl lock ${cc} table ${t}`),
    ...routes.map((r) => `${f(r)}rule add to ${r.cidr} table ${t} pref ${t}`),
  ];
}

const ccSlot = (v6: boolean): KernelItem => ({ kind: 'route-slot', table: CC_TABLE, v6 });

export class CongestionRoutes {
  /** The lines last installed (null: unknown, e.g. at start). */
  private installed: string[] | null = null;

  constructor(
    private readonly log: Logger,
    private readonly kstate: KernelState,
  ) {}

  /** Make what is installed what `policies` need; unchanged needs leave the rules in place (no gap on SIGHUP). */
  async apply(policies: readonly PolicyConfig[]): Promise<void> {
    const routes: CcRoute[] = [];
    for (const cidr of cappedClientCidrs(policies)) {
      const { address } = parseCidr(cidr);
      if (splitRange(cidr, await routesWithin(cidr).catch(() => []))) {
        this.log.warn('steering: a capped client range holds routes of its own; its subflows keep the default congestion control', { client: cidr });
        continue;
      }
      const hop = await routeGet(address).catch(() => null);
      if (hop) routes.push({ cidr, hop, ipv6: net.isIPv6(address) });
      else this.log.warn('steering: no route to a capped client range; its subflows keep the default congestion control', { client: cidr });
    }
    const cc = pickCongestion(readSysctl('net.ipv4.tcp_available_congestion_control'));
    const lines = routes.length > 0 ? buildCcRouting(routes, cc) : [];
    if (this.installed && this.installed.join('\n') === lines.join('\n')) return;
    await this.kstate.removeInstalled([ccSlot(false), ccSlot(true)]);
    this.installed = [];
    for (const v6 of [false, true]) {
      const family = buildCcRouting(routes.filter((r) => r.ipv6 === v6), cc);
      if (family.length > 0) await this.kstate.install(ccSlot(v6), () => ipBatch(family));
    }
    if (lines.length === 0) return;
    this.installed = lines;
    this.log.info('steering: capped client ranges use loss-based congestion control', { congestion: cc, clients: routes.map((r) => r.cidr) });
  }
}
