/**
 * Policy matching: the operator's ordered policies, compiled once per config, and a pure
 * first-match over what is known about one subflow. A match key whose subject is unknown (no
 * authenticated user, no destination yet) does not match.
 */
import { CidrSet, normalizeIpLiteral, unmapIPv6 } from '../core/address';
import type { ModePath, PolicyConfig } from '../config/steering';

/** Everything a policy can match on, for one subflow. */
export interface SubflowSubject {
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

export interface CompiledPolicy {
  readonly index: number;
  readonly config: PolicyConfig;
  matches(s: SubflowSubject): boolean;
  /** A mode policy: the name of the first of its paths the subflow is on (null: none, and then the policy does not match). */
  pathOf(s: SubflowSubject): string | null;
}

type Test = (s: SubflowSubject) => boolean;

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

/** The subflow's client or local address in a CIDR. */
function addressTest(cidr: string, side: 'client' | 'local'): Test {
  const set = new CidrSet([cidr]);
  return (s) => ipIn(set, unmapIPv6(s[side]));
}

/** What puts a subflow on a mode's path: every key the path names. */
function pathTest(p: ModePath, uplinkInterfaces: ReadonlyMap<string, string>): Test {
  const tests: Test[] = [];
  if (p.client !== undefined) tests.push(addressTest(p.client, 'client'));
  if (p.local !== undefined) tests.push(addressTest(p.local, 'local'));
  if (p.interface !== undefined) tests.push((s) => s.interface === p.interface);
  if (p.uplink !== undefined) {
    const dev = uplinkInterfaces.get(p.uplink);
    tests.push((s) => dev !== undefined && s.interface === dev);
  }
  return (s) => tests.every((t) => t(s));
}

export function compilePolicy(config: PolicyConfig, index: number, uplinkInterfaces: ReadonlyMap<string, string> = new Map()): CompiledPolicy {
  const m = config.match;
  const tests: Test[] = [];
  if (m.client !== undefined) tests.push(addressTest(m.client, 'client'));
  if (m.local !== undefined) tests.push(addressTest(m.local, 'local'));
  if (m.interface !== undefined) tests.push((s) => s.interface === m.interface);
  if (m.kind !== undefined) tests.push((s) => s.kind === m.kind);
  if (m.destination !== undefined) tests.push(destinationTest(m.destination));
  if (m.user !== undefined) tests.push((s) => s.user === m.user);
  if (m.listener !== undefined) tests.push((s) => s.listener === m.listener);
  const paths = (config.mode?.paths ?? []).map((p) => [p.name, pathTest(p, uplinkInterfaces)] as const);
  const pathOf = (s: SubflowSubject): string | null => paths.find(([, t]) => t(s))?.[0] ?? null;
  // A subflow on none of a mode's paths is left to the policies after it.
  if (config.mode) tests.push((s) => pathOf(s) !== null);
  return { index, config, matches: (s) => tests.every((t) => t(s)), pathOf };
}

export function compilePolicies(policies: readonly PolicyConfig[], uplinkInterfaces: ReadonlyMap<string, string> = new Map()): CompiledPolicy[] {
  return policies.map((p, i) => compilePolicy(p, i, uplinkInterfaces));
}

/** First policy that matches, or null. */
export function firstMatch(policies: readonly CompiledPolicy[], s: SubflowSubject): CompiledPolicy | null {
  for (const p of policies) if (p.matches(s)) return p;
  return null;
}
