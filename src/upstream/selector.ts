/**
 * The parent selector, pure: each parent's health from its probe and connect results, and the
 * order a connection tries them in — healthy parents only, lowest latency first (as gost's
 * selector), parents not yet measured after the measured ones, ties in config order.
 */
import type { ParentProbeConfig } from '../config/upstream';

export interface ParentHealth {
  up: boolean;
  /** Smoothed TCP connect time to the parent, ms; null until the first success. */
  latencyMs: number | null;
  /** Consecutive results that disagree with `up` (failures while up, successes while down). */
  streak: number;
}

export const INITIAL_HEALTH: ParentHealth = { up: true, latencyMs: null, streak: 0 };

/** Weight of a new latency sample: smooths one slow connect, follows a lasting change in a few. */
const LATENCY_WEIGHT = 0.3;

function smoothed(prev: number | null, sample: number): number {
  return prev === null ? sample : prev + LATENCY_WEIGHT * (sample - prev);
}

/** After a probe: `latencyMs` when the parent answered, null when it did not. */
export function afterProbe(h: ParentHealth, latencyMs: number | null, probe: ParentProbeConfig): ParentHealth {
  const ok = latencyMs !== null;
  const latency = ok ? smoothed(h.latencyMs, latencyMs) : h.latencyMs;
  if (ok === h.up) return { up: h.up, latencyMs: latency, streak: 0 };
  const streak = h.streak + 1;
  const flip = streak >= (h.up ? probe.downAfter : probe.upAfter);
  return { up: flip ? ok : h.up, latencyMs: latency, streak: flip ? 0 : streak };
}

/**
 * After a real connect: a success counts like a probe's latency; a failure marks the parent down at
 * once (a client paid for it; the probes bring it back).
 */
export function afterConnect(h: ParentHealth, latencyMs: number | null): ParentHealth {
  if (latencyMs === null) return { up: false, latencyMs: h.latencyMs, streak: 0 };
  return { ...h, latencyMs: smoothed(h.latencyMs, latencyMs) };
}

/** The names to try, in order: up ones only, by latency (unmeasured last), then config order. */
export function selectOrder(parents: readonly { name: string; health: ParentHealth }[]): string[] {
  return parents
    .map((p, i) => ({ ...p, i }))
    .filter((p) => p.health.up)
    .sort((a, b) => (a.health.latencyMs ?? Infinity) - (b.health.latencyMs ?? Infinity) || a.i - b.i)
    .map((p) => p.name);
}
