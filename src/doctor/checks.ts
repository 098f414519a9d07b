/**
 * `mptcp-proxy doctor` checks: pure functions from gathered facts (kernel, path manager, tools)
 * and the config to a verdict with the command that fixes it. Nothing here touches the system,
 * so every verdict is unit-tested over synthetic facts; gather.ts collects the real ones.
 */
import net from 'node:net';
import type { Config } from '../config/schema';
import { ANNOUNCE_ENDPOINT_ID, slotTable, TPROXY_MARK, TPROXY_SLOT, type Endpoint, type MptcpLimits, type RuleEntry } from '../sys/iproute';
import type { FeatureState, ProbeResult } from '../sys/kernel-features';
import { C_FLAG_SYSCTL, sysctlIfName } from '../sys/sysctl';

export type CheckStatus = 'pass' | 'fail' | 'warn' | 'skip';

export interface CheckResult {
  id: string;
  title: string;
  status: CheckStatus;
  /** What was found, one line. */
  detail: string;
  /** Commands an operator runs to fix it (printed). */
  fix: string[];
  /** The subset `--fix` applies by itself: sysctl key → value. Safe, runtime-only changes. */
  sysctls: Record<string, string>;
}

/** Kernel features the steering engine's shaping uses. */
export const SHAPING_FEATURES = {
  htb: { symbol: 'CONFIG_NET_SCH_HTB', module: 'sch_htb' },
  ingress: { symbol: 'CONFIG_NET_SCH_INGRESS', module: 'sch_ingress' },
  ifb: { symbol: 'CONFIG_IFB', module: 'ifb' },
  u32: { symbol: 'CONFIG_NET_CLS_U32', module: 'cls_u32' },
  mirred: { symbol: 'CONFIG_NET_ACT_MIRRED', module: 'act_mirred' },
} as const;
export type ShapingFeature = keyof typeof SHAPING_FEATURES;

export interface DoctorFacts {
  /** sysctl key → value (whitespace collapsed); null = the key does not exist here. */
  sysctl: Readonly<Record<string, string | null>>;
  /** null when `ip mptcp limits` could not be read (see errors.limits). */
  limits: MptcpLimits | null;
  endpoints: Endpoint[] | null;
  features: Readonly<Record<ShapingFeature, FeatureState>>;
  tools: { nft: boolean };
  /** Result of opening an IPPROTO_MPTCP socket in this namespace. */
  mptcpSocket: ProbeResult;
  /** Transparent mode's kernel needs, tried; null when the config has no transparent listener. */
  transparent: TransparentFacts | null;
  /** Cluster mode's needs; null when cluster.announce is not configured. */
  cluster: ClusterFacts | null;
  /** CapEff of the doctor process. */
  capEff: bigint | null;
  /** Why a fact is missing, by fact name. */
  errors: Readonly<Record<string, string>>;
}

export interface TransparentFacts {
  /** Address families of the transparent listeners. */
  families: (4 | 6)[];
  /** A throwaway nft table with a TPROXY rule per family, added and deleted in one transaction. */
  tproxy: ProbeResult;
  /** setsockopt(IP_TRANSPARENT / IPV6_TRANSPARENT) on a fresh socket of each family (first failure). */
  ipTransparent: ProbeResult;
  /**
   * Per family: the rules found at the owned slot's priority and, when there were none, the
   * result of installing and removing the fwmark rule and local route. null when
   * transparent.rules is false (the operator routes).
   */
  routing: { family: 4 | 6; atSlot: RuleEntry[]; trial: ProbeResult | null }[] | null;
}

export interface ClusterFacts {
  /** The interface that has the announce address; null when no interface here has it. */
  device: string | null;
  /** net.mptcp.allow_join_initial_addr_port now; null when the kernel has no such key. */
  cFlag: string | null;
  /** Writing its current value back (changes nothing): can the proxy set it at start? */
  cFlagWritable: ProbeResult;
  /** rp_filter in effect on that interface: max(all, interface); null when unreadable. */
  rpFilter: number | null;
}

export interface DoctorInput {
  config: Pick<Config, 'listeners' | 'steering' | 'transparent' | 'cluster' | 'paths'>;
  /** Bandwidth of each path in Mbit/s and the largest path RTT, for the buffer check. */
  pathMbit: number[];
  maxRttMs: number | null;
}

