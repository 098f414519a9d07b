/**
 * ATSSS steering modes (3GPP TS 23.501 §5.32.8) as pure functions: from what was measured on each
 * path of one connection, and what the mode decided last time, to what each path gets now.
 *
 * - active-standby: the first path that is up carries the traffic; the others stand by. A failed
 *   active path is left at once; a preferred path that returns takes over after `holdMs` up.
 * - smallest-delay: the path with the lowest RTT carries the traffic; another path takes over
 *   only when it is `hysteresisMs` faster for `holdMs` (no flapping on noise).
 * - priority: the first path carries the traffic while its RTT and loss are under the
 *   thresholds; over either (or down) the next path takes over; it returns once the first path
 *   has been under them (RTT with `hysteresisMs` to spare, loss under half) for `holdMs`.
 * - load-balance: every path carries traffic, each capped so its share of the bytes follows its
 *   weight: the heaviest path runs free and paces the others (its delivered rate × w / w_max).
 *
 * "Standby" is carried out by the engine: backup (MP_PRIO) where the kernel can mark exactly
 * those subflows, else an HTB cap at `standbyRate`. A backup subflow sends no data, so its RTT
 * (the sender's srtt, all the kernel offers) never refreshes and smallest-delay could never
 * switch back to it: every `probeIntervalMs` the standby paths leave backup for PROBE_MS under the
 * standby cap (a "probe"), which refreshes their srtt on the subflow itself, NAT and routing marks
 * included, for about standbyRate × PROBE_MS bytes each. A standby path's measured RTT includes the
 * queue its own cap builds, so it is read minus that queue's bound (`selfDelayMs`): an optimistic
 * guess, which `holdMs` keeps from causing more than one switch per hold.
 */
import type { SteeringModeConfig } from '../config/steering';

export interface PathMeasure {
  name: string;
  /** An established subflow on it, its uplink (if any) up, and no retransmission timeout pending. */
  up: boolean;
  /** Smoothed RTT of its subflows (the lowest), ms; null before any sample. */
  rttMs: number | null;
  /** Retransmitted share of the segments sent in the last window, percent; null without traffic. */
  lossPct: number | null;
  /** Bits per second delivered in the last window. */
  rateBps: number;
}

export interface ModeState {
  /** The path carrying the traffic (all but load-balance). */
  active: string | null;
  /** A path that looks better, and since when (ms): it takes over after holdMs. */
  candidate: string | null;
  candidateSince: number;
  /** load-balance: the cap of each non-heaviest path (bits/s), null = free. */
  caps: Record<string, number | null>;
  /** smallest-delay: when the next probe starts (0 = none planned) and until when one runs (ms). */
  probeAt: number;
  probeUntil: number;
}

export interface PathAction {
  /** Keep it off the traffic (backup or the standby cap). */
  standby: boolean;
  /** HTB cap in bits/s (load-balance), null = none. */
  rateBps: number | null;
  /** A standby path let out of backup now, under the standby cap, to refresh its RTT. */
  probe: boolean;
}

export interface ModeDecision {
  state: ModeState;
  actions: Record<string, PathAction>;
}

export const initialModeState = (): ModeState => ({ active: null, candidate: null, candidateSince: 0, caps: {}, probeAt: 0, probeUntil: 0 });

/** Caps below this starve a subflow (HTB and the leaf queue misbehave): load-balance floor. */
export const MIN_CAP_BPS = 100_000;
/** A new load-balance cap is applied only when it moves by more than this fraction. */
export const CAP_DEADBAND = 0.1;
/**
 * How long a probe keeps a standby path out of backup (ms): two or three mode ticks, enough for a
 * capped subflow to send ~30 segments and get their ACKs, over which the kernel's srtt (1/8 per
 * ACK) converges, even at a 100 ms RTT.
 */
export const PROBE_MS = 400;

/** Switch to `want` now, after `holdMs` of wanting it, or stay: the common hold logic. */
function hold(prev: ModeState, want: string | null, now: number, holdMs: number, immediate: boolean): ModeState {
  if (want === null || want === prev.active) return { ...prev, candidate: null, candidateSince: 0 };
  if (immediate || prev.active === null || holdMs <= 0) return { ...prev, active: want, candidate: null, candidateSince: 0 };
  if (prev.candidate !== want) return { ...prev, candidate: want, candidateSince: now };
  if (now - prev.candidateSince >= holdMs) return { ...prev, active: want, candidate: null, candidateSince: 0 };
  return prev;
}

function oneActive(paths: readonly PathMeasure[], state: ModeState, probing = false): ModeDecision {
  // Nothing up: no path is held back, whatever may still carry.
  const anyUp = paths.some((p) => p.up);
  const actions = Object.fromEntries(
    paths.map((p) => {
      const standby = anyUp && p.name !== state.active;
      return [p.name, { standby, rateBps: null, probe: standby && p.up && probing }];
    }),
  );
  return { state, actions };
}

