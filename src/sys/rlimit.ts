/**
 * The process's open-file limit, raised at start.
 */
import { check, libc, RLIMIT_NOFILE } from './libc';

export interface OpenFileLimit {
  /** The soft limit before and after, and the hard limit (Infinity when unlimited). */
  before: number;
  soft: number;
  hard: number;
}

/**
 * Raise this process's open-file soft limit to its hard limit: every relayed connection holds
 * two descriptors, and the usual soft default (1024) would cap the proxy far below what the
 * system allows. Going past the hard limit would need CAP_SYS_RESOURCE; this never tries.
 */
export function raiseOpenFileLimit(): OpenFileLimit {
  const lim = { cur: 0 as number | bigint, max: 0 as number | bigint };
  check('getrlimit(RLIMIT_NOFILE)', libc.getrlimit(RLIMIT_NOFILE, lim) as number);
  const asNumber = (v: number | bigint): number => (BigInt(v) >= 2n ** 63n ? Infinity : Number(v));
  const before = asNumber(lim.cur);
  const hard = asNumber(lim.max);
  if (before < hard) check('setrlimit(RLIMIT_NOFILE)', libc.setrlimit(RLIMIT_NOFILE, { cur: lim.max, max: lim.max }) as number);
  return { before, soft: hard, hard };
}
