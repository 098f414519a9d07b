/**
 * Config schema of the steering engine: policies (ordered, first match wins) and uplinks.
 * Validated here into typed values (rates in bits/s, parsed CIDRs), consumed by src/steering.
 *
 * Defaults (no steering at all without policies or uplinks):
 * - policy `match`: {} matches every subflow; a policy with no action exempts what it matches
 *   from later policies (first match wins).
 * - `ceil`: equal to `rate` (a hard cap); `rate` without `ceil` caps, `ceil` above `rate` lets
 *   the class borrow nothing (HTB classes are siblings under the root) but documents intent.
 * - `direction`: `both` (default) shapes the subflow's packets to the client (egress HTB) and from
 *   the client (an owned IFB with the same classes); `download` or `upload` only one of them.
 * - `share`: none, i.e. one HTB class per subflow. Policies naming the same share must agree on
 *   rate and ceil; all their subflows on one interface then share one class.
 * - uplink `signal`: true when `source` is set (the proxy announces that address to clients).
 * - uplink `probe`: none (the uplink counts as always up). Probe defaults: port 7, every 200 ms,
 *   500 ms timeout, down after 3 misses, up after 3 successes. A refused connection counts as
 *   a success: it proves the path works.
 */
import net from 'node:net';
import { parseCidr } from '../core/address';
import type { ClientView } from '../core/connection';
import type { MatchSpec } from '../core/match';
import { cidr, int, interfaceName, ip, isObject, onlyKeys, Reader, str, type Raw } from './validate';

export type PolicyMatch = MatchSpec;

/**
 * Every policy match key, with the facts of the client connection (what the registry learns
 * after the subflow is up) it reads; [] = facts of the subflow itself. The registry re-evaluates
 * a connection's subflows when one of these client facts changes, so a new match key must be
 * listed here (the type requires it) to ever match on late-known facts.
 */
export const POLICY_MATCH_FIELDS = {
  client: [],
  local: [],
  interface: [],
  kind: [],
  destination: ['destination', 'upstreamAddress'],
  user: ['user'],
  listener: ['listener'],
} as const satisfies { readonly [K in keyof Required<PolicyMatch>]: readonly (keyof ClientView)[] };

/** The client facts any policy can match on (see POLICY_MATCH_FIELDS). */
export const POLICY_CLIENT_FIELDS: readonly (keyof ClientView)[] = [...new Set(Object.values(POLICY_MATCH_FIELDS).flat())];

export type ShapeDirection = 'both' | 'download' | 'upload';
export const SHAPE_DIRECTIONS: readonly ShapeDirection[] = ['both', 'download', 'upload'];

export interface PolicyConfig {
  name: string;
  match: PolicyMatch;
  /** HTB rate/ceil in bits per second. */
  rate?: number;
  ceil?: number;
  /** Set whenever rate is: which way the rate applies (download = proxy → client). */
  direction?: ShapeDirection;
  share?: string;
  uplink?: string;
  backup?: boolean;
  /** ATSSS steering mode over `paths` (src/steering/modes.ts). */
  mode?: SteeringModeConfig;
}

export type SteeringModeName = 'active-standby' | 'smallest-delay' | 'load-balance' | 'priority';
export const STEERING_MODES: readonly SteeringModeName[] = ['active-standby', 'smallest-delay', 'load-balance', 'priority'];

/** One path of a mode: a name and what puts a subflow on it (at least one key). */
export interface ModePath {
  name: string;
  client?: string;
  local?: string;
  interface?: string;
  /** An uplink: its interface, and its health probe says whether the path is up. */
  uplink?: string;
}

export interface SteeringModeConfig {
  name: SteeringModeName;
  /** In order of preference: the first is active (active-standby) or preferred (priority). */
  paths: ModePath[];
  /** load-balance: byte-share weight per path name (all paths, > 0). */
  weights?: Record<string, number>;
  /** priority: the preferred path is left when its RTT (ms) or retransmitted share (%) is over these. */
  rttThresholdMs?: number;
  lossThresholdPercent?: number;
  /** smallest-delay: another path must be this much faster (ms) to take over; priority: the margin under the threshold to return. */
  hysteresisMs: number;
  /** How long a path must look better (ms) before the mode switches to it. */
  holdMs: number;
  /** HTB cap of a standby path's subflows where the kernel cannot mark them backup, and during a probe (bits/s). */
  standbyRate: number;
  /** smallest-delay: how often a backup standby path is probed for its RTT (ms); 0 = never. */
  probeIntervalMs?: number;
}

