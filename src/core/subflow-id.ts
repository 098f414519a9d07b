/**
 * How every subsystem names one MPTCP subflow and its connection: the subflow key (its two ends),
 * the token as text (what logs, the registry, the sniffer and /connections show), and which local
 * interface it runs over. One spelling of each, so the kernel's view, the sniffer, the registry,
 * the tuner and steering agree on identity.
 */
import os from 'node:os';
import { CidrSet, unmapIPv6 } from './address';

const HEX_BYTE = Array.from({ length: 256 }, (_, i) => i.toString(16).padStart(2, '0'));

/** A connection's MPTCP token (32 bits) as 8 lower-case hex digits. */
export function tokenHex(token: number): string {
  // Byte by byte from a table: several calls per connection, and toString(16) of a number
  // takes V8's general radix conversion (floating-point division per digit).
  return HEX_BYTE[(token >>> 24) & 0xff]! + HEX_BYTE[(token >>> 16) & 0xff]! + HEX_BYTE[(token >>> 8) & 0xff]! + HEX_BYTE[token & 0xff]!;
}

/**
 * A subflow's identity within its connection: local (proxy-side) and remote ends. IPv4-mapped
 * IPv6 addresses are unmapped, so a dual-stack socket's view and a packet's view agree.
 */
export function subflowKey(localAddress: string, localPort: number, remoteAddress: string, remotePort: number): string {
  return `${unmapIPv6(localAddress)}|${localPort}>${unmapIPv6(remoteAddress)}|${remotePort}`;
}

const TTL_MS = 5_000;

interface IfNet {
  name: string;
  subnet: CidrSet;
  address: string;
}

/** Answers are cached with the addresses: one lookup per new subflow otherwise walks every subnet. */
const MAX_ANSWERS = 4096;

let cache: { at: number; nets: IfNet[]; answers: Map<string, string | null> } | null = null;

function current(): NonNullable<typeof cache> {
  const now = Date.now();
  if (cache && now - cache.at < TTL_MS) return cache;
  const out: IfNet[] = [];
  for (const [name, addrs] of Object.entries(os.networkInterfaces())) {
    for (const a of addrs ?? []) if (a.cidr) out.push({ name, subnet: new CidrSet([a.cidr]), address: a.address });
  }
  cache = { at: now, nets: out, answers: new Map() };
  return cache;
}

/**
 * Which local interface a subflow runs over: the one the kernel or the capture reported, else
 * (server-side subflow events carry no if_idx) the interface whose connected subnet holds the
 * remote address, else the one holding the local address. Interface addresses change rarely,
 * so they are cached briefly.
 */
export function subflowInterface(reported: string | null, local: string, remote: string): string | null {
  return reported ?? interfaceFor(remote, local);
}

/** The local interface whose subnet holds `address`, or that has it (a policy's client or local range). */
export function interfaceOf(address: string): string | null {
  return interfaceFor(address, address);
}

function interfaceFor(remote: string, local: string): string | null {
  const c = current();
  const key = `${remote}>${local}`;
  const hit = c.answers.get(key);
  if (hit !== undefined) return hit;
  const r = unmapIPv6(remote);
  const l = unmapIPv6(local);
  const name = c.nets.find((n) => n.subnet.has(r))?.name ?? c.nets.find((n) => n.address === l)?.name ?? null;
  if (c.answers.size >= MAX_ANSWERS) c.answers.clear();
  c.answers.set(key, name);
  return name;
}
