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

let cache: { at: number; nets: IfNet[] } | null = null;

function nets(): IfNet[] {
  const now = Date.now();
  if (cache && now - cache.at < TTL_MS) return cache.nets;
  const out: IfNet[] = [];
  for (const [name, addrs] of Object.entries(os.networkInterfaces())) {
    for (const a of addrs ?? []) if (a.cidr) out.push({ name, subnet: new CidrSet([a.cidr]), address: a.address });
  }
  cache = { at: now, nets: out };
  return out;
}

export function interfaceFor(remote: string, local: string): string | null {
  const r = unmapIPv6(remote);
  const l = unmapIPv6(local);
  const all = nets();
  return all.find((n) => n.subnet.has(r))?.name ?? all.find((n) => n.address === l)?.name ?? null;
}