export interface ProbeConfig {
  host: string;
  port: number;
  intervalMs: number;
  timeoutMs: number;
  downAfter: number;
  upAfter: number;
}

export interface UplinkConfig {
  name: string;
  interface: string;
  source?: string;
  gateway?: string;
  /** Announce `source` to clients as an MPTCP signal endpoint. */
  signal?: boolean;
  probe?: ProbeConfig;
}

export interface SteeringConfig {
  policies: PolicyConfig[];
  uplinks: UplinkConfig[];
}

export const STEERING_KEYS = ['policies', 'uplinks'] as const;

/** Each uplink gets its own mark, routing table, rule priority and endpoint id from a fixed owned range. */
export const MAX_UPLINKS = 32;

export const PROBE_DEFAULTS = { port: 7, intervalMs: 200, timeoutMs: 500, downAfter: 3, upAfter: 3 } as const;

/**
 * Mode defaults: hold 1 s; smallest-delay needs 10 ms. Standby cap: 500 kbit/s is 1 % of a
 * 50 Mbit/s active path; smallest-delay's 2 Mbit/s keeps the queue the standby's own cap adds
 * to its RTT reading under 20 ms (a full 3-frame leaf, sys/tc.ts STANDBY_LEAF_BYTES). A backup
 * standby path is probed every 2 s (steering/modes.ts PROBE_MS, rounded up to mode ticks, at
 * the standby cap): at most 150 kB per probe (measured: 1.2-1.6 % of a ~45 Mbit/s download), and
 * a path that became faster is seen within an interval.
 */
export const MODE_DEFAULTS = { hysteresisMs: 10, holdMs: 1000, standbyRate: 500_000, standbyRateSmallestDelay: 2_000_000, probeIntervalMs: 2000 } as const;

/** Rates below this make HTB misbehave; above, nothing here can send that fast. */
const MIN_RATE = 1_000;
const MAX_RATE = 400e9;

const RATE_UNITS: Readonly<Record<string, number>> = {
  '': 1,
  bit: 1,
  kbit: 1e3,
  mbit: 1e6,
  gbit: 1e9,
  tbit: 1e12,
  kibit: 1024,
  mibit: 1024 ** 2,
  gibit: 1024 ** 3,
  // tc's own spelling: "bps" is BYTES per second.
  bps: 8,
  kbps: 8e3,
  mbps: 8e6,
  gbps: 8e9,
};

/** "5mbit", "500kbit", "1.5gbit", "2mbps" (bytes, as tc reads it) or a number of bits/s → bits/s; null if not a rate. */
export function parseRate(v: unknown): number | null {
  if (typeof v === 'number') return Number.isFinite(v) && Math.round(v) > 0 ? Math.round(v) : null;
  if (typeof v !== 'string') return null;
  const m = /^\s*(\d+(?:\.\d+)?)\s*([a-z]*)\s*$/i.exec(v);
  if (!m) return null;
  const unit = RATE_UNITS[m[2]!.toLowerCase()];
  if (unit === undefined) return null;
  const bits = Math.round(Number(m[1]) * unit);
  return bits > 0 ? bits : null;
}

function rate(raw: Raw, key: string, r: Reader): number | undefined {
  const v = raw[key];
  if (v === undefined) return undefined;
  const bits = parseRate(v);
  if (bits === null) return r.at(key).fail(`${JSON.stringify(v)} is not a rate (examples: 5mbit, 500kbit, 1gbit)`);
  if (bits < MIN_RATE || bits > MAX_RATE) return r.at(key).fail(`${JSON.stringify(v)} is out of range (1kbit..400gbit)`);
  return bits;
}

/** A CIDR, or a domain suffix such as "example.com" / ".example.com". */
function destination(raw: Raw, r: Reader): string | undefined {
  const v = str(raw, 'destination', r);
  if (v === undefined) return undefined;
  try {
    parseCidr(v);
    return v;
  } catch {
    const name = v.replace(/^\./, '').toLowerCase();
    if (!/^[a-z0-9_]([a-z0-9_-]{0,62})?(\.[a-z0-9_]([a-z0-9_-]{0,62})?)*$/.test(name)) {
      return r.at('destination').fail(`"${v}" is neither a CIDR range nor a domain suffix`);
    }
    return name;
  }
}

