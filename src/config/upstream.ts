/**
 * Config schema of the parent proxies (upstream.parents), the routes that choose one per
 * connection (upstream.routes, first match wins) and the parents' health probes (upstream.probe).
 * The defaults are schema.ts's DEFAULTS.upstream, passed in. Consumed by src/upstream/router.ts.
 */
import net from 'node:net';
import { parseHostPort } from '../core/address';
import { validateMatch, type PolicyMatch } from './steering';
import { bool, int, isObject, onlyKeys, Reader, section, str, type Raw } from './validate';

export type ParentProtocol = 'http' | 'socks5';

export interface ParentConfig {
  /** Stable name: logs, the `parent` metric label, routes' `via`. */
  name: string;
  protocol: ParentProtocol;
  /** IP literal or a name (resolved at each connect to the parent). */
  host: string;
  port: number;
  /** Basic Proxy-Authorization (http) or RFC 1929 (socks5); both or neither. */
  user?: string;
  password?: string;
  /** Connect to the parent over MPTCP (falls back to TCP when the parent does not answer MPTCP). */
  mptcp: boolean;
}

/** A route sends what it matches direct, or through one of the named parents (the healthy, fastest first). */
export interface RouteConfig {
  name: string;
  match: PolicyMatch;
  via: 'direct' | string[];
}

export interface ParentProbeConfig {
  /** A TCP connect to every parent this often; a connect that fails marks its parent down at once. */
  intervalMs: number;
  timeoutMs: number;
  /** Consecutive failed probes that mark a parent down, and successful ones that mark it up. */
  downAfter: number;
  upAfter: number;
}

export interface UpstreamConfig {
  /** Try MPTCP to the destination first, then plain TCP. */
  mptcp: boolean;
  connectTimeoutMs: number;
  /** RFC 8305 connection attempt delay between address families. */
  happyEyeballsDelayMs: number;
  parents: ParentConfig[];
  routes: RouteConfig[];
  probe: ParentProbeConfig;
}

export const UPSTREAM_KEYS = ['mptcp', 'connectTimeoutMs', 'happyEyeballsDelayMs', 'parents', 'routes', 'probe'] as const;

/** A route matches a whole connection (what the client asked for), not a subflow. */
const ROUTE_MATCH_KEYS = ['client', 'local', 'destination', 'user', 'listener'] as const;

/** `via` values that are not parent names. */
const DIRECT = 'direct';
const ALL_PARENTS = 'parents';

function parent(raw: unknown, r: Reader): ParentConfig {
  if (!isObject(raw)) return r.fail('must be a mapping with url');
  onlyKeys(raw, ['name', 'url', 'user', 'password', 'mptcp'], r);
  const url = str(raw, 'url', r) ?? r.at('url').fail('is required');
  const m = /^(http|socks5):\/\/(?:([^:@/]*):([^@/]*)@)?([^/@]+?)\/?$/.exec(url);
  if (!m) return r.at('url').fail(`"${url}" is not http://HOST:PORT or socks5://HOST:PORT`);
  let hp;
  try {
    hp = parseHostPort(m[4]!, '');
  } catch (e) {
    return r.at('url').fail((e as Error).message);
  }
  if (hp.host === '' || hp.port === 0) r.at('url').fail(`"${url}" needs a host and a port`);
  if (!net.isIP(hp.host) && !/^[a-z0-9]([a-z0-9-]{0,62})?(\.[a-z0-9]([a-z0-9-]{0,62})?)*\.?$/i.test(hp.host)) r.at('url').fail(`"${hp.host}" is neither an IP address nor a host name`);
  const inUrl = m[2] !== undefined ? { user: decodeURIComponent(m[2]), password: decodeURIComponent(m[3]!) } : null;
  const user = str(raw, 'user', r);
  const password = raw.password === undefined ? undefined : typeof raw.password === 'string' ? raw.password : r.at('password').fail('must be a string');
  if (inUrl && (user !== undefined || password !== undefined)) r.fail('credentials in url and in user/password: give one');
  if ((user === undefined) !== (password === undefined)) r.fail('user and password go together');
  const creds = inUrl ?? (user !== undefined ? { user, password: password! } : null);
  // RFC 1929 carries each in one length byte.
  if (creds && m[1] === 'socks5' && (Buffer.byteLength(creds.user) > 255 || Buffer.byteLength(creds.password) > 255)) r.fail('a SOCKS5 user and password are 1..255 bytes each');
  const name = str(raw, 'name', r) ?? `${hp.host}:${hp.port}`;
  // The `parent` label of the metrics: printable, bounded.
  if (!/^[\w.:@[\]-]{1,64}$/.test(name) || name === DIRECT || name === ALL_PARENTS) r.at('name').fail(`must be 1..64 of letters, digits, _ . : @ - [ ] and not "${DIRECT}" or "${ALL_PARENTS}"`);
  return { name, protocol: m[1] as ParentProtocol, host: hp.host, port: hp.port, ...(creds ?? {}), mptcp: bool(raw, 'mptcp', false, r) };
}

