/**
 * Password checks that cost the attacker, not the proxy. One guard lives as long as the process
 * (a reload hands it to the next AccessControl) and holds:
 * - a cache of verified credentials (Squid's credentialsttl), keyed by an HMAC of user and
 *   password under a per-process random key, so it never holds a password; an entry also names
 *   the stored hash it was verified against, so a reload that changes or removes the user
 *   invalidates it;
 * - a small pool for the scrypt runs (libuv's threadpool also serves getaddrinfo: a flood of
 *   guesses must not starve DNS), with a bounded queue; when full, checks are refused at once;
 * - per client (IPv4 address, IPv6 /64) a failure score that decays, delays the refusal of each
 *   further failure and, once the client has failed, lets it have one check in flight only,
 *   hashed on a thread at the lowest CPU priority (IdleHasher): a guesser's hashes then wait
 *   for CPU that other clients leave idle instead of competing with them.
 * Identical checks already in flight are joined, not repeated (a browser opens several
 * connections with the same credentials at once).
 */
import crypto from 'node:crypto';
import { EventEmitter } from 'node:events';
import net from 'node:net';
import os from 'node:os';
import { expandIPv6 } from '../core/address';
import { IdleHasher } from './idle-hasher';
import { verifyPassword } from './passwords';

/** How a check ended: the first two admit, the others refuse. */
export type AuthOutcome = 'cached' | 'verified' | 'unknown_user' | 'wrong_password' | 'throttled' | 'busy';
export const AUTH_FAILURE_REASONS = ['unknown_user', 'wrong_password', 'throttled', 'busy'] as const;

export interface AuthGuardLimits {
  /**
   * scrypt runs at once. Default: half the cores (a flood of guesses leaves the others to the
   * proxy), at most half of libuv's threadpool (DNS keeps the other half).
   */
  concurrency: number;
  /** Checks waiting for a pool slot; beyond, refused as busy. */
  queue: number;
  /** Distinct checks one client may have waiting or running while it has no recent failure. */
  perClient: number;
  cacheEntries: number;
  /** Clients whose failure score is remembered (least recently failed forgotten first). */
  clients: number;
  /** The failure score halves every this many ms. */
  halfLifeMs: number;
  /** Refusal delay at a score of 2 (the first failure is answered at once); doubles per failure. */
  delayBaseMs: number;
  delayMaxMs: number;
}

const THREADPOOL = Number(process.env.UV_THREADPOOL_SIZE) || 4;

export const AUTH_GUARD_DEFAULTS: AuthGuardLimits = {
  concurrency: Math.max(1, Math.min(Math.floor(THREADPOOL / 2), Math.floor(os.availableParallelism() / 2))),
  queue: 64,
  perClient: 4,
  cacheEntries: 10_000,
  clients: 10_000,
  halfLifeMs: 60_000,
  delayBaseMs: 250,
  delayMaxMs: 2_000,
};

/** Where a hash runs: libuv's threadpool, or the nice-19 thread for clients that failed recently. */
export type HashLane = 'normal' | 'idle';

export interface AuthGuardEvents {
  outcome: [outcome: AuthOutcome];
  /** A password hash (or plain comparison) was actually computed. */
  hash: [lane: HashLane];
}

/** What the caller's user table says for one check. */
export interface AuthRequest {
  user: string;
  password: string;
  /** The user's stored hash; undefined for an unknown user. */
  stored: string | undefined;
  /** Checked instead of `stored` for unknown users: same cost, never matches. */
  decoy: string;
  /** access.credentialsTtlMs now (0 = no cache). */
  ttlMs: number;
  client: string;
}

interface Cached {
  stored: string;
  at: number;
}

interface ClientRecord {
  score: number;
  at: number;
  /** Checks of this client waiting or running now. */
  checking: number;
}

/** Bounded concurrency with a bounded queue; a released slot passes straight to the next waiter. */
class Pool {
  private running = 0;
  private readonly waiting: (() => void)[] = [];
  constructor(
    private readonly limit: number,
    private readonly queue: number,
  ) {}

  get full(): boolean {
    return this.running >= this.limit && this.waiting.length >= this.queue;
  }

  async run<T>(job: () => Promise<T>): Promise<T> {
    if (this.running < this.limit) this.running++;
    else await new Promise<void>((r) => this.waiting.push(r));
    try {
      return await job();
    } finally {
      const next = this.waiting.shift();
      if (next) next();
      else this.running--;
    }
  }
}

