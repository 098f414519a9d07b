/**
 * Match keys over what is known of one connection or subflow, compiled once per config and tested
 * per subject: the steering policies (per subflow) and the upstream routes (per connection) both
 * match with it. A key whose subject is unknown (no authenticated user, no destination yet) does
 * not match.
 */
import { CidrSet, normalizeIpLiteral, unmapIPv6 } from './address';

/** The validated match keys (src/config/steering.ts reads them from the config). */
export interface MatchSpec {
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

/** Everything a match can test, for one subflow (a connection is its initial subflow). */
export interface MatchSubject {
  /** Client-side (remote) address of the subflow. */
  client: string;
  /** Proxy-side (local) address. */
  local: string;
  interface: string | null;
  kind: 'initial' | 'join';
  /** Upstream host as requested (name or literal) and the address connected to. */
  destinationHost: string | null;
  destinationAddress: string | null;
  user: string | null;
  listener: string | null;
}

type Test = (s: MatchSubject) => boolean;

function ipIn(set: CidrSet, ip: string | null): boolean {
  if (!ip) return false;
  const lit = normalizeIpLiteral(ip);
  return lit !== null && set.has(lit);
}

/** "example.com" matches example.com and any name under it, case and trailing dot ignored. */
export function domainMatches(suffix: string, host: string): boolean {
  const h = host.toLowerCase().replace(/\.$/, '');
  return h === suffix || h.endsWith(`.${suffix}`);
}

function destinationTest(dest: string): Test {
  let cidr: CidrSet | null = null;
  try {
    cidr = new CidrSet([dest]);
  } catch {
    /* a domain suffix (validated by the config) */
  }
  if (cidr) {
    const set = cidr;
    return (s) => ipIn(set, s.destinationAddress) || ipIn(set, s.destinationHost);
  }
  return (s) => s.destinationHost !== null && normalizeIpLiteral(s.destinationHost) === null && domainMatches(dest, s.destinationHost);
}

/** One predicate for every key of `m` (all must hold); {} matches everything. */
export function compileMatch(m: MatchSpec): (s: MatchSubject) => boolean {
  const tests: Test[] = [];
  if (m.client !== undefined) {
    const set = new CidrSet([m.client]);
    tests.push((s) => ipIn(set, unmapIPv6(s.client)));
  }
  if (m.local !== undefined) {
    const set = new CidrSet([m.local]);
    tests.push((s) => ipIn(set, unmapIPv6(s.local)));
  }
  if (m.interface !== undefined) tests.push((s) => s.interface === m.interface);
  if (m.kind !== undefined) tests.push((s) => s.kind === m.kind);
  if (m.destination !== undefined) tests.push(destinationTest(m.destination));
  if (m.user !== undefined) tests.push((s) => s.user === m.user);
  if (m.listener !== undefined) tests.push((s) => s.listener === m.listener);
  return (s) => tests.every((t) => t(s));
}