/** A `match` mapping; `keys` narrows the keys allowed (the upstream routes match whole connections, not subflows). */
export function validateMatch(raw: unknown, r: Reader, keys: readonly (keyof PolicyMatch)[] = Object.keys(POLICY_MATCH_FIELDS) as (keyof PolicyMatch)[]): PolicyMatch {
  if (raw === undefined) return {};
  if (!isObject(raw)) return r.fail('must be a mapping');
  onlyKeys(raw, keys, r);
  const kind = raw.kind;
  if (kind !== undefined && kind !== 'initial' && kind !== 'join') r.at('kind').fail('must be initial or join');
  const m: PolicyMatch = {
    client: cidr(raw, 'client', r),
    local: cidr(raw, 'local', r),
    interface: interfaceName(raw, 'interface', r),
    kind: kind as PolicyMatch['kind'],
    destination: destination(raw, r),
    user: str(raw, 'user', r),
    listener: str(raw, 'listener', r),
  };
  return Object.fromEntries(Object.entries(m).filter(([, v]) => v !== undefined)) as PolicyMatch;
}

function validateProbe(raw: unknown, r: Reader): ProbeConfig | undefined {
  if (raw === undefined) return undefined;
  const obj: Raw = typeof raw === 'string' ? { target: raw } : isObject(raw) ? raw : r.fail('must be HOST[:PORT] or a mapping');
  onlyKeys(obj, ['target', 'intervalMs', 'timeoutMs', 'downAfter', 'upAfter'], r);
  const target = str(obj, 'target', r) ?? r.at('target').fail('is required');
  const m = /^(?:\[([^\]]+)\]|([^:]+))(?::(\d{1,5}))?$/.exec(target);
  const host = m?.[1] ?? m?.[2];
  const port = m?.[3] === undefined ? PROBE_DEFAULTS.port : Number(m[3]);
  if (!host || net.isIP(host) === 0 || port < 1 || port > 65535) return r.at('target').fail(`"${target}" is not IP[:PORT]`);
  const probe: ProbeConfig = {
    host,
    port,
    intervalMs: int(obj, 'intervalMs', PROBE_DEFAULTS.intervalMs, r, 1, 600_000),
    timeoutMs: int(obj, 'timeoutMs', PROBE_DEFAULTS.timeoutMs, r, 1, 60_000),
    downAfter: int(obj, 'downAfter', PROBE_DEFAULTS.downAfter, r, 1, 100),
    upAfter: int(obj, 'upAfter', PROBE_DEFAULTS.upAfter, r, 1, 100),
  };
  return probe;
}

function validateUplink(raw: unknown, r: Reader): UplinkConfig {
  if (!isObject(raw)) return r.fail('must be a mapping with name and interface');
  onlyKeys(raw, ['name', 'interface', 'source', 'gateway', 'signal', 'probe'], r);
  const name = str(raw, 'name', r) ?? r.at('name').fail('is required');
  const iface = interfaceName(raw, 'interface', r) ?? r.at('interface').fail('is required');
  const source = ip(raw, 'source', r);
  const signal = raw.signal;
  if (signal !== undefined && typeof signal !== 'boolean') r.at('signal').fail('must be true or false');
  if (signal === true && source === undefined) r.at('signal').fail('needs a source address to announce');
  const u: UplinkConfig = { name, interface: iface };
  if (source !== undefined) u.source = source;
  const gateway = ip(raw, 'gateway', r);
  if (gateway !== undefined) u.gateway = gateway;
  u.signal = (signal as boolean | undefined) ?? source !== undefined;
  const probe = validateProbe(raw.probe, r.at('probe'));
  if (probe) u.probe = probe;
  return u;
}

