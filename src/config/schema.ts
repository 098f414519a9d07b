/**
 * The one configuration schema: types, the defaults (in DEFAULTS, nowhere else), and validation
 * of a raw object (from YAML and flags) into a typed Config. The README's table mirrors DEFAULTS.
 */
import net from 'node:net';
import os from 'node:os';
import { CidrSet, normalizeIpLiteral, parseHostPort, type HostPort } from '../core/address';
import { ConfigError } from './config-error';
import { STEERING_KEYS, validateSteeringConfig, type SteeringConfig } from './steering';
import { validateUpstream, type UpstreamConfig } from './upstream';
import { bool, cidrs, int, interfaceNames, ip, isObject, oneOf, onlyKeys, Reader, section, str, type Raw } from './validate';

/** transparent: takes only traffic redirected by TPROXY (see TransparentConfig); never a proxy port. */
/** convert: the RFC 8803 Transport Converter (src/proxy/convert), TCP Fast Open on its socket. */
export type ListenerProtocol = 'http' | 'socks' | 'mixed' | 'transparent' | 'convert';

export interface ListenerConfig {
  /** Stable name used in logs, metrics labels and steering matches. */
  name: string;
  protocol: ListenerProtocol;
  host: string;
  port: number;
  /** Accept with IPPROTO_MPTCP (falls back to TCP with a warning when the kernel refuses). */
  mptcp: boolean;
  /**
   * transparent only: destination ports redirected to this listener (default: its own port).
   * MPTCP joins reach a redirected connection only when its destination port equals the
   * listener's port (the kernel refuses a join on another port: MismatchPortSynRx).
   */
  ports?: number[];
  /** convert only: accepted Cookie TLV values (hex); when set, a Connect without one of them is refused. */
  cookies?: string[];
  /** convert only: TCP Fast Open queue length of the listening socket. */
  fastOpenQueue?: number;
}

/** How redirected traffic reaches the transparent listeners (src/proxy/transparent.ts). */
export interface TransparentConfig {
  /** Interfaces whose incoming TCP is intercepted; empty = every interface. */
  interfaces: string[];
  /** Install the nft TPROXY table and the policy route; false = the operator's own rules. */
  rules: boolean;
}

export interface UserConfig {
  name: string;
  /** "scrypt$N$r$p$salt$hash" (see `mptcp-proxy hash-password`) or "plain$secret" for tests. */
  password: string;
}

/** Per-connection buffer sizing and MSS clamping (src/tuning, docs/tuning.md). */
export interface TuningConfig {
  buffers: {
    /** auto: size from the subflows' rate × RTT when autotuning cannot reach it; fixed: every client socket at max; off. */
    mode: 'auto' | 'fixed' | 'off';
    /** Kernel bytes, as SO_RCVBUF/SO_SNDBUF and tcp_rmem/tcp_wmem count them. */
    min: number;
    max: number;
    /** Re-sample period of connections moving bulk data, ms; 0 = only when subflows come up. */
    intervalMs: number;
  };
  /** auto: install the nft clamp when nft works here (root + nftables); true: required; false: never. */
  mssClamp: 'auto' | boolean;
  /** Client-facing interfaces the clamp applies to; empty = all. */
  mssInterfaces: string[];
}

/** Scale-out behind an L4 load balancer (src/proxy/announce.ts, docs/scale-out.md). */
export interface ClusterConfig {
  /**
   * This instance's own unicast address, announced (ADD_ADDR) to every client: with the C flag
   * set, clients send their joins here instead of to the load balancer's shared address. null = off.
   */
  announce: string | null;
}