/**
 * Below about 0.48 MB of receive buffer an MPTCP connection over paths of different delay loses
 * throughput: data arriving early on the fast path waits in the buffer for the slow path's.
 */
export const MPTCP_BUFFER_FLOOR = 480_000;

export const CAP_NET_BIND_SERVICE = 10;
export const CAP_NET_ADMIN = 12;
export const CAP_NET_RAW = 13;

const K = {
  enabled: 'net.mptcp.enabled',
  pathManager: 'net.mptcp.path_manager',
  pmType: 'net.mptcp.pm_type',
  availablePms: 'net.mptcp.available_path_managers',
  rmem: 'net.ipv4.tcp_rmem',
  wmem: 'net.ipv4.tcp_wmem',
  rpAll: 'net.ipv4.conf.all.rp_filter',
} as const;
export const rpKey = (ifname: string): string => `net.ipv4.conf.${sysctlIfName(ifname)}.rp_filter`;

/** Interfaces that carry subflows: configured uplinks and MPTCP endpoint devices. */
export function multipathInterfaces(config: DoctorInput['config'], endpoints: readonly Endpoint[] | null): string[] {
  const names = [...config.steering.uplinks.map((u) => u.interface), ...(endpoints ?? []).flatMap((e) => (e.dev ? [e.dev] : []))];
  return [...new Set(names)].sort();
}

/** The sysctl keys the checks read, so the gatherer reads exactly these. */
export function sysctlKeys(config: DoctorInput['config'], endpoints: readonly Endpoint[] | null): string[] {
  return [...Object.values(K), ...multipathInterfaces(config, endpoints).map(rpKey)];
}

const result = (id: string, title: string, status: CheckStatus, detail: string, fix: string[] = [], sysctls: Record<string, string> = {}): CheckResult => ({ id, title, status, detail, fix, sysctls });
const sysctlCommand = (s: Record<string, string>): string[] => Object.entries(s).map(([k, v]) => `sysctl -w ${k}=${/\s/.test(v) ? `"${v}"` : v}`);
/** A failed check whose fix is a set of sysctls. */
const sysctlFix = (id: string, title: string, detail: string, s: Record<string, string>): CheckResult => result(id, title, 'fail', detail, sysctlCommand(s), s);

function steeringConfigured(c: DoctorInput['config']): boolean {
  return c.steering.policies.length > 0 || c.steering.uplinks.length > 0;
}

/** Address families of the transparent listeners (none = transparent mode is off). */
export function transparentFamilies(c: Pick<Config, 'listeners'>): (4 | 6)[] {
  const families = new Set(c.listeners.filter((l) => l.protocol === 'transparent').map((l) => (net.isIPv6(l.host) ? 6 : 4) as 4 | 6));
  return [...families].sort();
}

function shapingConfigured(c: DoctorInput['config']): boolean {
  return c.steering.policies.some((p) => p.rate !== undefined || p.ceil !== undefined || p.share !== undefined);
}

export function checkMptcpEnabled(f: DoctorFacts): CheckResult {
  const title = 'MPTCP enabled';
  const v = f.sysctl[K.enabled];
  if (v === null || v === undefined) return result('mptcp-enabled', title, 'fail', 'net.mptcp.enabled does not exist: kernel built without CONFIG_MPTCP', [
      'boot a kernel with CONFIG_MPTCP=y (Linux 5.19 or later recommended)',
    ]);
  if (v === '1') return result('mptcp-enabled', title, 'pass', 'net.mptcp.enabled = 1');
  return sysctlFix('mptcp-enabled', title, `net.mptcp.enabled = ${v}: sockets fall back to plain TCP`, { [K.enabled]: '1' });
}

export function checkMptcpSocket(f: DoctorFacts): CheckResult {
  const title = 'MPTCP sockets';
  if (f.mptcpSocket.ok) return result('mptcp-socket', title, 'pass', 'socket(AF_INET, SOCK_STREAM, IPPROTO_MPTCP) works');
  const disabled = f.sysctl[K.enabled] === '0';
  return result('mptcp-socket', title, 'fail', `cannot open an MPTCP socket: ${f.mptcpSocket.error}`, [
    disabled ? 'sysctl -w net.mptcp.enabled=1 (see above)' : 'a seccomp filter or LSM refuses IPPROTO_MPTCP (containers: allow socket protocol 262)',
  ]);
}

