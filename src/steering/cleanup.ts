/**
 * Removes every piece of kernel state the steering engine owns, found by ownership alone (table
 * name, qdisc handle, rule/table range, endpoint id range), so it works after a crash with no
 * memory of what was installed. Anything outside those names and ranges is never touched.
 */
import type { Logger } from '../log/logger';
import { ExecError } from '../sys/exec';
import { buildEndpointDelete, buildLinkDelete, ipBatch, isOwnedEndpointId, isOwnedPref, listEndpoints, listIfbLinks, listOwnedTables, listRules } from '../sys/iproute';
import { TPROXY_TABLE, nftDeleteTable } from '../sys/nft';
import { MSS_TABLE } from '../tuning/mss';
import { IFB_PREFIX, buildIngressDelete, listOwnedIngress, listRootQdiscs, removeOwnedRoot, rootOwner, tcBatch } from '../sys/tc';

/** Remove all owned state; returns what was removed, one short label each. Never throws. */
export async function cleanupOwnedState(log: Logger): Promise<string[]> {
  const removed: string[] = [];
  const step = async (what: string, fn: () => Promise<void>): Promise<void> => {
    try {
      await fn();
    } catch (e) {
      // A missing tool means nothing of ours can exist in its domain.
      if (e instanceof ExecError && e.code === 'MPX_EXEC_NOT_FOUND') return;
      log.warn('steering cleanup: step failed', { step: what, error: (e as Error).message });
    }
  };
  await step('nft table', async () => {
    if (await nftDeleteTable()) removed.push('nft table inet mptcp_proxy');
  });
  // The tuning module's MSS clamp (src/tuning/mss.ts) is owned state too.
  await step('mss nft table', async () => {
    if (await nftDeleteTable(MSS_TABLE)) removed.push(`nft table inet ${MSS_TABLE}`);
  });
  // Transparent mode's TPROXY table (src/proxy/transparent.ts); its rule and table are in the owned range below.
  await step('tproxy nft table', async () => {
    if (await nftDeleteTable(TPROXY_TABLE)) removed.push(`nft table inet ${TPROXY_TABLE}`);
  });
  await step('qdiscs', async () => {
    for (const q of await listRootQdiscs()) if (rootOwner(q) === 'ours' && !q.dev.startsWith(IFB_PREFIX) && (await removeOwnedRoot(q.dev))) removed.push(`qdisc ${q.dev}`);
  });
  // Redirects first: a redirect to a deleted IFB would drop everything arriving on the interface.
  await step('ingress', async () => {
    for (const dev of await listOwnedIngress()) {
      await tcBatch([buildIngressDelete(dev)]);
      removed.push(`ingress ${dev}`);
    }
  });
  await step('ifb', async () => {
    for (const name of await listIfbLinks()) {
      if (!name.startsWith(IFB_PREFIX)) continue;
      await ipBatch([buildLinkDelete(name)]);
      removed.push(`ifb ${name}`);
    }
  });
  for (const v6 of [false, true]) {
    const f = v6 ? '-6 ' : '';
    await step(`${f}rules`, async () => {
      for (const r of await listRules(v6)) {
        if (!isOwnedPref(r.priority)) continue;
        await ipBatch([`${f}rule del pref ${r.priority}`]);
        removed.push(`${f}rule ${r.priority}`);
      }
    });
    await step(`${f}routes`, async () => {
      for (const t of await listOwnedTables(v6)) {
        await ipBatch([`${f}route flush table ${t}`]);
        removed.push(`${f}table ${t}`);
      }
    });
  }
  await step('endpoints', async () => {
    for (const e of await listEndpoints()) {
      if (!isOwnedEndpointId(e.id)) continue;
      await ipBatch([buildEndpointDelete(e.id)]);
      removed.push(`endpoint ${e.id} ${e.address}`);
    }
  });
  return removed;
}