export interface Config {
  /** This instance's name: the `instance` label on every metric. */
  instance: string;
  cluster: ClusterConfig;
  /** Worker processes sharing the listening ports (SO_REUSEPORT); 1 = a single process. */
  workers: number;
  listeners: ListenerConfig[];
  access: {
    /** Client CIDRs allowed to use the proxy. Empty = loopback only. */
    allowClients: string[];
    /** Destination CIDRs opened on purpose even though they are in a denied range. */
    allowDest: string[];
    /** Extra destination CIDRs to deny. */
    denyDest: string[];
    /** Also deny RFC 1918 / CGNAT / ULA destinations. */
    denyPrivate: boolean;
    /** Ports CONNECT / SOCKS may reach; empty = any. */
    connectPorts: number[];
    users: UserConfig[];
    /** How long verified credentials are reused without hashing again (Squid's credentialsttl); 0 = never. */
    credentialsTtlMs: number;
  };
  /** Destinations: direct, or through parent proxies (src/upstream, config/upstream.ts). */
  upstream: UpstreamConfig;
  timeouts: {
    handshakeMs: number;
    idleMs: number;
    /** On SIGTERM: how long established connections may finish before they are closed. */
    drainMs: number;
  };
  limits: {
    maxConnections: number;
    maxConnectionsPerClient: number;
    maxHeaderBytes: number;
    /** Header lines per request head (as Apache's LimitRequestFields); more is answered 431. */
    maxHeaderLines: number;
    maxUdpAssociations: number;
  };
  relay: {
    /** splice = native zero-copy addon when built, stream = JS fallback. */
    engine: 'auto' | 'splice' | 'stream';
    /**
     * Native accept-to-splice fast path (src/fastpath): auto = when the addon is built and the
     * engine is not stream, on = demand it, off = every connection on the TS front ends.
     */
    fastPath: 'auto' | 'on' | 'off';
    /** Fast path epoll threads per process; 0 = the cores divided among the workers. */
    fastPathThreads: number;
  };
  log: {
    level: 'error' | 'warn' | 'info' | 'debug';
    format: 'auto' | 'json' | 'text';
  };
  metrics: {
    enabled: boolean;
    host: string;
    port: number;
  };
  sniffer: {
    /** Client-facing interfaces to capture on (pcap), feeding the subflow registry. */
    interfaces: string[];
  };
  steering: SteeringConfig;
  tuning: TuningConfig;
  transparent: TransparentConfig;
  paths: PathsConfig;
}

/** How client paths recover (src/tuning/rto.ts). */
export interface PathsConfig {
  /**
   * Cap on the retransmission backoff of every TCP socket in the proxy's network namespace
   * (net.ipv4.tcp_rto_max_ms, set while the proxy runs and restored after): a subflow whose path
   * was blackholed retries at least this often, so it carries again about this soon after the
   * repair. null = the kernel's own (120000). The kernel allows 1000..120000.
   */
  rtoMaxMs: number | null;
  /**
   * Who answers the kernel's path-manager events for the proxy's connections: `kernel` (the
   * in-kernel PM with its endpoints and limits) or `userspace` (the proxy, src/pathmanager:
   * announces per connection, per-subflow backup, heals lost paths; sets net.mptcp.pm_type=1 in
   * its namespace while it runs).
   */
  pathManager: 'kernel' | 'userspace';
  /**
   * The userspace path manager's announce policy: these proxy addresses go to each connection
   * (those of its family, other than the one it came in on), address id = position + 1. null =
   * what the in-kernel PM would announce, the namespace's `signal` endpoints.
   */
  announce: string[] | null;
}

export const DEFAULTS: Config = {
  instance: os.hostname(),
  cluster: { announce: null },
  workers: 1,
  listeners: [
    { name: 'http', protocol: 'http', host: '127.0.0.1', port: 3128, mptcp: true },
    { name: 'socks', protocol: 'socks', host: '127.0.0.1', port: 1080, mptcp: true },
  ],
  access: { allowClients: [], allowDest: [], denyDest: [], denyPrivate: false, connectPorts: [], users: [], credentialsTtlMs: 3_600_000 },
  upstream: { mptcp: false, connectTimeoutMs: 10_000, happyEyeballsDelayMs: 250, parents: [], routes: [], probe: { intervalMs: 5_000, timeoutMs: 2_000, downAfter: 2, upAfter: 1 } },
  timeouts: { handshakeMs: 15_000, idleMs: 300_000, drainMs: 5_000 },
  limits: { maxConnections: 20_000, maxConnectionsPerClient: 2_000, maxHeaderBytes: 32 * 1024, maxHeaderLines: 100, maxUdpAssociations: 1_000 },
  relay: { engine: 'auto', fastPath: 'auto', fastPathThreads: 0 },
  log: { level: 'info', format: 'auto' },
  metrics: { enabled: true, host: '127.0.0.1', port: 9464 },
  sniffer: { interfaces: [] },
  steering: { policies: [], uplinks: [] },
  tuning: { buffers: { mode: 'auto', min: 1 << 20, max: 32 << 20, intervalMs: 5_000 }, mssClamp: 'auto', mssInterfaces: [] },
  transparent: { interfaces: [], rules: true },
  paths: { rtoMaxMs: null, pathManager: 'kernel', announce: null },
};

/**
 * protocol: convert. IANA names the service `convert` but assigns no port; 5124 is the one
 * Wireshark's Convert dissector uses, taken when `listen` names only a host.
 */
