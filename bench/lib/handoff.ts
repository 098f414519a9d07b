/**
 * Handoff metrics of seed 003 §IV over what a client application saw (pure functions):
 * - T-throughput: from an event (uplink cut, or its restore) until the goodput, as a mean over
 *   half a second, is back at a target;
 * - T-latency: from the cut until a request/response exchange is back under a delay bound.
 *   Replies share one in-order byte stream, so the first exchange sent after the cut that comes
 *   back within the bound proves every reply stuck on the failed path has been delivered.
 * Times are milliseconds on one clock (performance.now()).
 */

/** Cumulative application bytes received by time t. */
export interface ByteSample {
  t: number;
  bytes: number;
}

/** Bytes received by time t (the series is in time order; a step function). */
export function bytesAt(series: readonly ByteSample[], t: number): number {
  let lo = 0;
  let hi = series.length - 1;
  let found = 0;
  while (lo <= hi) {
    const mid = (lo + hi) >> 1;
    if (series[mid]!.t <= t) {
      found = series[mid]!.bytes;
      lo = mid + 1;
    } else hi = mid - 1;
  }
  return found;
}

/** Goodput over [from, to), Mbit/s. */
export function rateMbit(series: readonly ByteSample[], from: number, to: number): number {
  if (to <= from) return 0;
  return ((bytesAt(series, to) - bytesAt(series, from)) * 8) / 1000 / (to - from);
}

export interface ThroughputRule {
  /** The goodput is judged as its mean over this long (default 500 ms): the app sees data in bursts. */
  holdMs?: number;
  /** Candidate start times are this far apart (default 10 ms). */
  stepMs?: number;
}

/**
 * Milliseconds from `start` to the first time t whose mean goodput over [t, t + holdMs) reaches
 * `targetMbit`; null when none does while the series has data to judge it. After a sharp stall
 * followed by a rate R this reads the stall short by holdMs × (1 − target/R) (100 ms when the
 * target is 80% of R): the figure is "when the goodput is back", not "when the stall ended".
 */
export function timeToThroughput(series: readonly ByteSample[], start: number, targetMbit: number, rule: ThroughputRule = {}): number | null {
  const hold = rule.holdMs ?? 500;
  const step = rule.stepMs ?? 10;
  const end = series.length ? series[series.length - 1]!.t : start;
  for (let t = start; t + hold <= end; t += step) if (rateMbit(series, t, t + hold) >= targetMbit) return t - start;
  return null;
}

/** One request/response exchange; `answered` null when no reply came. */
export interface Exchange {
  sent: number;
  answered: number | null;
}

/**
 * T-latency: milliseconds from `cut` until the reply of the first exchange sent at or after the
 * cut whose round trip is within `boundMs`; null when none is.
 */
export function timeToLatency(exchanges: readonly Exchange[], cut: number, boundMs: number): number | null {
  for (const e of exchanges) {
    if (e.sent < cut || e.answered === null) continue;
    if (e.answered - e.sent <= boundMs) return e.answered - cut;
  }
  return null;
}

/** The longest round trip of the exchanges answered after `from` (unanswered ones excluded). */
export function worstRtt(exchanges: readonly Exchange[], from: number): number | null {
  let worst: number | null = null;
  for (const e of exchanges) if (e.answered !== null && e.answered >= from) worst = Math.max(worst ?? 0, e.answered - e.sent);
  return worst;
}