function route(raw: unknown, r: Reader, parents: readonly string[], i: number): RouteConfig {
  if (!isObject(raw)) return r.fail('must be a mapping with match and via');
  onlyKeys(raw, ['name', 'match', 'via'], r);
  const name = str(raw, 'name', r) ?? `route${i}`;
  const match = validateMatch(raw.match, r.at('match'), ROUTE_MATCH_KEYS);
  const v = raw.via;
  const names = typeof v === 'string' ? [v] : Array.isArray(v) && v.length > 0 && v.every((x) => typeof x === 'string') ? (v as string[]) : r.at('via').fail(`must be "${DIRECT}", "${ALL_PARENTS}", a parent name or a list of them`);
  if (names.length === 1 && names[0] === DIRECT) return { name, match, via: DIRECT };
  if (names.length === 1 && names[0] === ALL_PARENTS) {
    if (parents.length === 0) r.at('via').fail('no parents are configured');
    return { name, match, via: [...parents] };
  }
  for (const n of names) if (!parents.includes(n)) r.at('via').fail(`"${n}" is not a configured parent (parents: ${parents.join(', ') || 'none'})`);
  return { name, match, via: [...new Set(names)] };
}

/** Validate the upstream section; `d` holds the defaults (DEFAULTS.upstream). */
export function validateUpstream(u: Raw, r: Reader, d: UpstreamConfig): UpstreamConfig {
  onlyKeys(u, UPSTREAM_KEYS, r);
  const mptcp = bool(u, 'mptcp', d.mptcp, r);
  const rawParents = u.parents ?? [];
  if (!Array.isArray(rawParents)) return r.at('parents').fail('must be a list');
  const parents = rawParents.map((p, i) => parent(p, r.at(`parents[${i}]`)));
  parents.forEach((p, i) => {
    if (parents.findIndex((q) => q.name === p.name) !== i) r.at(`parents[${i}].name`).fail(`"${p.name}" is used twice`);
  });
  const rawRoutes = u.routes ?? [];
  if (!Array.isArray(rawRoutes)) return r.at('routes').fail('must be a list');
  const names = parents.map((p) => p.name);
  const routes = rawRoutes.map((x, i) => route(x, r.at(`routes[${i}]`), names, i));
  const p = section(u, 'probe', r);
  const pr = r.at('probe');
  onlyKeys(p, ['intervalMs', 'timeoutMs', 'downAfter', 'upAfter'], pr);
  return {
    mptcp,
    connectTimeoutMs: int(u, 'connectTimeoutMs', d.connectTimeoutMs, r, 1, 600_000),
    happyEyeballsDelayMs: int(u, 'happyEyeballsDelayMs', d.happyEyeballsDelayMs, r, 10, 5_000),
    parents,
    routes,
    probe: {
      intervalMs: int(p, 'intervalMs', d.probe.intervalMs, pr, 50, 3_600_000),
      timeoutMs: int(p, 'timeoutMs', d.probe.timeoutMs, pr, 1, 60_000),
      downAfter: int(p, 'downAfter', d.probe.downAfter, pr, 1, 100),
      upAfter: int(p, 'upAfter', d.probe.upAfter, pr, 1, 100),
    },
  };
}
