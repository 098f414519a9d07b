/**
 * Pure sizing of a client connection's socket buffers from what its subflows measure
 * (MPTCP needs receive room for data that arrives out of order across paths of different delay).
 *
 * Two units appear here. "Payload" bytes are what the formula gives. "Kernel" bytes are what
 * SO_RCVBUF/SO_SNDBUF read back, what `ss -m` shows as rb/tb and what tcp_rmem/tcp_wmem bound:
 * they include the kernel's per-skb bookkeeping, which Linux budgets as one byte per byte of
 * payload (setsockopt doubles the value it is given for that reason). So kernel = 2 × payload.
 */

export interface SubflowRate {
  /** tcp_info delivery rate, bytes per second (0 before data has flowed). */
  deliveryRateBps: number;
  /** Smoothed RTT, microseconds (0 when unknown). */
  rttUs: number;
}

/** What tcp_info says about one subflow, as far as the sizing needs it. */
export interface SubflowMeasure {
  /** Bytes per second (tcpi_delivery_rate). */
  deliveryRate: number;
  sndCwnd: number;
  sndMss: number;
  rttUs: number;
}

/**
 * A subflow's bandwidth for the sizing: its delivery rate, but never more than one congestion
 * window per RTT. delivery_rate is the latest single sample and can spike far above the path's
 * rate (ACK compression; on the testbed one auto run computed a 95 MB need for 2 × 50 Mbit/s);
 * the window bound is what the subflow can actually keep in flight.
 */
export function subflowRate(m: SubflowMeasure): SubflowRate {
  const windowRate = m.rttUs > 0 ? (m.sndCwnd * m.sndMss * 1e6) / m.rttUs : 0;
  return { deliveryRateBps: Math.min(m.deliveryRate, windowRate), rttUs: m.rttUs };
}

/** Kernel bytes per payload byte (see the header). */
export const KERNEL_OVERHEAD = 2;

/**
 * Payload bytes one connection needs in each buffer: 2 × Σ(subflow bandwidth) × max(subflow RTT).
 * Monotone in every rate and RTT; 0 for no subflows. Negative or non-finite inputs count as 0.
 */
export function requiredBufferBytes(subflows: readonly SubflowRate[]): number {
  let sum = 0;
  let maxRtt = 0;
  for (const s of subflows) {
    if (Number.isFinite(s.deliveryRateBps) && s.deliveryRateBps > 0) sum += s.deliveryRateBps;
    if (Number.isFinite(s.rttUs) && s.rttUs > maxRtt) maxRtt = s.rttUs;
  }
  return Math.ceil((2 * sum * maxRtt) / 1e6);
}

/** The kernel-unit buffer size that holds `payload` bytes. */
export function kernelBufferBytes(payload: number): number {
  return payload * KERNEL_OVERHEAD;
}

export type BufferMode = 'auto' | 'fixed' | 'off';

export interface BufferPolicy {
  mode: BufferMode;
  /** Kernel bytes. auto: never below min, never above max. fixed: every client socket gets max. */
  min: number;
  max: number;
}

/** tcp_rmem / tcp_wmem: "min default max" in kernel bytes. */
export interface TcpMem {
  min: number;
  def: number;
  max: number;
}

/** "4096 131072 33554432" (tabs or spaces) → TcpMem; null when it is not three non-negative integers. */
export function parseTcpMem(text: string | null | undefined): TcpMem | null {
  if (typeof text !== 'string') return null;
  const parts = text.trim().split(/\s+/);
  if (parts.length !== 3 || parts.some((p) => !/^\d{1,15}$/.test(p))) return null;
  const [min, def, max] = parts.map(Number) as [number, number, number];
  return { min, def, max };
}

export type BufferDecision =
  /** Lock the buffer at `bytes` (kernel bytes). */
  | { action: 'set'; bytes: number; reason: string }
  /** Leave it to the kernel (or to the size already set). */
  | { action: 'keep'; reason: string };

/** A locked buffer is grown again only when the need is this much larger: no setsockopt churn. */
export const REGROW_FACTOR = 1.25;

/** auto's target for a need: the kernel-unit size, clamped to the policy's bounds. */
export function targetBytes(needPayload: number, policy: Pick<BufferPolicy, 'min' | 'max'>): number {
  return Math.min(policy.max, Math.max(policy.min, kernelBufferBytes(needPayload)));
}

/**
 * What to do with one buffer (receive or send) of one socket.
 * - off: nothing.
 * - fixed: lock at max (pins a known size, e.g. to compare 0.18 MB with 0.72 MB); once set, keep.
 * - auto: setting a size switches the kernel's autotuning off for that buffer (measured on Linux 6.18), and
 *   autotuning grows it up to `systemMax` on its own. So act only when the target is beyond what
 *   autotuning could ever reach (systemMax too small); a buffer already locked is only grown, by
 *   at least REGROW_FACTOR, never shrunk (shrinking below queued data gains nothing).
 * @param current kernel bytes this module set before on the socket, null when it never did.
 * @param systemMax tcp_rmem/tcp_wmem max; null when unreadable (then autotuning is trusted).
 */
export function decideBuffer(needPayload: number, policy: BufferPolicy, systemMax: number | null, current: number | null): BufferDecision {
  if (policy.mode === 'off') return { action: 'keep', reason: 'off' };
  if (policy.mode === 'fixed') return current === policy.max ? { action: 'keep', reason: 'fixed' } : { action: 'set', bytes: policy.max, reason: 'fixed' };
  const target = targetBytes(needPayload, policy);
  if (current !== null) {
    return target >= current * REGROW_FACTOR ? { action: 'set', bytes: target, reason: 'need grew' } : { action: 'keep', reason: 'locked' };
  }
  if (systemMax === null || target <= systemMax) return { action: 'keep', reason: 'autotuning' };
  return { action: 'set', bytes: target, reason: 'system max too small' };
}
