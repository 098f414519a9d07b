/**
 * The two-uplink failover set-up, shared by the e2e test (test/e2e/steering-failover.test.ts)
 * and the failover bench (bench/failover.ts): the proxy's two client-facing paths become uplinks
 * `up1`/`up2` (gateway = the client's address on that path), subflows from the client's path-1
 * range are pinned to `up1`, and `up1` is cut and restored with an nftables drop on its egress.
 */
import type { ProxyLogLine, Testbed } from './testbed';
import { writeConfig } from './steered-proxy';

export const PINNED_POLICY = 'path1-on-up1';

export interface UplinkConfigOptions {
  /** Health probes on (fast recovery) or off (the uplinks count as always up). Default true. */
  probes?: boolean;
  intervalMs?: number;
  timeoutMs?: number;
  downAfter?: number;
  upAfter?: number;
}

/** Write the two-uplink config into tb's temporary directory; returns its path. */
export function writeUplinkConfig(tb: Testbed, name: string, o: UplinkConfigOptions = {}): string {
  const a = tb.addr;
  const probe = (host: string): Record<string, unknown> | undefined =>
    o.probes === false ? undefined : { target: `${host}:9`, intervalMs: o.intervalMs ?? 100, timeoutMs: o.timeoutMs ?? 200, downAfter: o.downAfter ?? 3, upAfter: o.upAfter ?? 3 };
  const uplink = (n: string, dev: string, source: string, gateway: string): Record<string, unknown> => {
    const p = probe(gateway);
    return { name: n, interface: dev, source, gateway, signal: false, ...(p ? { probe: p } : {}) };
  };
  return writeConfig(tb, name, {
    uplinks: [uplink('up1', tb.ifaces.proxy1, a.proxy1, a.client1), uplink('up2', tb.ifaces.proxy2, a.proxy2, a.client2)],
    policies: [{ name: PINNED_POLICY, match: { client: a.path1Subnet }, uplink: 'up1' }],
  });
}

/** The engine's log line for an uplink state change (its `timestamp` is ISO time). */
export const uplinkChange =
  (name: string, state: 'down' | 'up') =>
  (l: ProxyLogLine): boolean =>
    l.uplink === name && l.message === (state === 'down' ? 'uplink down: moving its subflows' : 'uplink up: moving subflows back');

export const logTime = (l: ProxyLogLine): number => Date.parse(String(l.timestamp));

const CUT_TABLE = 'tb_cut';

/** Drop everything the proxy sends out of up1's interface; resolves once nft has committed it. */
export async function cutUplink1(tb: Testbed): Promise<void> {
  await tb.nft('proxy', `table inet ${CUT_TABLE} { chain post { type filter hook postrouting priority 100; oifname "${tb.ifaces.proxy1}" drop; }; }\n`);
}

export async function restoreUplink1(tb: Testbed): Promise<void> {
  await tb.exec('proxy', ['nft', 'delete', 'table', 'inet', CUT_TABLE]);
}

/**
 * Count packets for the client's path-1 address that arrive over path 2 (rerouted by the proxy);
 * returns a reader of the count.
 */
export async function watchRerouted(tb: Testbed): Promise<() => Promise<number>> {
  await tb.nft('client', `table inet tb_watch { chain pre { type filter hook prerouting priority -300; iifname "${tb.ifaces.client2}" ip daddr ${tb.addr.client1} counter; }; }\n`);
  return async () => {
    const out = (await tb.exec('client', ['nft', 'list', 'table', 'inet', 'tb_watch'])).stdout;
    return Number(/counter packets (\d+)/.exec(out)?.[1] ?? -1);
  };
}

const CLIENT_CUT_TABLE = 'tb_cut';

/** Blackhole the client's path 1 both ways (its interface in the client namespace): the client-path loss case. */
export async function cutClientPath1(tb: Testbed): Promise<void> {
  const dev = tb.ifaces.client1;
  await tb.nft('client', `table inet ${CLIENT_CUT_TABLE} { chain pre { type filter hook prerouting priority -300; iifname "${dev}" drop; }; chain post { type filter hook postrouting priority 100; oifname "${dev}" drop; }; }\n`);
}

export async function restoreClientPath1(tb: Testbed): Promise<void> {
  await tb.exec('client', ['nft', 'delete', 'table', 'inet', CLIENT_CUT_TABLE]);
}