/** Clients are told apart by address; an IPv6 client by its /64 (one host may hold all of it). */
function clientKey(ip: string): string {
  return net.isIPv6(ip) ? `${expandIPv6(ip).slice(0, 19)}::/64` : ip;
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

export class AuthGuard extends EventEmitter<AuthGuardEvents> {
  private readonly key = crypto.randomBytes(32);
  private readonly cache = new Map<string, Cached>();
  private readonly inFlight = new Map<string, Promise<boolean>>();
  private readonly clients = new Map<string, ClientRecord>();
  private readonly pool: Pool;
  /** One low-priority thread: suspects wait for each other, never for honest clients. */
  private readonly idlePool: Pool;
  readonly idleHasher = new IdleHasher();

  constructor(private readonly limits: AuthGuardLimits = AUTH_GUARD_DEFAULTS) {
    super();
    this.pool = new Pool(limits.concurrency, limits.queue);
    this.idlePool = new Pool(1, limits.queue);
  }

  async check(req: AuthRequest): Promise<AuthOutcome> {
    const outcome = await this.decide(req);
    this.emit('outcome', outcome);
    return outcome;
  }

  private async decide(req: AuthRequest): Promise<AuthOutcome> {
    const now = Date.now();
    // Length-prefixed so ("ab", "c") and ("a", "bc") differ.
    const key = crypto.createHmac('sha256', this.key).update(`${req.user.length}:${req.user}`).update(req.password).digest('base64');
    const hit = this.cache.get(key);
    if (hit && req.stored !== undefined && hit.stored === req.stored && now - hit.at < req.ttlMs) return 'cached';
    const rec = this.client(req.client, now);
    // Joined only when checked against the same stored hash: a reload may change it meanwhile.
    const flight = `${key} ${req.stored ?? ''}`;
    let pending = this.inFlight.get(flight);
    if (!pending) {
      const suspect = this.decayed(rec, now) >= 1;
      if (rec.checking >= (suspect ? 1 : this.limits.perClient)) return 'throttled';
      const pool = suspect ? this.idlePool : this.pool;
      if (pool.full) return 'busy';
      pending = pool.run(() => {
        this.emit('hash', suspect ? 'idle' : 'normal');
        return verifyPassword(req.stored ?? req.decoy, req.password, suspect ? this.idleHasher.scrypt : undefined);
      });
      this.inFlight.set(flight, pending);
      // A rejection reaches the caller through the await below; this only forgets the entry.
      const forget = (): void => void this.inFlight.delete(flight);
      pending.then(forget, forget);
    }
    rec.checking++;
    try {
      if ((await pending) && req.stored !== undefined) {
        if (req.ttlMs > 0) this.remember(key, req.stored, now, req.ttlMs);
        return 'verified';
      }
      const failedAt = Date.now();
      rec.score = this.decayed(rec, failedAt) + 1;
      rec.at = failedAt;
      // Held while waiting: a client that failed has one check in flight, so parallel guesses are refused.
      const delay = this.delayFor(rec.score);
      if (delay > 0) await sleep(delay);
      return req.stored === undefined ? 'unknown_user' : 'wrong_password';
    } finally {
      rec.checking--;
    }
  }

  /** Refusal delay for a failure score: none for the first failure, then doubling up to the cap. */
  private delayFor(score: number): number {
    return score < 2 ? 0 : Math.min(this.limits.delayMaxMs, this.limits.delayBaseMs * 2 ** Math.floor(score - 2));
  }

  private decayed(rec: ClientRecord, now: number): number {
    return rec.score * 2 ** (-(now - rec.at) / this.limits.halfLifeMs);
  }

  /** The client's record, most recently used last; forgotten ones and long-quiet ones start clean. */
  private client(ip: string, now: number): ClientRecord {
    const id = clientKey(ip);
    let rec = this.clients.get(id);
    if (rec) this.clients.delete(id);
    if (!rec || (rec.checking === 0 && this.decayed(rec, now) < 0.1)) rec = { score: 0, at: now, checking: 0 };
    this.clients.set(id, rec);
    // A record evicted mid-check lives on in that check's closure only.
    for (const oldest of this.clients.keys()) {
      if (this.clients.size <= this.limits.clients) break;
      this.clients.delete(oldest);
    }
    return rec;
  }

  private remember(key: string, stored: string, now: number, ttlMs: number): void {
    this.cache.delete(key);
    this.cache.set(key, { stored, at: now });
    // Insertion order is verification order: expired and then the oldest entries go first.
    for (const [oldest, e] of this.cache) {
      if (this.cache.size <= this.limits.cacheEntries && now - e.at < ttlMs) break;
      this.cache.delete(oldest);
    }
  }

  /** For tests and status: entries held now. */
  get sizes(): { cache: number; clients: number } {
    return { cache: this.cache.size, clients: this.clients.size };
  }
}