export function checkPathManager(f: DoctorFacts, input: DoctorInput): CheckResult {
  const title = 'in-kernel path manager';
  const name = f.sysctl[K.pathManager];
  const type = f.sysctl[K.pmType];
  // 6.15+ names the path manager; older kernels only have pm_type (0 = kernel, 1 = userspace).
  const current = name ?? (type === '0' ? 'kernel' : type === '1' ? 'userspace' : type);
  if (current === null || current === undefined) return result('path-manager', title, 'skip', 'no path manager sysctl (MPTCP missing?)');
  if (input.config.paths.pathManager === 'userspace') return result('path-manager', title, 'skip', `path manager: ${current}; paths.pathManager userspace: the proxy sets its own while it runs`);
  if (current === 'kernel') return result('path-manager', title, 'pass', 'path manager: kernel (endpoints and limits below apply)');
  const fix: Record<string, string> = name !== null && name !== undefined ? { [K.pathManager]: 'kernel' } : { [K.pmType]: '0' };
  return sysctlFix('path-manager', title, `path manager: ${current}: the kernel will not announce addresses or accept joins without a userspace daemon`, fix);
}

/** Can this kernel hand path management to the proxy (paths.pathManager: userspace)? */
export function checkUserspacePm(f: DoctorFacts, input: DoctorInput): CheckResult {
  const title = 'userspace path manager';
  const available = f.sysctl[K.availablePms];
  // Before 6.15 there is no list: pm_type (5.19+) is the userspace PM's switch.
  const supported = available !== null && available !== undefined ? available.split(' ').includes('userspace') : f.sysctl[K.pmType] !== null && f.sysctl[K.pmType] !== undefined;
  const how = available ? `available path managers: ${available}` : `net.mptcp.pm_type ${supported ? 'exists' : 'missing'}`;
  const wanted = input.config.paths.pathManager === 'userspace';
  if (supported) return result('userspace-pm', title, 'pass', `supported (${how})${wanted ? '; paths.pathManager userspace sets net.mptcp.pm_type=1 while the proxy runs' : ''}`);
  if (wanted) return result('userspace-pm', title, 'fail', `not supported by this kernel (${how}): paths.pathManager userspace cannot start`, ['boot Linux 5.19 or later with CONFIG_MPTCP, or set paths.pathManager: kernel']);
  return result('userspace-pm', title, 'skip', `not supported by this kernel (${how}); paths.pathManager: kernel does not need it`);
}

export function checkLimits(f: DoctorFacts, input: DoctorInput): CheckResult {
  const title = 'MPTCP limits';
  if (!f.limits) return result('limits', title, 'skip', `cannot read limits: ${f.errors.limits ?? 'unknown'}`);
  // One join per uplink beyond the first, plus one for a client's second path.
  const uplinks = input.config.steering.uplinks.length;
  const need = Math.max(1, uplinks);
  const { subflows, addAddrAccepted } = f.limits;
  if (subflows >= need) return result('limits', title, 'pass', `subflows ${subflows} ≥ ${need} (${uplinks} uplink(s) configured), add_addr_accepted ${addAddrAccepted}`);
  const why = subflows === 0 ? 'every connection stays on one subflow' : `joins beyond ${subflows} are reset`;
  return result('limits', title, 'fail', `subflows ${subflows} < ${need} for ${uplinks} uplink(s): ${why}`, [`ip mptcp limits set subflows ${Math.max(need, 2)} add_addr_accepted ${addAddrAccepted}`]);
}