function validatePolicy(raw: unknown, r: Reader, uplinks: ReadonlySet<string>): PolicyConfig {
  if (!isObject(raw)) return r.fail('must be a mapping with name, match and actions');
  onlyKeys(raw, ['name', 'match', 'rate', 'ceil', 'direction', 'share', 'uplink', 'backup', ...MODE_KEYS], r);
  const name = str(raw, 'name', r) ?? r.at('name').fail('is required');
  const p: PolicyConfig = { name, match: validateMatch(raw.match, r.at('match')) };
  const rt = rate(raw, 'rate', r);
  const c = rate(raw, 'ceil', r);
  if (rt !== undefined || c !== undefined) {
    p.rate = rt ?? c!;
    p.ceil = c ?? p.rate;
    if (p.ceil < p.rate) r.at('ceil').fail('must not be below rate');
  }
  const dir = raw.direction;
  if (dir !== undefined) {
    if (!SHAPE_DIRECTIONS.includes(dir as ShapeDirection)) r.at('direction').fail(`must be one of: ${SHAPE_DIRECTIONS.join(', ')}`);
    if (p.rate === undefined) r.at('direction').fail('needs a rate');
  }
  if (p.rate !== undefined) p.direction = (dir as ShapeDirection | undefined) ?? 'both';
  const share = str(raw, 'share', r);
  if (share !== undefined) {
    if (p.rate === undefined) r.at('share').fail('needs a rate');
    p.share = share;
  }
  const uplink = str(raw, 'uplink', r);
  if (uplink !== undefined) {
    if (!uplinks.has(uplink)) r.at('uplink').fail(`"${uplink}" is not a configured uplink (uplinks: ${[...uplinks].join(', ') || 'none'})`);
    p.uplink = uplink;
  }
  const backup = raw.backup;
  if (backup !== undefined) {
    if (typeof backup !== 'boolean') r.at('backup').fail('must be true or false');
    // The in-kernel path manager sets backup (MP_PRIO) per proxy address, not per subflow.
    const keys = Object.keys(p.match);
    if (backup && (keys.length !== 1 || keys[0] !== 'local' || !/^[^/]+(\/(32|128))?$/.test(p.match.local!))) {
      r.at('backup').fail('the kernel marks backup per proxy address: match only `local: <proxy address>`');
    }
    p.backup = backup as boolean;
  }
  if (raw.mode !== undefined) {
    if (p.rate !== undefined || p.uplink !== undefined || p.backup) r.at('mode').fail('a mode sets rates, uplinks and backup itself: drop rate/ceil/uplink/backup from this policy');
    p.mode = validateMode(raw, r, uplinks);
  } else for (const k of MODE_KEYS.slice(1)) if (raw[k] !== undefined) r.at(k).fail('needs a mode');
  return p;
}

const MODE_KEYS = ['mode', 'paths', 'weights', 'rttThresholdMs', 'lossThresholdPercent', 'hysteresisMs', 'holdMs', 'standbyRate', 'probeIntervalMs'] as const;

function validateModePath(raw: unknown, r: Reader, uplinks: ReadonlySet<string>): ModePath {
  if (!isObject(raw)) return r.fail('must be a mapping with a name and client, local, interface or uplink');
  onlyKeys(raw, ['name', 'client', 'local', 'interface', 'uplink'], r);
  const name = str(raw, 'name', r) ?? r.at('name').fail('is required');
  const p: ModePath = { name };
  const client = cidr(raw, 'client', r);
  const local = cidr(raw, 'local', r);
  const iface = interfaceName(raw, 'interface', r);
  const uplink = str(raw, 'uplink', r);
  if (client !== undefined) p.client = client;
  if (local !== undefined) p.local = local;
  if (iface !== undefined) p.interface = iface;
  if (uplink !== undefined) {
    if (!uplinks.has(uplink)) r.at('uplink').fail(`"${uplink}" is not a configured uplink`);
    p.uplink = uplink;
  }
  if (Object.keys(p).length === 1) r.fail('needs client, local, interface or uplink to tell its subflows');
  return p;
}