export const CONVERT_DEFAULTS = { port: 5124, fastOpenQueue: 1024 } as const;

export { ConfigError };

function listeners(v: unknown, r: Reader): ListenerConfig[] {
  if (v === undefined) return DEFAULTS.listeners.map((l) => ({ ...l }));
  if (!Array.isArray(v)) throw r.error('must be a list');
  const seen = new Set<string>();
  return v.map((item, i) => {
    const ri = r.at(`[${i}]`);
    if (!isObject(item)) throw ri.error('must be a mapping');
    const protocol = oneOf<ListenerProtocol>(item, 'protocol', 'http', ['http', 'socks', 'mixed', 'transparent', 'convert'], ri);
    onlyKeys(item, ['name', 'protocol', 'listen', 'mptcp', ...(PROTOCOL_KEYS[protocol] ?? [])], ri);
    if (typeof item.listen !== 'string') throw ri.at('listen').error('must be "HOST:PORT"');
    let ep: HostPort;
    try {
      ep = parseHostPort(protocol === 'convert' ? withConvertPort(item.listen) : item.listen);
    } catch (e) {
      throw ri.at('listen').error((e as Error).message);
    }
    const name = item.name === undefined ? protocol : item.name;
    if (typeof name !== 'string' || !/^[a-z0-9_-]{1,32}$/i.test(name)) throw ri.at('name').error('must match [a-zA-Z0-9_-]{1,32}');
    const uniqueName = seen.has(name) ? `${name}-${i}` : name;
    seen.add(uniqueName);
    const l: ListenerConfig = { name: uniqueName, protocol, host: ep.host, port: ep.port, mptcp: bool(item, 'mptcp', true, ri) };
    if (protocol === 'transparent') l.ports = transparentPorts(item, l, ri);
    if (protocol === 'convert') Object.assign(l, convertKeys(item, ri));
    return l;
  });
}

/** Listener keys beyond name, protocol, listen and mptcp. */
const PROTOCOL_KEYS: Partial<Record<ListenerProtocol, string[]>> = { transparent: ['ports'], convert: ['cookies', 'fastOpenQueue'] };

/** "HOST" or "[V6]" alone means the Convert default port. */
function withConvertPort(listen: string): string {
  if (/\]$/.test(listen) || !/:\d+$/.test(listen)) return `${listen}:${CONVERT_DEFAULTS.port}`;
  return listen;
}

function convertKeys(item: Raw, r: Reader): Pick<ListenerConfig, 'cookies' | 'fastOpenQueue'> {
  const cookies = item.cookies ?? [];
  // A Cookie TLV holds at most 1014 bytes (one message of 255 words, less the headers).
  if (!Array.isArray(cookies) || cookies.some((c) => typeof c !== 'string' || !/^([0-9a-f]{2}){1,1014}$/i.test(c))) throw r.at('cookies').error('must be a list of hex strings (1..1014 bytes each)');
  return { cookies: cookies as string[], fastOpenQueue: int(item, 'fastOpenQueue', CONVERT_DEFAULTS.fastOpenQueue, r, 1, 65535) };
}

/** The redirect target of the nft rule: an IP literal and a fixed port. */
function transparentPorts(item: Raw, l: ListenerConfig, r: Reader): number[] {
  if (!net.isIP(l.host)) throw r.at('listen').error('a transparent listener needs an IP address (the TPROXY rule redirects to it)');
  if (l.port === 0) throw r.at('listen').error('a transparent listener needs a fixed port');
  const v = item.ports ?? [l.port];
  if (!Array.isArray(v) || v.length === 0 || v.some((p) => !Number.isInteger(p) || p < 1 || p > 65535)) throw r.at('ports').error('must be a non-empty list of ports');
  return [...new Set(v as number[])];
}

/** One listener per destination port and address family, and clients it may serve. */
function checkTransparent(c: Config): void {
  const owner = new Map<string, string>();
  for (const l of c.listeners) {
    if (l.protocol !== 'transparent') continue;
    if (c.access.allowClients.length === 0) {
      throw new ConfigError(`listener ${l.name} is transparent but access.allowClients is empty: redirected clients are never loopback, list their networks (--allow-client CIDR)`);
    }
    const family = net.isIPv6(l.host) ? 6 : 4;
    for (const p of l.ports ?? []) {
      const other = owner.get(`${family}/${p}`);
      if (other) throw new ConfigError(`listeners ${other} and ${l.name} both take redirected IPv${family} port ${p}`);
      owner.set(`${family}/${p}`, l.name);
    }
  }
}

