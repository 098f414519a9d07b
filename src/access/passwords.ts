/**
 * Password hashes for the user table: "scrypt$N$r$p$salt-b64$hash-b64", verified in constant
 * time. "plain$secret" exists for tests and throwaway setups and is still compared in constant time.
 */
import crypto from 'node:crypto';

const KEYLEN = 32;

export function hashPassword(password: string, cost = 16384): string {
  const salt = crypto.randomBytes(16);
  const hash = crypto.scryptSync(password, salt, KEYLEN, { N: cost, r: 8, p: 1 });
  return `scrypt$${cost}$8$1$${salt.toString('base64')}$${hash.toString('base64')}`;
}

function equalConstantTime(a: Buffer, b: Buffer): boolean {
  // Compare digests so unequal lengths take the same time as equal ones.
  const da = crypto.createHash('sha256').update(a).digest();
  const db = crypto.createHash('sha256').update(b).digest();
  return crypto.timingSafeEqual(da, db) && a.length === b.length;
}

export function verifyPassword(stored: string, password: string): boolean {
  const parts = stored.split('$');
  if (parts[0] === 'plain') return equalConstantTime(Buffer.from(stored.slice(6)), Buffer.from(password));
  if (parts[0] !== 'scrypt' || parts.length !== 6) return false;
  const [, n, r, p, salt, hash] = parts as [string, string, string, string, string, string];
  const expected = Buffer.from(hash, 'base64');
  const actual = crypto.scryptSync(password, Buffer.from(salt, 'base64'), expected.length, { N: Number(n), r: Number(r), p: Number(p), maxmem: 256 * 1024 * 1024 });
  return equalConstantTime(actual, expected);
}