export function checkEndpoints(f: DoctorFacts, input: DoctorInput): CheckResult {
  const title = 'MPTCP endpoints';
  if (!f.endpoints) return result('endpoints', title, 'skip', `cannot read endpoints: ${f.errors.endpoints ?? 'unknown'}`);
  const accepted = f.limits?.addAddrAccepted ?? 0;
  // NOTES.md "Path manager behaviour": with add_addr_accepted > 0 a plain `subflow` endpoint
  // answers ADD_ADDR from the default route's source: a second subflow on the same path.
  const trap = f.endpoints.filter((e) => e.flags.includes('subflow') && !e.flags.includes('fullmesh') && !e.flags.includes('signal'));
  const replace = (e: Endpoint): string => `ip mptcp endpoint delete id ${e.id} && ip mptcp endpoint add ${e.address}${e.dev ? ` dev ${e.dev}` : ''} signal`;
  if (trap.length > 0 && accepted > 0) {
    return result(
      'endpoints',
      title,
      'fail',
      `"subflow" endpoint(s) ${trap.map((e) => e.address).join(', ')} with add_addr_accepted ${accepted}: joins toward announced addresses leave from the default route's address (the "two subflows, one path" trap); a proxy should announce its addresses with "signal"`,
      trap.map(replace),
    );
  }
  const signalDevs = new Set(f.endpoints.filter((e) => e.flags.includes('signal')).map((e) => e.dev));
  const signalAddrs = new Set(f.endpoints.filter((e) => e.flags.includes('signal')).map((e) => e.address));
  const uplinks = input.config.steering.uplinks;
  // The first uplink carries the proxy's own address; the others must be announced.
  const unannounced = uplinks.length >= 2 ? uplinks.slice(1).filter((u) => !signalDevs.has(u.interface) && !(u.source && signalAddrs.has(u.source))) : [];
  if (unannounced.length > 0) {
    return result(
      'endpoints',
      title,
      'warn',
      `uplink(s) ${unannounced.map((u) => `${u.name} (${u.interface})`).join(', ')} not announced: clients can only join the proxy's first address`,
      unannounced.map((u) => `ip mptcp endpoint add ${u.source ?? `<address of ${u.interface}>`} dev ${u.interface} signal`),
    );
  }
  if (trap.length > 0) {
    return result('endpoints', title, 'warn', `"subflow" endpoint(s) ${trap.map((e) => e.address).join(', ')}: a proxy accepts joins, it does not open them; use "signal"`, trap.map(replace));
  }
  const summary = f.endpoints.map((e) => `${e.address}${e.dev ? `@${e.dev}` : ''} ${e.flags.join(',') || '-'}`).join('; ');
  return result('endpoints', title, 'pass', f.endpoints.length > 0 ? summary : 'no endpoints (single-address proxy; clients join its one address)');
}

export function checkRpFilter(f: DoctorFacts, input: DoctorInput): CheckResult {
  const title = 'rp_filter on multi-path interfaces';
  const ifaces = multipathInterfaces(input.config, f.endpoints);
  if (ifaces.length < 2) return result('rp-filter', title, 'skip', `${ifaces.length} multi-path interface(s): nothing to check`);
  const all = Number(f.sysctl[K.rpAll] ?? 0);
  const strict: string[] = [];
  const missing: string[] = [];
  for (const i of ifaces) {
    const v = f.sysctl[rpKey(i)];
    if (v === null || v === undefined) missing.push(i);
    // The kernel uses max(all, interface): 1 = strict drops packets whose reply route differs.
    else if (Math.max(all, Number(v)) === 1) strict.push(i);
  }
  if (strict.length > 0) {
    const fix = Object.fromEntries(strict.map((i) => [rpKey(i), '2']));
    return sysctlFix('rp-filter', title, `strict reverse-path filtering on ${strict.join(', ')}: joins and replies that arrive on another path are dropped`, fix);
  }
  if (missing.length > 0) return result('rp-filter', title, 'warn', `interface(s) ${missing.join(', ')} do not exist here`);
  return result('rp-filter', title, 'pass', `${ifaces.join(', ')}: loose or off`);
}

/** Bytes needed per connection buffer: 2 × Σ bandwidth × max RTT, at least the 0.48 MB floor. */
export function bufferNeed(pathMbit: readonly number[], maxRttMs: number | null): number {
  if (pathMbit.length === 0 || maxRttMs === null) return MPTCP_BUFFER_FLOOR;
  const bytesPerSec = pathMbit.reduce((a, b) => a + b, 0) * 1e6 / 8;
  return Math.max(MPTCP_BUFFER_FLOOR, Math.ceil(2 * bytesPerSec * (maxRttMs / 1000)));
}

export function checkBuffers(f: DoctorFacts, input: DoctorInput): CheckResult {
  const title = 'TCP buffer maxima';
  const need = bufferNeed(input.pathMbit, input.maxRttMs);
  const basis = input.pathMbit.length > 0 && input.maxRttMs !== null ? `2 × ${input.pathMbit.reduce((a, b) => a + b, 0)} Mbit/s × ${input.maxRttMs} ms` : 'floor for MPTCP reordering';
  const low: Record<string, string> = {};
  const seen: string[] = [];
  for (const key of [K.rmem, K.wmem]) {
    const v = f.sysctl[key];
    const parts = v?.split(' ').map(Number);
    if (!parts || parts.length !== 3 || parts.some((n) => !Number.isFinite(n))) return result('buffers', title, 'skip', `${key} unreadable: ${v ?? 'absent'}`);
    seen.push(`${key.split('.').pop()} max ${parts[2]}`);
    if (parts[2]! < need) low[key] = `${parts[0]} ${parts[1]} ${need}`;
  }
  if (Object.keys(low).length > 0) return sysctlFix('buffers', title, `${seen.join(', ')} < ${need} B needed (${basis}): reordering across paths stalls the connection`, low);
  return result('buffers', title, 'pass', `${seen.join(', ')} ≥ ${need} B (${basis})`);
}