function validateMode(raw: Raw, r: Reader, uplinks: ReadonlySet<string>): SteeringModeConfig {
  const name = raw.mode as SteeringModeName;
  if (!STEERING_MODES.includes(name)) r.at('mode').fail(`must be one of: ${STEERING_MODES.join(', ')}`);
  if (!Array.isArray(raw.paths) || raw.paths.length < 2) r.at('paths').fail('must list at least two paths');
  const paths = (raw.paths as unknown[]).map((p, i) => validateModePath(p, r.at(`paths[${i}]`), uplinks));
  const names = new Set<string>();
  paths.forEach((p, i) => {
    if (names.has(p.name)) r.at(`paths[${i}]`).at('name').fail(`"${p.name}" is used twice`);
    names.add(p.name);
  });
  const standby = rate(raw, 'standbyRate', r);
  const m: SteeringModeConfig = {
    name,
    paths,
    hysteresisMs: int(raw, 'hysteresisMs', MODE_DEFAULTS.hysteresisMs, r, 0, 60_000),
    holdMs: int(raw, 'holdMs', MODE_DEFAULTS.holdMs, r, 0, 600_000),
    standbyRate: standby ?? (name === 'smallest-delay' ? MODE_DEFAULTS.standbyRateSmallestDelay : MODE_DEFAULTS.standbyRate),
  };
  const w = raw.weights;
  if (name === 'load-balance') {
    if (!isObject(w)) return r.at('weights').fail('load-balance needs weights: a mapping of path name to weight');
    for (const k of Object.keys(w)) if (!names.has(k)) r.at('weights').at(k).fail(`is not a path of this policy (paths: ${[...names].join(', ')})`);
    m.weights = Object.fromEntries(paths.map((p) => [p.name, int(w, p.name, -1, r.at('weights'), 1, 1000)]));
    for (const [k, v] of Object.entries(m.weights)) if (v < 0) r.at('weights').at(k).fail('is required (an integer in 1..1000)');
  } else if (w !== undefined) r.at('weights').fail('only load-balance takes weights');
  const rtt = raw.rttThresholdMs;
  const loss = raw.lossThresholdPercent;
  if (name === 'priority') {
    if (rtt === undefined && loss === undefined) r.at('mode').fail('priority needs rttThresholdMs or lossThresholdPercent');
    if (rtt !== undefined) m.rttThresholdMs = int(raw, 'rttThresholdMs', 0, r, 1, 60_000);
    if (loss !== undefined) {
      if (typeof loss !== 'number' || !(loss > 0 && loss <= 100)) r.at('lossThresholdPercent').fail('must be a number in (0, 100]');
      m.lossThresholdPercent = loss as number;
    }
  } else if (rtt !== undefined || loss !== undefined) r.at(rtt !== undefined ? 'rttThresholdMs' : 'lossThresholdPercent').fail('only priority takes thresholds');
  if (name === 'smallest-delay') {
    m.probeIntervalMs = int(raw, 'probeIntervalMs', MODE_DEFAULTS.probeIntervalMs, r, 0, 600_000);
    // Shorter than two probes would keep the standby out of backup most of the time.
    if (m.probeIntervalMs > 0 && m.probeIntervalMs < 1000) r.at('probeIntervalMs').fail('must be 0 (no probes) or at least 1000');
  } else if (raw.probeIntervalMs !== undefined) r.at('probeIntervalMs').fail('only smallest-delay takes probeIntervalMs');
  return m;
}

/** Validate the steering sections of the raw config document. */
export function validateSteeringConfig(raw: Record<string, unknown>): SteeringConfig {
  const policies = raw.policies ?? [];
  const uplinksRaw = raw.uplinks ?? [];
  if (!Array.isArray(policies)) return new Reader('policies').fail('must be a list');
  if (!Array.isArray(uplinksRaw)) return new Reader('uplinks').fail('must be a list');
  const uplinks = uplinksRaw.map((u, i) => validateUplink(u, new Reader(`uplinks[${i}]`)));
  const names = new Set<string>();
  uplinks.forEach((u, i) => {
    if (names.has(u.name)) new Reader(`uplinks[${i}]`).at('name').fail(`"${u.name}" is used twice`);
    names.add(u.name);
  });
  if (uplinks.length > MAX_UPLINKS) new Reader('uplinks').fail(`at most ${MAX_UPLINKS} uplinks`);
  const out = policies.map((p, i) => validatePolicy(p, new Reader(`policies[${i}]`), names));
  const policyNames = new Set<string>();
  const shares = new Map<string, PolicyConfig>();
  out.forEach((p, i) => {
    if (policyNames.has(p.name)) new Reader(`policies[${i}]`).at('name').fail(`"${p.name}" is used twice`);
    policyNames.add(p.name);
    if (p.share === undefined) return;
    const first = shares.get(p.share);
    if (first && (first.rate !== p.rate || first.ceil !== p.ceil)) new Reader(`policies[${i}]`).at('share').fail(`"${p.share}" already has rate/ceil from policy "${first.name}"; they must agree`);
    shares.set(p.share, first ?? p);
  });
  return { policies: out, uplinks };
}
