/**
 * Which local interface a subflow uses, when the kernel does not say (server-side subflow events
 * carry no if_idx): the interface whose connected subnet holds the client's address, else the one
 * holding the local address. Interface addresses change rarely, so they are cached briefly.
 */
import os from 'node:os';
import { CidrSet, unmapIPv6 } from '../core/address';

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

export function interfaceFor(remote: string, local: string): string | null {
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