export function checkShaping(f: DoctorFacts, input: DoctorInput): CheckResult {
  const title = 'qdiscs for shaping (htb, ingress, ifb, u32, mirred)';
  const absent = (Object.keys(SHAPING_FEATURES) as ShapingFeature[]).filter((k) => f.features[k] === 'absent');
  const unknown = (Object.keys(SHAPING_FEATURES) as ShapingFeature[]).filter((k) => f.features[k] === 'unknown');
  const needed = shapingConfigured(input.config);
  if (absent.length > 0) {
    return result('shaping', title, needed ? 'fail' : 'warn', `missing from the kernel: ${absent.map((k) => `${k} (${SHAPING_FEATURES[k].symbol})`).join(', ')}${needed ? '; policies with rate/ceil/share cannot be applied' : ''}`, [
      'use a kernel with these options, or drop rate/ceil/share from the policies',
    ]);
  }
  if (unknown.length > 0) return result('shaping', title, 'warn', `cannot tell whether ${unknown.join(', ')} exist (no /proc/config.gz, no module)`, unknown.map((k) => `modprobe ${SHAPING_FEATURES[k].module}`));
  return result('shaping', title, 'pass', (Object.keys(SHAPING_FEATURES) as ShapingFeature[]).map((k) => `${k} ${f.features[k]}`).join(', '));
}

export function checkNftables(f: DoctorFacts, input: DoctorInput): CheckResult {
  const title = 'nftables';
  if (f.tools.nft) return result('nftables', title, 'pass', '`nft` works');
  return result('nftables', title, steeringConfigured(input.config) ? 'fail' : 'warn', '`nft` is missing or failing: steering cannot classify or mark subflows', ['apt-get install -y nftables']);
}

const hasCap = (mask: bigint, cap: number): boolean => ((mask >> BigInt(cap)) & 1n) === 1n;
/** Known to lack the capability (an unreadable CapEff is not held against it). */
const lacksCap = (f: DoctorFacts, cap: number): boolean => f.capEff !== null && !hasCap(f.capEff, cap);
const CAPABILITY_FIX = [
  'run as root, or as the systemd service (systemd/mptcp-proxy.service grants exactly these), or:',
  `setcap cap_net_admin,cap_net_raw,cap_net_bind_service+ep "$(readlink -f "$(command -v node)")"`,
];

export function checkCapabilities(f: DoctorFacts, input: DoctorInput): CheckResult {
  const title = 'capabilities';
  if (f.capEff === null) return result('capabilities', title, 'skip', 'cannot read CapEff from /proc/self/status');
  const lowPort = input.config.listeners.some((l) => l.port > 0 && l.port < 1024);
  const wanted: [string, number, boolean][] = [
    ['CAP_NET_ADMIN', CAP_NET_ADMIN, steeringConfigured(input.config) || transparentFamilies(input.config).length > 0],
    ['CAP_NET_RAW', CAP_NET_RAW, false],
    ['CAP_NET_BIND_SERVICE', CAP_NET_BIND_SERVICE, lowPort],
  ];
  const missing = wanted.filter(([, bit]) => !hasCap(f.capEff!, bit));
  if (missing.length === 0) return result('capabilities', title, 'pass', 'CAP_NET_ADMIN, CAP_NET_RAW, CAP_NET_BIND_SERVICE effective');
  const required = missing.filter(([, , req]) => req);
  return result('capabilities', title, required.length > 0 ? 'fail' : 'warn', `missing ${missing.map(([n]) => n).join(', ')}${required.length > 0 ? ` (needed by this config: ${required.map(([n]) => n).join(', ')})` : ' (steering and the subflow sniffer need them)'}`, CAPABILITY_FIX);
}

const NO_TRANSPARENT = 'no transparent listener configured';
const familyNames = (fs: readonly (4 | 6)[]): string => fs.map((x) => `IPv${x}`).join(' and ');

