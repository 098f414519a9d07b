/**
 * A pool of proxy instances behind an L4 load balancer, in namespaces, dual-stack (the cluster
 * e2e test and bench/cluster-scale.ts):
 *
 *   CLIENT ==path1== LB (nft DNAT of the VIP) ==b1 (backend)=== INSTANCE k --bs-- SERVER (origin)
 *          ==path2==                          ==b2 (announce)==/
 *
 * The testbed's router is the load balancer: it forwards by destination only, and its nat chain
 * hashes (jhash) or counts (numgen) new connections to the VIP over the instances in the pool;
 * conntrack keeps each flow on its pick when the pool changes. Each instance has a backend
 * address (the DNAT target) and an announce address on its own links, both routed by the LB, and
 * a link of its own to the origin (shaped there with `originMbit`: the instance's uplink). A
 * client's join leaves from path2 (its `subflow` endpoint), so a join that reaches an instance's
 * announce link came over the client's second path.
 */
import assert from 'node:assert/strict';
import { startLegacyServer, type LegacyServer } from './legacy-server';
import { createTestbed, type ProxyHandle, type Testbed } from './testbed';

export type Family = 4 | 6;
export type Balancing = 'jhash' | 'numgen';

export const HTTP_PORT = 3128;
export const SOCKS_PORT = 1080;
export const ADMIN_PORT = 9464;

export interface Addr {
  4: string;
  6: string;
}

export interface ClusterInstance {
  name: string;
  ns: string;
  /** The DNAT target. */
  backend: Addr;
  announce: Addr;
  /** The origin's end of this instance's uplink (shaped there when originMbit is set). */
  originDev: string;
  /** Instance 0 binds its listeners to its backend address (joins need the twin listener), the rest to the wildcard. */
  bindsBackend: boolean;
}

export interface ClusterBed {
  tb: Testbed;
  srv: LegacyServer;
  vip: Addr;
  instances: ClusterInstance[];
  /** The load balancer's pool for new connections to the VIP (both families), replaced atomically. */
  setPool(balancing: Balancing, members: readonly number[]): Promise<void>;
  /** Instance k's command line: cluster mode announces its address of `family`. */
  args(k: number, o: InstanceOptions): string[];
  /** Start instance k's proxy in its namespace. */
  start(k: number, o: InstanceOptions & { env?: NodeJS.ProcessEnv }): Promise<ProxyHandle>;
  /** The proxy's address for clients: the VIP of that family, as curl takes it. */
  vipHost(family: Family): string;
  destroy(): Promise<void>;
}

export interface InstanceOptions {
  cluster: boolean;
  family: Family;
  extra?: string[];
}

export type Counters = Record<string, number>;

/** The kernel's MPTCP counters of a namespace (/proc/net/netstat is per namespace). */
export async function mptcpCounters(tb: Testbed, ns: string): Promise<Counters> {
  const r = await tb.exec(ns, ['cat', '/proc/net/netstat']);
  const rows = r.stdout.split('\n').filter((l) => l.startsWith('MPTcpExt:'));
  const names = rows[0]!.split(/\s+/).slice(1);
  const values = rows[1]!.split(/\s+/).slice(1).map(Number);
  return Object.fromEntries(names.map((n, i) => [n, values[i]!]));
}

export function counterDelta(before: Counters, after: Counters): Counters {
  return Object.fromEntries(Object.keys(after).map((n) => [n, after[n]! - (before[n] ?? 0)]));
}

const NAMES = 'ABCDEFGH';

export async function createClusterBed(o: { instances: number; originMbit?: number }): Promise<ClusterBed> {
  const tb = await createTestbed({ router: true, shapeMbit: 0 });
  try {
    return await build(tb, o.instances, o.originMbit ?? 0);
  } catch (e) {
    await tb.destroy();
    throw e;
  }
}