/** A hash scrypt can run: caught here, not at a client's first login. */
function validScrypt(stored: string): boolean {
  const m = /^scrypt\$(\d+)\$(\d+)\$(\d+)\$[A-Za-z0-9+/]+=*\$[A-Za-z0-9+/]+=*$/.exec(stored);
  if (!m) return false;
  const [n, r, p] = [Number(m[1]), Number(m[2]), Number(m[3])];
  // OpenSSL's limits: N a power of two above 1 and below 2^(16r), 128·r·(N+p+2) bytes within the
  // 256 MiB maxmem src/access/passwords.ts allows.
  return n > 1 && (n & (n - 1)) === 0 && r >= 1 && p >= 1 && Math.log2(n) < 16 * r && 128 * r * (n + p + 2) <= 256 * 2 ** 20;
}

function users(v: unknown, r: Reader): UserConfig[] {
  if (v === undefined) return [];
  if (!Array.isArray(v)) throw r.error('must be a list');
  return v.map((u, i) => {
    const ri = r.at(`[${i}]`);
    if (!isObject(u)) throw ri.error('must be a mapping');
    onlyKeys(u, ['name', 'password'], ri);
    if (typeof u.name !== 'string' || u.name.length === 0 || u.name.length > 255) throw ri.at('name').error('must be a string of 1..255 bytes');
    if (typeof u.password !== 'string' || !(u.password.startsWith('plain$') || validScrypt(u.password))) throw ri.at('password').error('must be "scrypt$N$r$p$salt$hash" (mptcp-proxy hash-password) or "plain$..."');
    return { name: u.name, password: u.password };
  });
}

function transparentSection(t: Raw, r: Reader): TransparentConfig {
  onlyKeys(t, ['interfaces', 'rules'], r);
  return { interfaces: interfaceNames(t, 'interfaces', r), rules: bool(t, 'rules', DEFAULTS.transparent.rules, r) };
}

const UNROUTABLE = new CidrSet(['0.0.0.0/8', '127.0.0.0/8', '169.254.0.0/16', '224.0.0.0/3', '::/128', '::1/128', 'fe80::/10', 'ff00::/8']);

/**
 * An address announced to clients (ADD_ADDR): they join it from their other paths, so it must be
 * a unicast address they can route to. In one spelling, the kernel's (as `ip` and getifaddrs print
 * it), for comparisons at start.
 */
function announcedIp(raw: Raw, key: string, r: Reader): string | undefined {
  const v = ip(raw, key, r);
  if (v === undefined) return undefined;
  if (UNROUTABLE.has(v)) r.at(key).fail(`"${v}" is not a unicast address clients can reach (loopback, link-local, multicast or unspecified)`);
  const plain = normalizeIpLiteral(v) ?? v;
  return net.isIPv6(plain) ? new net.SocketAddress({ address: plain, family: 'ipv6' }).address : plain;
}

function clusterSection(c: Raw, r: Reader): ClusterConfig {
  onlyKeys(c, ['announce'], r);
  const announce = announcedIp(c, 'announce', r);
  return announce === undefined ? { ...DEFAULTS.cluster } : { announce };
}

/** paths.announce: the userspace path manager's addresses, at most 255 (one address id each). */
function announceList(pa: Raw, r: Reader): string[] | null {
  const v = pa.announce;
  if (v === undefined || v === null) return null;
  if (!Array.isArray(v) || v.length > 255) throw r.at('announce').error('must be a list of at most 255 IP addresses, or null');
  const list = v.map((a, i) => announcedIp({ [`announce[${i}]`]: a }, `announce[${i}]`, r)!);
  if (new Set(list).size !== list.length) r.at('announce').fail('lists an address twice');
  return list;
}

/** Joins to the announced address go to the connection's port: each listener needs a fixed one. */
function checkCluster(c: Config): void {
  const announce = c.cluster.announce;
  if (announce === null) return;
  const uplink = c.steering.uplinks.find((u) => u.signal && u.source === announce);
  // The kernel takes one endpoint per address: the uplink's would fail beside the announce one.
  if (uplink) throw new ConfigError(`cluster.announce ${announce} is uplink ${uplink.name}'s source, which steering already announces: drop one`);
  for (const l of c.listeners) {
    if (!l.mptcp) continue;
    if (l.port === 0) throw new ConfigError(`cluster.announce: listener ${l.name} has no fixed port (joins to ${announce} come to the connection's port)`);
  }
}

