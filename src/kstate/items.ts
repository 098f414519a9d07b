/**
 * The kinds of kernel state the proxy owns, each with how to remove it and how to find it by
 * ownership alone (names, handles, owned ranges) when no journal says it exists. Inner state
 * (HTB classes and filters, nft map elements, endpoint backup flags) lives inside these and goes
 * with them. Sysctls the proxy sets while it runs are per namespace: cluster mode's
 * net.mptcp.allow_join_initial_addr_port, net.mptcp.pm_type in userspace path-manager mode, and
 * net.ipv4.tcp_rto_max_ms when paths.rtoMaxMs asks for it; everything else is `doctor --fix`, the operator's one-off command.
 */
import { buildLimits, getLimits, ipBatch, isOwnedEndpointId, isOwnedPref, listEndpoints, listIfbLinks, listOwnedTables, listRules, removeEndpoint, removeLink, removeSlotRouting, type MptcpLimits } from '../sys/iproute';
import { readSysctl, writeSysctl } from '../sys/sysctl';
import { NFT_FAMILY, NFT_TABLE, listTables, nftDeleteTable } from '../sys/nft';
import { IFB_PREFIX, forgetLinks, listOwnedIngress, listRootQdiscs, removeIngress, removeOwnedRoot, rootOwner } from '../sys/tc';

export type KernelItem =
  /** An owned nftables table (family inet, name starting with `mptcp_proxy`). */
  | { kind: 'nft-table'; table: string }
  /** An ingress qdisc (ffff:) the proxy added to redirect uploads to an IFB. */
  | { kind: 'ingress'; dev: string }
  /** The proxy's HTB root (4d50:) on an interface or IFB. */
  | { kind: 'root-qdisc'; dev: string }
  | { kind: 'ifb'; name: string }
  /** An owned routing slot: the rules with priority `table` and the routing table `table`. */
  | { kind: 'route-slot'; table: number; v6: boolean }
  | { kind: 'endpoint'; id: number; address: string }
  /** The path manager's limits, raised by the proxy: `original` is what it found before the first change. */
  | { kind: 'mptcp-limits'; original: MptcpLimits }
  /** A per-namespace sysctl the proxy set: `original` is the value it found before the first change. */
  | { kind: 'sysctl'; key: string; original: string };

export type KernelItemKind = KernelItem['kind'];

/**
 * The one removal order. Packets stop being marked, classified and diverted first (nft); an
 * ingress redirect goes before the IFB it points at (a redirect to a missing device drops all
 * that arrives); HTB roots before their IFBs; routing after the marks that select it; endpoints;
 * the limits, restored to the original once nothing of ours needs them; sysctls last (the C flag
 * keeps clients off the initial address until the endpoint announcing the other one is gone).
 */
export const REMOVE_ORDER: readonly KernelItemKind[] = ['nft-table', 'ingress', 'root-qdisc', 'ifb', 'route-slot', 'endpoint', 'mptcp-limits', 'sysctl'];

/** Identity: one item per key (the journal's, the logs' and `cleanup`'s name for it). */
export function itemKey(i: KernelItem): string {
  switch (i.kind) {
    case 'nft-table':
      return `nft table ${NFT_FAMILY} ${i.table}`;
    case 'ingress':
      return `ingress ${i.dev}`;
    case 'root-qdisc':
      return `root qdisc ${i.dev}`;
    case 'ifb':
      return `ifb ${i.name}`;
    case 'route-slot':
      return `route slot${i.v6 ? ' -6' : ''} ${i.table}`;
    case 'endpoint':
      return `endpoint ${i.id}`;
    case 'mptcp-limits':
      return 'mptcp limits';
    case 'sysctl':
      return `sysctl ${i.key}`;
  }
}

/** What the logs and `cleanup` say was removed (restored, for the limits). */
export function itemLabel(i: KernelItem): string {
  if (i.kind === 'endpoint') return `endpoint ${i.id} ${i.address}`;
  if (i.kind === 'mptcp-limits') return `mptcp limits subflows ${i.original.subflows} add_addr_accepted ${i.original.addAddrAccepted} (restored)`;
  if (i.kind === 'sysctl') return `sysctl ${i.key}=${i.original} (restored)`;
  return itemKey(i);
}

/** Remove one item if it is there; true when the kernel changed. Idempotent. */
export async function removeItem(i: KernelItem): Promise<boolean> {
  switch (i.kind) {
    case 'nft-table':
      return nftDeleteTable(i.table);
    case 'ingress':
      return removeIngress(i.dev);
    case 'root-qdisc':
      return removeOwnedRoot(i.dev);
    case 'ifb': {
      const removed = await removeLink(i.name);
      if (removed) await forgetLinks();
      return removed;
    }
    case 'route-slot':
      return removeSlotRouting(i.table, i.v6);
    case 'endpoint':
      return removeEndpoint(i.id);
    case 'mptcp-limits': {
      const cur = await getLimits();
      if (cur && cur.subflows === i.original.subflows && cur.addAddrAccepted === i.original.addAddrAccepted) return false;
      await ipBatch([buildLimits(i.original)]);
      return true;
    }
    case 'sysctl': {
      if (readSysctl(i.key) === i.original) return false;
      writeSysctl(i.key, i.original);
      return true;
    }
  }
}

/**
 * Everything of a kind found by ownership: what a crashed run left when its journal is gone or
 * predates it. The limits' and sysctls' original values cannot be seen in the kernel: only the
 * journal has them.
 */
export async function scanKind(kind: KernelItemKind): Promise<KernelItem[]> {
  switch (kind) {
    case 'nft-table':
      return (await listTables()).filter((t) => t.startsWith(NFT_TABLE)).map((table) => ({ kind, table }));
    case 'ingress':
      return (await listOwnedIngress()).map((dev) => ({ kind, dev }));
    case 'root-qdisc':
      return (await listRootQdiscs()).filter((q) => rootOwner(q) === 'ours').map((q) => ({ kind, dev: q.dev }));
    case 'ifb':
      return (await listIfbLinks()).filter((n) => n.startsWith(IFB_PREFIX)).map((name) => ({ kind, name }));
    case 'route-slot': {
      const out: KernelItem[] = [];
      for (const v6 of [false, true]) {
        const tables = new Set([...(await listRules(v6)).map((r) => r.priority).filter(isOwnedPref), ...(await listOwnedTables(v6))]);
        for (const table of tables) out.push({ kind, table, v6 });
      }
      return out;
    }
    case 'endpoint':
      return (await listEndpoints()).filter((e) => isOwnedEndpointId(e.id)).map((e) => ({ kind, id: e.id, address: e.address }));
    case 'mptcp-limits':
    case 'sysctl':
      return [];
  }
}
