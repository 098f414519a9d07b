/**
 * Runs the ATSSS modes (modes.ts) per connection: groups a connection's subflows by the path of
 * the mode policy they match, measures each path from the registry's kernel counters (RTT,
 * retransmissions, timeout backoff, bytes acked), decides, and keeps what each subflow should
 * get (standby or a rate cap) until the next decision. The engine asks `want()` when it plans a
 * subflow, and reconciles the subflows `update()` reports as changed.
 */
import type { ModePath } from '../config/steering';
import type { MptcpConnectionRecord, Subflow } from '../registry/registry';
import { STANDBY_LEAF_BYTES } from '../sys/tc';
import { decide, initialModeState, lossPercent, type ModeState, type PathAction, type PathMeasure } from './modes';
import type { CompiledPolicy, SubflowSubject } from './policy';

/** Weight of each tick's RTT reading in a path's RTT (an exponential average over ticks). */
export const RTT_GAIN = 0.3;
/** Loss and rate are taken over windows of at least this long. */
export const MEASURE_WINDOW_MS = 500;
/**
 * A subflow with data outstanding and no ACK for this long is on a failed path: a busy path acks
 * every few ms, and waiting for the retransmission timeout (backoff) took up to 1.5 s behind a
 * full queue.
 */
export const STALL_MS = 300;
/** Is this subflow carrying (no timeout pending, no stall)? */
export const subflowAlive = (s: Subflow): boolean => !s.backoff && (s.stalledMs ?? 0) < STALL_MS;

export interface ModeWant {
  policy: string;
  path: string;
  action: PathAction;
}

interface Baseline {
  at: number;
  bytes: number;
  retrans: number;
  segs: number;
}

interface ConnModes {
  /** Mode state per policy name. */
  states: Map<string, ModeState>;
  /** Last measured loss and rate per path, kept between windows, and its RTT smoothed over ticks. */
  last: Map<string, { lossPct: number | null; rateBps: number; rttMs: number | null }>;
}

/** The queueing delay a standby cap can add to its own subflow's RTT (its leaf, full), ms. */
export const selfDelayMs = (standbyRate: number): number => ((STANDBY_LEAF_BYTES * 8) / standbyRate) * 1000;

export class ModeControl {
  private readonly wants = new Map<string, ModeWant>();
  private readonly conns = new Map<string, ConnModes>();
  private readonly baselines = new Map<string, Baseline>();

  want(s: Subflow): ModeWant | undefined {
    return this.wants.get(s.key);
  }

  forget(rec: MptcpConnectionRecord): void {
    this.conns.delete(rec.token);
    for (const k of rec.subflows.keys()) {
      this.wants.delete(k);
      this.baselines.delete(k);
    }
  }

  /**
   * Decide again for one connection; returns its subflows whose want changed. `match` gives a
   * subflow's policy; `pathUp` says whether a path's uplink (if it names one) is up.
   */
  update(rec: MptcpConnectionRecord, match: (s: Subflow) => { policy: CompiledPolicy; subject: SubflowSubject } | null, pathUp: (p: ModePath) => boolean, now: number): Subflow[] {
    const groups = new Map<string, { policy: CompiledPolicy; byPath: Map<string, Subflow[]> }>();
    const seen = new Set<string>();
    for (const s of rec.subflows.values()) {
      if (s.state !== 'established') continue;
      const m = match(s);
      const path = m?.policy.config.mode ? m.policy.pathOf(m.subject) : null;
      if (!m || path === null) continue;
      seen.add(s.key);
      const g = groups.get(m.policy.config.name) ?? { policy: m.policy, byPath: new Map<string, Subflow[]>() };
      g.byPath.set(path, [...(g.byPath.get(path) ?? []), s]);
      groups.set(m.policy.config.name, g);
    }
    const changed: Subflow[] = [];
    for (const s of rec.subflows.values()) {
      if (seen.has(s.key) || !this.wants.has(s.key)) continue;
      this.wants.delete(s.key);
      this.baselines.delete(s.key);
      changed.push(s);
    }
    if (groups.size === 0) {
      this.conns.delete(rec.token);
      return changed;
    }
    const conn = this.conns.get(rec.token) ?? { states: new Map(), last: new Map() };
    this.conns.set(rec.token, conn);
    for (const [name, g] of groups) {
      const mode = g.policy.config.mode!;
      const measures = mode.paths.map((p) => this.measure(conn, name, p, g.byPath.get(p.name) ?? [], pathUp(p), now));
      const d = decide(mode, measures, conn.states.get(name) ?? initialModeState(), now, selfDelayMs(mode.standbyRate));
      conn.states.set(name, d.state);
      for (const [path, subs] of g.byPath) {
        const action = d.actions[path]!;
        for (const s of subs) {
          const old = this.wants.get(s.key);
          if (old && old.action.standby === action.standby && old.action.rateBps === action.rateBps && old.action.probe === action.probe && old.policy === name) continue;
          this.wants.set(s.key, { policy: name, path, action });
          changed.push(s);
        }
      }
    }
    return changed;
  }

  /** The active path of a connection's mode policy (status, tests). */
  activePath(token: string, policy: string): string | null {
    return this.conns.get(token)?.states.get(policy)?.active ?? null;
  }

  private measure(conn: ConnModes, policy: string, p: ModePath, subs: readonly Subflow[], uplinkUp: boolean, now: number): PathMeasure {
    const key = `${policy}|${p.name}`;
    const rtts = subs.flatMap((s) => (s.rttUs ? [s.rttUs / 1000] : []));
    let bytes = 0;
    let retrans = 0;
    let segs = 0;
    let windowMs = 0;
    for (const s of subs) {
      const b = this.baselines.get(s.key);
      const cur = { at: s.sampledAt ?? now, bytes: s.bytesTx, retrans: s.retransSegs ?? 0, segs: s.segsOut ?? 0 };
      if (!b) {
        this.baselines.set(s.key, cur);
        continue;
      }
      if (cur.at - b.at < MEASURE_WINDOW_MS) continue;
      bytes += cur.bytes - b.bytes;
      retrans += Math.max(0, cur.retrans - b.retrans);
      segs += Math.max(0, cur.segs - b.segs);
      windowMs = Math.max(windowMs, cur.at - b.at);
      this.baselines.set(s.key, cur);
    }
    const last = conn.last.get(key) ?? { lossPct: null, rateBps: 0, rttMs: null };
    conn.last.set(key, last);
    if (windowMs > 0) {
      last.lossPct = lossPercent(0, retrans, 0, segs) ?? last.lossPct;
      last.rateBps = (bytes * 8 * 1000) / windowMs;
    }
    // The kernel's srtt moves by a quarter of its variance per ACK; one noisy tick must not reset a mode's hold.
    if (rtts.length > 0) last.rttMs = last.rttMs === null ? Math.min(...rtts) : last.rttMs + RTT_GAIN * (Math.min(...rtts) - last.rttMs);
    return {
      name: p.name,
      up: uplinkUp && subs.some(subflowAlive),
      rttMs: last.rttMs,
      lossPct: last.lossPct,
      rateBps: last.rateBps,
    };
  }
}