function tuningSection(t: Raw, r: Reader): TuningConfig {
  const d = DEFAULTS.tuning;
  onlyKeys(t, ['buffers', 'mssClamp', 'mssInterfaces'], r);
  const b = section(t, 'buffers', r);
  const br = r.at('buffers');
  onlyKeys(b, ['mode', 'min', 'max', 'intervalMs'], br);
  // 4 KiB is the kernel's own floor; 1 GiB is beyond any sane per-socket buffer.
  const min = int(b, 'min', d.buffers.min, br, 4096, 1 << 30);
  const max = int(b, 'max', d.buffers.max, br, 4096, 1 << 30);
  const mode = oneOf(b, 'mode', d.buffers.mode, ['auto', 'fixed', 'off'], br);
  // fixed uses max alone, so a small fixed size needs no matching min.
  if (mode === 'auto' && min > max) throw br.error(`min (${min}) must not exceed max (${max})`);
  const clamp = t.mssClamp ?? d.mssClamp;
  if (clamp !== 'auto' && typeof clamp !== 'boolean') throw r.at('mssClamp').error('must be auto, true or false');
  return {
    buffers: { mode, min, max, intervalMs: int(b, 'intervalMs', d.buffers.intervalMs, br, 0, 3_600_000) },
    mssClamp: clamp,
    mssInterfaces: interfaceNames(t, 'mssInterfaces', r),
  };
}

