/**
 * Password hashes for the user table: "scrypt$N$r$p$salt-b64$hash-b64", verified in constant
 * time. "plain$secret" exists for tests and throwaway setups and is still compared in constant time.
 * Verification runs scrypt off the event loop: on libuv's threadpool (crypto.scrypt) unless the
 * caller passes another ScryptFn (the auth guard's low-priority thread for suspect clients).
 */
import crypto from 'node:crypto';

const KEYLEN = 32;
/** Room for costs above the default (Node's own 32 MiB limit stops at N = 16384 with r = 8). */
const MAXMEM = 256 * 1024 * 1024;

export type ScryptFn = (password: string, salt: Buffer, keylen: number, options: crypto.ScryptOptions) => Promise<Buffer>;

export const threadpoolScrypt: ScryptFn = (password, salt, keylen, options) =>
  // A bad parameter throws synchronously: inside the executor it becomes the rejection.
  new Promise((resolve, reject) => crypto.scrypt(password, salt, keylen, options, (err, key) => (err ? reject(err) : resolve(key))));

export function hashPassword(password: string, cost = 16384): string {
  const salt = crypto.randomBytes(16);
  const hash = crypto.scryptSync(password, salt, KEYLEN, { N: cost, r: 8, p: 1, maxmem: MAXMEM });
  return `scrypt$${cost}$8$1$${salt.toString('base64')}$${hash.toString('base64')}`;
}

function equalConstantTime(a: Buffer, b: Buffer): boolean {
  // Compare digests so unequal lengths take the same time as equal ones.
  const da = crypto.createHash('sha256').update(a).digest();
  const db = crypto.createHash('sha256').update(b).digest();
  return crypto.timingSafeEqual(da, db) && a.length === b.length;
}

interface ScryptHash {
  N: number;
  r: number;
  p: number;
  salt: Buffer;
  hash: Buffer;
}

function parseScrypt(stored: string): ScryptHash | null {
  const parts = stored.split('$');
  if (parts[0] !== 'scrypt' || parts.length !== 6) return null;
  const [, n, r, p, salt, hash] = parts as [string, string, string, string, string, string];
  return { N: Number(n), r: Number(r), p: Number(p), salt: Buffer.from(salt, 'base64'), hash: Buffer.from(hash, 'base64') };
}

export async function verifyPassword(stored: string, password: string, scrypt: ScryptFn = threadpoolScrypt): Promise<boolean> {
  if (stored.startsWith('plain$')) return equalConstantTime(Buffer.from(stored.slice(6)), Buffer.from(password));
  const s = parseScrypt(stored);
  if (!s) return false;
  return equalConstantTime(await scrypt(password, s.salt, s.hash.length, { N: s.N, r: s.r, p: s.p, maxmem: MAXMEM }), s.hash);
}

/**
 * What an unknown user's password is checked against: the same kind of work as a real user's
 * check (scrypt with the same cost, or the plain comparison when no user has a hash), against
 * random bytes nothing hashes to, so the answer's time does not tell which names exist.
 */
export function decoyHash(users: Iterable<string>): string {
  let costliest: ScryptHash | null = null;
  for (const stored of users) {
    const s = parseScrypt(stored);
    if (s && (!costliest || s.N * s.r * s.p > costliest.N * costliest.r * costliest.p)) costliest = s;
  }
  const random = (n: number): string => crypto.randomBytes(n).toString('base64');
  if (!costliest) return `plain$${random(24)}`;
  return `scrypt$${costliest.N}$${costliest.r}$${costliest.p}$${random(costliest.salt.length)}$${random(costliest.hash.length)}`;
}
