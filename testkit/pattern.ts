/**
 * Deterministic pseudo-random bytes: the legacy server streams them, tests recompute their hash
 * locally. Same seed and length → same bytes, whatever the chunking.
 */
import { createHash } from 'node:crypto';

const CHUNK = 64 * 1024;

/** Yields `length` bytes for `seed` in chunks of up to 64 KiB (xorshift32, 4 bytes a step). */
export function* patternChunks(seed: number, length: number): Generator<Buffer> {
  // A zero state would stay zero forever.
  let x = (seed >>> 0) ^ 0x9e3779b9 || 1;
  let left = length;
  while (left > 0) {
    const n = Math.min(CHUNK, left);
    const b = Buffer.allocUnsafe((n + 3) & ~3);
    for (let off = 0; off < b.length; off += 4) {
      x ^= x << 13;
      x ^= x >>> 17;
      x ^= x << 5;
      b.writeUInt32LE(x >>> 0, off);
    }
    left -= n;
    yield b.subarray(0, n);
  }
}

export function patternSha256(seed: number, length: number): string {
  const h = createHash('sha256');
  for (const c of patternChunks(seed, length)) h.update(c);
  return h.digest('hex');
}