/** Validate a raw object (YAML document merged with flags) into a Config. Throws ConfigError. */
export function validateConfig(input: unknown): Config {
  const root = new Reader('');
  const raw = input ?? {};
  if (!isObject(raw)) throw root.error('config must be a mapping');
  onlyKeys(raw, ['instance', 'cluster', 'workers', 'listeners', 'access', 'upstream', 'timeouts', 'limits', 'relay', 'log', 'metrics', 'sniffer', 'tuning', 'transparent', 'paths', ...STEERING_KEYS], root);
  const d = DEFAULTS;

  const a = section(raw, 'access', root);
  const ar = root.at('access');
  onlyKeys(a, ['allowClients', 'allowDest', 'denyDest', 'denyPrivate', 'connectPorts', 'users', 'credentialsTtlMs'], ar);
  const connectPorts = a.connectPorts === undefined ? [] : a.connectPorts;
  if (!Array.isArray(connectPorts) || connectPorts.some((p) => !Number.isInteger(p) || p < 1 || p > 65535)) throw ar.at('connectPorts').error('must be a list of ports');

  const t = section(raw, 'timeouts', root);
  onlyKeys(t, ['handshakeMs', 'idleMs', 'drainMs'], root.at('timeouts'));
  const l = section(raw, 'limits', root);
  onlyKeys(l, ['maxConnections', 'maxConnectionsPerClient', 'maxHeaderBytes', 'maxHeaderLines', 'maxUdpAssociations'], root.at('limits'));
  const rl = section(raw, 'relay', root);
  onlyKeys(rl, ['engine', 'fastPath', 'fastPathThreads'], root.at('relay'));
  const lg = section(raw, 'log', root);
  onlyKeys(lg, ['level', 'format'], root.at('log'));
  const sn = section(raw, 'sniffer', root);
  onlyKeys(sn, ['interfaces'], root.at('sniffer'));
  const snIfs = interfaceNames(sn, 'interfaces', root.at('sniffer'));
  const m = section(raw, 'metrics', root);
  onlyKeys(m, ['enabled', 'listen'], root.at('metrics'));
  let metricsEp: HostPort = { host: d.metrics.host, port: d.metrics.port };
  if (m.listen !== undefined) {
    if (typeof m.listen !== 'string') throw root.at('metrics.listen').error('must be "HOST:PORT"');
    try {
      metricsEp = parseHostPort(m.listen);
    } catch (e) {
      throw root.at('metrics.listen').error((e as Error).message);
    }
  }

  const tuning = tuningSection(section(raw, 'tuning', root), root.at('tuning'));
  const pa = section(raw, 'paths', root);
  onlyKeys(pa, ['rtoMaxMs', 'pathManager', 'announce'], root.at('paths'));

  let workers = d.workers;
  if (raw.workers === 'auto') workers = os.availableParallelism();
  else if (raw.workers !== undefined) workers = int(raw, 'workers', d.workers, root, 1, 256);
  const instance = str(raw, 'instance', root) ?? d.instance;
  // A Prometheus label value: printable, bounded.
  if (!/^[\w.:@-]{1,64}$/.test(instance)) root.at('instance').fail('must be 1..64 of letters, digits, _ . : @ -');
  const config: Config = {
    instance,
    cluster: clusterSection(section(raw, 'cluster', root), root.at('cluster')),
    workers,
    listeners: listeners(raw.listeners, root.at('listeners')),
    access: {
      allowClients: cidrs(a, 'allowClients', d.access.allowClients, ar),
      allowDest: cidrs(a, 'allowDest', d.access.allowDest, ar),
      denyDest: cidrs(a, 'denyDest', d.access.denyDest, ar),
      denyPrivate: bool(a, 'denyPrivate', d.access.denyPrivate, ar),
      connectPorts: connectPorts as number[],
      users: users(a.users, ar.at('users')),
      credentialsTtlMs: int(a, 'credentialsTtlMs', d.access.credentialsTtlMs, ar, 0, 86_400_000),
    },
    upstream: validateUpstream(section(raw, 'upstream', root), root.at('upstream'), d.upstream),
    timeouts: {
      handshakeMs: int(t, 'handshakeMs', d.timeouts.handshakeMs, root.at('timeouts'), 1, 600_000),
      idleMs: int(t, 'idleMs', d.timeouts.idleMs, root.at('timeouts'), 0, 86_400_000),
      drainMs: int(t, 'drainMs', d.timeouts.drainMs, root.at('timeouts'), 0, 3_600_000),
    },
    limits: {
      maxConnections: int(l, 'maxConnections', d.limits.maxConnections, root.at('limits'), 1),
      maxConnectionsPerClient: int(l, 'maxConnectionsPerClient', d.limits.maxConnectionsPerClient, root.at('limits'), 1),
      maxHeaderBytes: int(l, 'maxHeaderBytes', d.limits.maxHeaderBytes, root.at('limits'), 1024, 1 << 20),
      maxHeaderLines: int(l, 'maxHeaderLines', d.limits.maxHeaderLines, root.at('limits'), 1, 10_000),
      maxUdpAssociations: int(l, 'maxUdpAssociations', d.limits.maxUdpAssociations, root.at('limits'), 0),
    },
    relay: {
      engine: oneOf(rl, 'engine', d.relay.engine, ['auto', 'splice', 'stream'], root.at('relay')),
      fastPath: oneOf(rl, 'fastPath', d.relay.fastPath, ['auto', 'on', 'off'], root.at('relay')),
      fastPathThreads: int(rl, 'fastPathThreads', d.relay.fastPathThreads, root.at('relay'), 0, 256),
    },
    log: {
      level: oneOf(lg, 'level', d.log.level, ['error', 'warn', 'info', 'debug'], root.at('log')),
      format: oneOf(lg, 'format', d.log.format, ['auto', 'json', 'text'], root.at('log')),
    },
    metrics: { enabled: bool(m, 'enabled', d.metrics.enabled, root.at('metrics')), host: metricsEp.host, port: metricsEp.port },
    sniffer: { interfaces: snIfs },
    steering: validateSteeringConfig(raw),
    tuning,
    transparent: transparentSection(section(raw, 'transparent', root), root.at('transparent')),
    // The kernel's own range for net.ipv4.tcp_rto_max_ms.
    paths: {
      rtoMaxMs: pa.rtoMaxMs === undefined || pa.rtoMaxMs === null ? d.paths.rtoMaxMs : int(pa, 'rtoMaxMs', 0, root.at('paths'), 1000, 120_000),
      pathManager: oneOf(pa, 'pathManager', d.paths.pathManager, ['kernel', 'userspace'], root.at('paths')),
      announce: announceList(pa, root.at('paths')),
    },
  };
  checkTransparent(config);
  checkCluster(config);
  checkNoOpenProxy(config);
  return config;
}

const LOOPBACK = new CidrSet(['127.0.0.0/8', '::1/128']);

/**
 * Refuse configs that would make an open proxy by accident: a listener on a non-loopback
 * address needs a client allow-list or users.
 */
function checkNoOpenProxy(c: Config): void {
  if (c.access.allowClients.length > 0 || c.access.users.length > 0) return;
  for (const l of c.listeners) {
    const loopback = l.host === 'localhost' || LOOPBACK.has(l.host);
    if (!loopback) {
      throw new ConfigError(
        `listener ${l.name} binds ${l.host}:${l.port}, which is not loopback, but no client allow-list (--allow-client CIDR) ` +
          `and no users are configured: that would be an open proxy. Add --allow-client or access.users.`,
      );
    }
  }
}