/** The probe clock: the first probe an interval after the active path was chosen, then one per interval. */
function probeClock(intervalMs: number, prev: ModeState, state: ModeState, now: number): ModeState {
  if (intervalMs <= 0) return state;
  if (state.active !== prev.active || state.probeAt === 0) return { ...state, probeAt: now + intervalMs, probeUntil: 0 };
  if (now >= state.probeAt) return { ...state, probeAt: now + intervalMs, probeUntil: now + PROBE_MS };
  return state;
}

/** RTT of a path as the mode compares it: a standby path's minus the queue its own cap adds. */
function effectiveRtt(p: PathMeasure, state: ModeState, selfDelayMs: number): number | null {
  if (p.rttMs === null) return null;
  return p.name === state.active ? p.rttMs : Math.max(0, p.rttMs - selfDelayMs);
}

export function decide(mode: SteeringModeConfig, paths: readonly PathMeasure[], prev: ModeState, now: number, selfDelayMs = 0): ModeDecision {
  const byName = new Map(paths.map((p) => [p.name, p]));
  const cur = prev.active === null ? undefined : byName.get(prev.active);
  const curDown = cur !== undefined && !cur.up;
  const up = paths.filter((p) => p.up);
  switch (mode.name) {
    case 'active-standby':
      return oneActive(paths, hold(prev, up[0]?.name ?? null, now, mode.holdMs, curDown));
    case 'smallest-delay': {
      const rtt = (p: PathMeasure): number | null => effectiveRtt(p, prev, selfDelayMs);
      const timed = up.filter((p) => rtt(p) !== null).sort((a, b) => rtt(a)! - rtt(b)!);
      const best = timed[0] ?? up[0];
      let want = best?.name ?? null;
      if (cur && cur.up && best && best !== cur) {
        const c = rtt(cur);
        const b = rtt(best);
        // The current path keeps the traffic unless the other is clearly faster.
        if (c === null || b === null || b > c - mode.hysteresisMs) want = cur.name;
      }
      const state = probeClock(mode.probeIntervalMs ?? 0, prev, hold(prev, want, now, mode.holdMs, curDown || prev.active === null), now);
      return oneActive(paths, state, now < state.probeUntil);
    }
    case 'priority': {
      const over = (p: PathMeasure): boolean => {
        const r = effectiveRtt(p, prev, selfDelayMs);
        return (mode.rttThresholdMs !== undefined && r !== null && r > mode.rttThresholdMs) || (mode.lossThresholdPercent !== undefined && p.lossPct !== null && p.lossPct > mode.lossThresholdPercent);
      };
      const wellUnder = (p: PathMeasure): boolean => {
        const r = effectiveRtt(p, prev, selfDelayMs);
        return !(mode.rttThresholdMs !== undefined && r !== null && r > mode.rttThresholdMs - mode.hysteresisMs) && !(mode.lossThresholdPercent !== undefined && p.lossPct !== null && p.lossPct > mode.lossThresholdPercent / 2);
      };
      // The first path that is up and under the thresholds; a path it would return to must be well under them.
      const rank = paths.findIndex((p) => p.name === prev.active);
      const fine = up.filter((p) => (paths.indexOf(p) < rank ? wellUnder(p) : !over(p)));
      const want = fine[0] ?? (cur?.up ? cur : up[0]);
      const leaving = curDown || (cur !== undefined && over(cur) && want !== cur);
      return oneActive(paths, hold(prev, want?.name ?? null, now, mode.holdMs, leaving));
    }
    case 'load-balance':
      return balance(mode, paths, prev);
  }
}

/** load-balance: the heaviest up path runs free; each other up path is capped to its weight's share of it. */
function balance(mode: SteeringModeConfig, paths: readonly PathMeasure[], prev: ModeState): ModeDecision {
  const w = mode.weights ?? {};
  const up = paths.filter((p) => p.up);
  const top = [...up].sort((a, b) => (w[b.name] ?? 1) - (w[a.name] ?? 1))[0];
  const caps: Record<string, number | null> = {};
  for (const p of paths) {
    if (!top || !p.up || p === top || top.rateBps <= 0) {
      caps[p.name] = p.up && p !== top ? (prev.caps[p.name] ?? null) : null;
      continue;
    }
    const want = Math.max(MIN_CAP_BPS, Math.round((top.rateBps * (w[p.name] ?? 1)) / (w[top.name] ?? 1)));
    const old = prev.caps[p.name] ?? null;
    caps[p.name] = old !== null && Math.abs(want - old) <= old * CAP_DEADBAND ? old : want;
  }
  const actions = Object.fromEntries(paths.map((p) => [p.name, { standby: false, rateBps: caps[p.name] ?? null, probe: false }]));
  return { state: { ...prev, active: top?.name ?? null, caps }, actions };
}

/** Loss over a window from the counters at its two ends; null when nothing was sent. */
export function lossPercent(retransBefore: number, retransNow: number, segsBefore: number, segsNow: number): number | null {
  const sent = segsNow - segsBefore;
  if (sent <= 0) return null;
  return (Math.max(0, retransNow - retransBefore) / sent) * 100;
}
