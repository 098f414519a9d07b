/**
 * The kernel's SNMP-style counters in /proc/net/netstat (per network namespace: it shows the
 * caller's namespace). The file is pairs of lines, "Prefix: Name1 Name2 ..." then
 * "Prefix: value1 value2 ...". Only the MPTCP block (MPTcpExt) is read here.
 */
import fs from 'node:fs';

const NETSTAT = '/proc/net/netstat';

/** Counters of one block by name ("MPJoinSynRx" → 12), from the text of /proc/net/netstat. */
export function parseNetstatBlock(text: string, prefix: string): Map<string, number> {
  const out = new Map<string, number>();
  const lines = text.split('\n').filter((l) => l.startsWith(`${prefix}:`));
  // The header line comes first, the values line second; anything else is not this block.
  if (lines.length < 2) return out;
  const names = lines[0]!.split(/\s+/).slice(1);
  const values = lines[1]!.split(/\s+/).slice(1);
  names.forEach((n, i) => {
    const v = Number(values[i]);
    if (n !== '' && Number.isFinite(v)) out.set(n, v);
  });
  return out;
}

/** The MPTcpExt counters of the caller's namespace; empty when the kernel has no MPTCP. */
export function readMptcpCounters(): Map<string, number> {
  return parseNetstatBlock(fs.readFileSync(NETSTAT, 'utf8'), 'MPTcpExt');
}
