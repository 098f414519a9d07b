/**
 * Policy matching: the operator's ordered policies, compiled once per config, and a pure
 * first-match over what is known about one subflow (the match keys themselves: core/match.ts).
 */
import { compileMatch, type MatchSubject } from '../core/match';
import type { ModePath, PolicyConfig } from '../config/steering';

export { domainMatches } from '../core/match';

/** Everything a policy can match on, for one subflow. */
export type SubflowSubject = MatchSubject;

export interface CompiledPolicy {
  readonly index: number;
  readonly config: PolicyConfig;
  matches(s: SubflowSubject): boolean;
  /** A mode policy: the name of the first of its paths the subflow is on (null: none, and then the policy does not match). */
  pathOf(s: SubflowSubject): string | null;
}

type Test = (s: SubflowSubject) => boolean;

/** What puts a subflow on a mode's path: every key the path names. */
function pathTest(p: ModePath, uplinkInterfaces: ReadonlyMap<string, string>): Test {
  const keys = compileMatch({ ...(p.client !== undefined && { client: p.client }), ...(p.local !== undefined && { local: p.local }), ...(p.interface !== undefined && { interface: p.interface }) });
  if (p.uplink === undefined) return keys;
  const dev = uplinkInterfaces.get(p.uplink);
  return (s) => dev !== undefined && s.interface === dev && keys(s);
}

export function compilePolicy(config: PolicyConfig, index: number, uplinkInterfaces: ReadonlyMap<string, string> = new Map()): CompiledPolicy {
  const keys = compileMatch(config.match);
  const paths = (config.mode?.paths ?? []).map((p) => [p.name, pathTest(p, uplinkInterfaces)] as const);
  const pathOf = (s: SubflowSubject): string | null => paths.find(([, t]) => t(s))?.[0] ?? null;
  // A subflow on none of a mode's paths is left to the policies after it.
  const matches: Test = config.mode ? (s) => keys(s) && pathOf(s) !== null : keys;
  return { index, config, matches, pathOf };
}

export function compilePolicies(policies: readonly PolicyConfig[], uplinkInterfaces: ReadonlyMap<string, string> = new Map()): CompiledPolicy[] {
  return policies.map((p, i) => compilePolicy(p, i, uplinkInterfaces));
}

/** First policy that matches, or null. */
export function firstMatch(policies: readonly CompiledPolicy[], s: SubflowSubject): CompiledPolicy | null {
  for (const p of policies) if (p.matches(s)) return p;
  return null;
}