async function build(tb: Testbed, n: number, originMbit: number): Promise<ClusterBed> {
  const o = tb.octet;
  const a = tb.addr;
  const rtr = tb.ns.router!;
  const v6 = (subnet: number, host: number): string => `fd00:${o}:${subnet}::${host}`;
  const ip = async (ns: string, lines: string[], family: Family = 4): Promise<void> => {
    // `ip rule` takes an IPv6 source only under -6, which a batch cannot switch per line.
    const r = await tb.exec(ns, ['ip', ...(family === 6 ? ['-6'] : []), '-batch', '-'], { input: lines.join('\n') + '\n' });
    assert.equal(r.code, 0, r.stderr);
  };
  const vip: Addr = { 4: `10.${o}.100.1`, 6: v6(100, 1) };
  // The testbed's router sends all of path2 to its one proxy; a load balancer routes by destination.
  await ip(rtr, ['rule del pref 100']);
  await tb.exec(rtr, ['sysctl', '-qw', 'net.ipv6.conf.all.forwarding=1']);
  // IPv6 beside the testbed's IPv4: both client paths, per-source routing and a second subflow endpoint.
  const [r1, r2] = tb.ifaces.router!;
  await ip(tb.ns.client, [
    `addr add ${v6(1, 2)}/64 dev ${tb.ifaces.client1} nodad`,
    `addr add ${v6(2, 2)}/64 dev ${tb.ifaces.client2} nodad`,
    `route add default via ${v6(1, 1)} dev ${tb.ifaces.client1}`,
    `route add default via ${v6(2, 1)} dev ${tb.ifaces.client2} table 102`,
    `mptcp endpoint add ${v6(2, 2)} dev ${tb.ifaces.client2} subflow`,
  ]);
  await ip(tb.ns.client, [`rule add from ${v6(2, 2)} table 102 pref 100`], 6);
  await ip(rtr, [`addr add ${v6(1, 1)}/64 dev ${r1} nodad`, `addr add ${v6(2, 1)}/64 dev ${r2} nodad`]);
  const instances: ClusterInstance[] = [];
  for (let k = 0; k < n; k++) {
    const [bk, an, up] = [20 + k, 30 + k, 40 + k];
    const ns = await tb.addNamespace(`prx${k}`);
    const i: ClusterInstance = {
      name: NAMES[k]!,
      ns,
      backend: { 4: `10.${o}.${bk}.2`, 6: v6(bk, 2) },
      announce: { 4: `10.${o}.${an}.2`, 6: v6(an, 2) },
      originDev: `s${k + 1}`,
      bindsBackend: k === 0,
    };
    instances.push(i);
    const [lb1, lb2] = [`l${k}b`, `l${k}a`];
    await ip(rtr, [
      `link add ${lb1} type veth peer name b1 netns ${ns}`,
      `link add ${lb2} type veth peer name b2 netns ${ns}`,
      `addr add 10.${o}.${bk}.1/24 dev ${lb1}`,
      `addr add 10.${o}.${an}.1/24 dev ${lb2}`,
      `addr add ${v6(bk, 1)}/64 dev ${lb1} nodad`,
      `addr add ${v6(an, 1)}/64 dev ${lb2} nodad`,
      `link set ${lb1} up`,
      `link set ${lb2} up`,
    ]);
    await ip(ns, [
      `link add bs type veth peer name ${i.originDev} netns ${tb.ns.server}`,
      `addr add ${i.backend[4]}/24 dev b1`,
      `addr add ${i.announce[4]}/24 dev b2`,
      `addr add ${i.backend[6]}/64 dev b1 nodad`,
      `addr add ${i.announce[6]}/64 dev b2 nodad`,
      `addr add 10.${o}.${up}.1/24 dev bs`,
      'link set b1 up',
      'link set b2 up',
      'link set bs up',
      // Replies to each client path go back the way it came: path1 through the LB's backend side, path2 to the announce link.
      `route add ${a.path1Subnet} via 10.${o}.${bk}.1 dev b1`,
      `route add ${a.path2Subnet} via 10.${o}.${an}.1 dev b2`,
      `route add ${v6(1, 0)}/64 via ${v6(bk, 1)} dev b1`,
      `route add ${v6(2, 0)}/64 via ${v6(an, 1)} dev b2`,
      `route add ${a.server}/32 via 10.${o}.${up}.2 dev bs`,
      'mptcp limits set subflows 4 add_addr_accepted 4',
    ]);
    await ip(tb.ns.server, [`addr add 10.${o}.${up}.2/24 dev ${i.originDev}`, `link set ${i.originDev} up`]);
    if (originMbit > 0) {
      const rate = `${originMbit}mbit`;
      const tc = [
        `qdisc add dev ${i.originDev} root handle 1: htb default 10`,
        `class add dev ${i.originDev} parent 1: classid 1:10 htb rate ${rate} ceil ${rate} quantum 15140`,
        `qdisc add dev ${i.originDev} parent 1:10 handle 10: pfifo limit 1000`,
      ];
      const r = await tb.exec(tb.ns.server, ['tc', '-batch', '-'], { input: tc.join('\n') + '\n' });
      assert.equal(r.code, 0, r.stderr);
    }
  }
  const ports = `{ ${HTTP_PORT}, ${SOCKS_PORT} }`;
  await tb.nft('router', `table inet mpx_lb {\n  chain pre {\n    type nat hook prerouting priority dstnat;\n  }\n}\n`);
  const srv = await startLegacyServer(tb);

  const setPool = async (balancing: Balancing, members: readonly number[]): Promise<void> => {
    const pick = balancing === 'jhash' ? (f: Family) => `jhash ${f === 4 ? 'ip' : 'ip6'} saddr . tcp sport mod ${members.length}` : () => `numgen inc mod ${members.length}`;
    const map = (f: Family): string => members.map((m, x) => `${x} : ${instances[m]!.backend[f]}`).join(', ');
    // One transaction: the chain (and with it the NAT of every existing flow) stays in place.
    await tb.nft(
      'router',
      [
        'flush chain inet mpx_lb pre',
        `add rule inet mpx_lb pre ip daddr ${vip[4]} tcp dport ${ports} dnat ip to ${pick(4)} map { ${map(4)} }`,
        `add rule inet mpx_lb pre ip6 daddr ${vip[6]} tcp dport ${ports} dnat ip6 to ${pick(6)} map { ${map(6)} }`,
      ].join('\n') + '\n',
    );
  };

  const bracket = (f: Family, host: string): string => (f === 6 ? `[${host}]` : host);
  const args = (k: number, s: InstanceOptions): string[] => {
    const i = instances[k]!;
    const host = bracket(s.family, i.bindsBackend ? i.backend[s.family] : s.family === 4 ? '0.0.0.0' : '::');
    return [
        '--http', `${host}:${HTTP_PORT}`,
        '--socks', `${host}:${SOCKS_PORT}`,
        '--allow-client', tb.cidr,
        '--allow-client', `fd00:${o}::/32`,
        '--instance', i.name,
        '--log-format', 'json',
        '--metrics', `${i.backend[4]}:${ADMIN_PORT}`,
        ...(s.cluster ? ['--cluster-announce', i.announce[s.family]] : []),
        ...(s.extra ?? []),
    ];
  };

  return {
    tb,
    srv,
    vip,
    instances,
    setPool,
    args,
    start: (k, s) => tb.startProxy(args(k, s), { ns: instances[k]!.ns, env: s.env }),     vipHost: (f) => bracket(f, vip[f]),
    destroy: () => tb.destroy(),
  };
}
