/**
 * Fast return of a repaired path. After a blackhole a subflow retransmits with exponential
 * backoff (measured here: ~0.2, 0.6, 1.4, 3.0, 6.2 s after the cut), so it carries traffic again
 * only at its next retransmission after the repair: 2.6–3.9 s after a 4 s outage. Capping the
 * backoff bounds that wait. TCP_RTO_MAX_MS fails on MPTCP sockets (ENOPROTOOPT), so the cap is
 * the namespace's net.ipv4.tcp_rto_max_ms, which every TCP socket of the namespace follows
 * (upstream connections too). MPTCP's stale-subflow handling (net.mptcp.stale_loss_cnt) only
 * moves data off the stalled subflow; it does not bring it back sooner (measured: 2.6–3.2 s).
 * The sysctl is owned like all kernel state (src/kstate): journaled, restored on stop and after a
 * crash.
 */
import type { KernelItem, KernelState } from '../kstate/kernel-state';
import type { Logger } from '../log/logger';
import { SysctlError, SysctlErrorCode, readSysctl, writeSysctl } from '../sys/sysctl';

export const RTO_MAX_SYSCTL = 'net.ipv4.tcp_rto_max_ms';

export class RtoCap {
  constructor(
    private rtoMaxMs: number | null,
    private readonly log: Logger,
    private readonly kstate: KernelState,
  ) {}

  /** Set the cap when one is configured. A kernel or /proc/sys that refuses it is logged, not fatal: paths still return, only later. */
  async start(): Promise<void> {
    const want = this.rtoMaxMs;
    if (want === null) return;
    const current = readSysctl(RTO_MAX_SYSCTL);
    if (current === null) {
      this.log.warn('paths.rtoMaxMs: this kernel has no net.ipv4.tcp_rto_max_ms (Linux 6.15+); repaired paths wait for their retransmission backoff');
      return;
    }
    const item: KernelItem = { kind: 'sysctl', key: RTO_MAX_SYSCTL, original: current };
    if (current === String(want) && !this.kstate.has(item)) return;
    try {
      await this.kstate.install(item, async () => writeSysctl(RTO_MAX_SYSCTL, String(want)));
      this.log.info('retransmission backoff capped', { sysctl: RTO_MAX_SYSCTL, ms: want, was: current });
    } catch (e) {
      if (!(e instanceof SysctlError)) throw e;
      const hint = e.code === SysctlErrorCode.Denied ? `set it beforehand: sysctl -w ${RTO_MAX_SYSCTL}=${want} (e.g. in /etc/sysctl.d; the systemd unit makes /proc/sys read-only)` : undefined;
      this.log.warn('paths.rtoMaxMs: could not set the retransmission backoff cap; repaired paths wait for their backoff', { error: e.message, ...(hint ? { hint } : {}) });
    }
  }

  /** Apply a new cap, or give the kernel its own value back when the key is removed. */
  async reload(next: number | null): Promise<void> {
    this.rtoMaxMs = next;
    // Removal restores the original the record holds, not this placeholder's.
    if (next === null) await this.kstate.removeInstalled([{ kind: 'sysctl', key: RTO_MAX_SYSCTL, original: '' }]);
    else await this.start();
  }
}