export function checkTproxyRule(f: DoctorFacts): CheckResult {
  const title = 'TPROXY rules in nftables (transparent mode)';
  const t = f.transparent;
  if (!t) return result('tproxy', title, 'skip', NO_TRANSPARENT);
  if (t.tproxy.ok) return result('tproxy', title, 'pass', `a tproxy rule for ${familyNames(t.families)} loads (throwaway table, deleted in the same transaction)`);
  const why = `a tproxy rule for ${familyNames(t.families)} does not load: ${t.tproxy.error}`;
  if (!f.tools.nft) return result('tproxy', title, 'fail', why, ['apt-get install -y nftables']);
  if (lacksCap(f, CAP_NET_ADMIN)) return result('tproxy', title, 'fail', `${why} (nftables needs CAP_NET_ADMIN)`, CAPABILITY_FIX);
  return result('tproxy', title, 'fail', why, ['modprobe -a nft_tproxy nf_tproxy_ipv4 nf_tproxy_ipv6', 'or boot a kernel with CONFIG_NFT_TPROXY, CONFIG_NF_TPROXY_IPV4 and CONFIG_NF_TPROXY_IPV6']);
}

export function checkTransparentSocket(f: DoctorFacts): CheckResult {
  const title = 'IP_TRANSPARENT (transparent mode)';
  const t = f.transparent;
  if (!t) return result('ip-transparent', title, 'skip', NO_TRANSPARENT);
  if (t.ipTransparent.ok) return result('ip-transparent', title, 'pass', `setsockopt(IP_TRANSPARENT) works for ${familyNames(t.families)}`);
  return result('ip-transparent', title, 'fail', `cannot set IP_TRANSPARENT: ${t.ipTransparent.error} (needs CAP_NET_ADMIN or CAP_NET_RAW)`, CAPABILITY_FIX);
}

/** The fwmark rule transparent mode installs in its owned slot (src/sys/iproute.ts). */
const isTproxyRule = (r: RuleEntry): boolean => Number(r.fwmark) === TPROXY_MARK && Number(r.table) === slotTable(TPROXY_SLOT);

export function checkTproxyRouting(f: DoctorFacts): CheckResult {
  const title = 'policy routing for TPROXY (transparent mode)';
  const t = f.transparent;
  if (!t) return result('tproxy-routing', title, 'skip', NO_TRANSPARENT);
  if (!t.routing) return result('tproxy-routing', title, 'skip', 'transparent.rules is false: your own fwmark rule and local route are used');
  const pref = slotTable(TPROXY_SLOT);
  const ip = (family: 4 | 6): string => (family === 6 ? 'ip -6' : 'ip');
  const foreign = t.routing.filter((r) => r.atSlot.some((x) => !isTproxyRule(x)));
  if (foreign.length > 0) {
    const seen = foreign.map((r) => `${ip(r.family)} rule pref ${pref}: ${r.atSlot.map((x) => `fwmark ${x.fwmark ?? '-'} table ${x.table}`).join(', ')}`).join('; ');
    return result('tproxy-routing', title, 'fail', `the proxy's owned rule priority ${pref} is taken by another rule (${seen})`, foreign.map((r) => `${ip(r.family)} rule del pref ${pref}   # and add it back at a free priority`));
  }
  const failed = t.routing.flatMap((r) => (r.trial && !r.trial.ok ? [{ family: r.family, error: r.trial.error }] : []));
  if (failed.length > 0) {
    const why = `cannot add the fwmark rule and local route (table ${pref}): ${failed.map((x) => `IPv${x.family}: ${x.error}`).join('; ')}`;
    if (lacksCap(f, CAP_NET_ADMIN)) return result('tproxy-routing', title, 'fail', `${why} (needs CAP_NET_ADMIN)`, CAPABILITY_FIX);
    return result('tproxy-routing', title, 'fail', why, ['boot a kernel with CONFIG_IP_MULTIPLE_TABLES (IPv6: CONFIG_IPV6_MULTIPLE_TABLES)', 'or set transparent.rules: false and route marked packets locally yourself']);
  }
  const how = t.routing.map((r) => `IPv${r.family} ${r.trial ? 'installed and removed again' : 'in place'}`).join(', ');
  return result('tproxy-routing', title, 'pass', `fwmark 0x${TPROXY_MARK.toString(16)} → table ${pref} (local route): ${how}`);
}

