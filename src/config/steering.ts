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
import { cidr, int, interfaceName, ip, isObject, onlyKeys, Reader, str, type Raw } from './validate';

export interface PolicyMatch {
  /** CIDR of the subflow's remote (client-side) address. */
  client?: string;
  /** CIDR (or single address) of the proxy address the subflow arrived on. */
  local?: string;
  /** Proxy interface the subflow runs over. */
  interface?: string;
  kind?: 'initial' | 'join';
  /** Upstream CIDR, or a domain suffix ("example.com" matches it and its subdomains). */
  destination?: string;
  user?: string;
  listener?: string;
}

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

function validateMatch(raw: unknown, r: Reader): PolicyMatch {
  if (raw === undefined) return {};
  if (!isObject(raw)) return r.fail('must be a mapping');
  onlyKeys(raw, Object.keys(POLICY_MATCH_FIELDS), r);
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
  onlyKeys(raw, ['name', 'match', 'rate', 'ceil', 'direction', 'share', 'uplink', 'backup'], r);
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
  return p;
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
