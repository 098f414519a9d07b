/**
 * The bench's private network namespace: a bench command re-runs itself inside a fresh namespace
 * with loopback up (its own MPTCP state, nothing reaches the host's interfaces); the namespace
 * goes when the command ends.
 */
import { spawnSync } from 'node:child_process';

const NETNS_ENV = 'MPX_BENCH_NETNS';

/** Already inside the namespace this module made? */
export const inBenchNetns = (): boolean => Boolean(process.env[NETNS_ENV]);

/** This same command again, inside a fresh namespace with loopback up; returns its exit status. */
export function inPrivateNetns(): number {
  const ns = `mpx-bench-${process.pid}-${Math.random().toString(36).slice(2, 8)}`;
  const ip = (...args: string[]): number => spawnSync('ip', args, { stdio: 'inherit' }).status ?? 1;
  if (ip('netns', 'add', ns) !== 0) throw new Error(`ip netns add ${ns} failed`);
  try {
    if (ip('-n', ns, 'link', 'set', 'lo', 'up') !== 0) throw new Error(`lo up in ${ns} failed`);
    // A saturating subject overflows listen queues; SYNs retransmitted twice would otherwise count
    // as a blackhole and switch MPTCP off in this namespace for every subject after it.
    if (ip('netns', 'exec', ns, 'sysctl', '-qw', 'net.mptcp.blackhole_timeout=0') !== 0) process.stderr.write('bench: net.mptcp.blackhole_timeout not settable; MPTCP blackhole detection stays on\n');
    const r = spawnSync('ip', ['netns', 'exec', ns, process.execPath, ...process.argv.slice(1)], { stdio: 'inherit', env: { ...process.env, [NETNS_ENV]: ns } });
    return r.status ?? 1;
  } finally {
    ip('netns', 'del', ns);
  }
}
