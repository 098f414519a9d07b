/**
 * Listening ports for tests that run servers in a fresh namespace: distinct, and below the
 * kernel's ephemeral range (32768-60999), so no outgoing connection there can already hold one.
 */
import { randomInt } from 'node:crypto';

export function pickPorts(n: number, taken: Iterable<number> = []): number[] {
  const used = new Set(taken);
  const out: number[] = [];
  while (out.length < n) {
    const p = randomInt(10_000, 32_000);
    if (!used.has(p)) {
      used.add(p);
      out.push(p);
    }
  }
  return out;
}