/**
 * Cluster mode (cluster.announce): the C flag the proxy sets at start (or finds set), the
 * announce address on this host with no foreign non-signal endpoint in the way, a subflow limit
 * that accepts the join, and no strict rp_filter where joins arrive (clients join from their
 * other path, whose route back may leave elsewhere).
 */
export function checkCluster(f: DoctorFacts, input: DoctorInput): CheckResult {
  const title = 'cluster mode (C flag, announce endpoint, limits, rp_filter)';
  const announce = input.config.cluster.announce;
  const c = f.cluster;
  if (announce === null || !c) return result('cluster', title, 'skip', 'cluster.announce not configured');
  const fails: string[] = [];
  const fix: string[] = [];
  const sysctls: Record<string, string> = {};
  const ok: string[] = [];
  if (c.cFlag === null) {
    fails.push(`${C_FLAG_SYSCTL} does not exist: the kernel cannot send the C flag`);
    fix.push('boot Linux 5.18 or later');
  } else if (c.cFlag === '0') ok.push('C flag set');
  else if (c.cFlagWritable.ok) ok.push('C flag: the proxy sets it at start');
  else {
    fails.push(`${C_FLAG_SYSCTL} = ${c.cFlag} and the proxy cannot change it (${c.cFlagWritable.error})`);
    sysctls[C_FLAG_SYSCTL] = '0';
    fix.push(...sysctlCommand({ [C_FLAG_SYSCTL]: '0' }), `echo '${C_FLAG_SYSCTL} = 0' > /etc/sysctl.d/90-mptcp-proxy-cluster.conf   # before the proxy starts; it then leaves it as it is`);
  }
  if (c.device === null) {
    fails.push(`${announce} is not an address of this host`);
    fix.push(`ip addr add ${announce}/${announce.includes(':') ? 128 : 32} dev <interface clients reach>`);
  }
  const foreign = f.endpoints?.find((e) => e.address === announce && e.id !== ANNOUNCE_ENDPOINT_ID);
  if (foreign && !foreign.flags.includes('signal')) {
    fails.push(`endpoint id ${foreign.id} holds ${announce} without "signal": the proxy cannot announce it`);
    fix.push(`ip mptcp endpoint delete id ${foreign.id}`);
  } else ok.push(foreign ? `announced by endpoint id ${foreign.id}` : f.endpoints?.some((e) => e.id === ANNOUNCE_ENDPOINT_ID) ? `announced (endpoint id ${ANNOUNCE_ENDPOINT_ID})` : `endpoint id ${ANNOUNCE_ENDPOINT_ID} signal added at start`);
  if (f.limits && f.limits.subflows < 1) {
    fails.push('subflows limit 0: every join is reset');
    fix.push(`ip mptcp limits set subflows 2 add_addr_accepted ${f.limits.addAddrAccepted}`);
  } else if (f.limits) ok.push(`subflows ${f.limits.subflows}`);
  if (c.device !== null && c.rpFilter === 1) {
    fails.push(`strict rp_filter on ${c.device}: joins whose way back leaves by another interface are dropped`);
    const s = { [rpKey(c.device)]: '2', ...(f.sysctl[K.rpAll] === '1' ? { [K.rpAll]: '2' } : {}) };
    Object.assign(sysctls, s);
    fix.push(...sysctlCommand(s));
  } else if (c.device !== null) ok.push(`rp_filter on ${c.device} loose or off`);
  if (fails.length > 0) return result('cluster', title, 'fail', `${announce}: ${fails.join('; ')}`, fix, sysctls);
  return result('cluster', title, 'pass', `${announce}${c.device ? ` on ${c.device}` : ''}: ${ok.join(', ')}`);
}

/** Every check, in the order they are printed. */
export function runChecks(f: DoctorFacts, input: DoctorInput): CheckResult[] {
  return [
    checkMptcpEnabled(f),
    checkMptcpSocket(f),
    checkPathManager(f, input),
    checkUserspacePm(f, input),
    checkLimits(f, input),
    checkEndpoints(f, input),
    checkRpFilter(f, input),
    checkBuffers(f, input),
    checkShaping(f, input),
    checkNftables(f, input),
    checkCapabilities(f, input),
    checkTproxyRule(f),
    checkTransparentSocket(f),
    checkTproxyRouting(f),
    checkCluster(f, input),
  ];
}
