/**
 * Uplink health, BFD-like: a probe every interval; `downAfter` misses in a row declare the uplink
 * down, `upAfter` successes in a row declare it up again. Uplinks start up, so a restart does not
 * move traffic before the first probes are in. The probe is a TCP connect marked with the
 * uplink's routing mark (so it leaves by that uplink's table): connected or refused both prove
 * the path works; a timeout or unreachable does not.
 */
import { EventEmitter } from 'node:events';
import type { ProbeConfig } from '../config/steering';
import { closeFd, connectMptcp, isConnectionRefused } from '../sys/socket';

export type UplinkState = 'up' | 'down';

/** The pure state machine: feed probe results, get a transition when the state changes. */
export class HealthCounter {
  state: UplinkState = 'up';
  private streak = 0;
  constructor(
    private readonly downAfter: number,
    private readonly upAfter: number,
  ) {}

  observe(ok: boolean): UplinkState | null {
    const agrees = (this.state === 'up') === ok;
    if (agrees) {
      this.streak = 0;
      return null;
    }
    this.streak++;
    if (this.streak < (this.state === 'up' ? this.downAfter : this.upAfter)) return null;
    this.streak = 0;
    this.state = this.state === 'up' ? 'down' : 'up';
    return this.state;
  }
}

export type ProbeFn = (probe: ProbeConfig, mark: number) => Promise<boolean>;

/** TCP connect with SO_MARK; refused counts as alive. */
export const tcpProbe: ProbeFn = async (probe, mark) => {
  try {
    const { fd } = await connectMptcp(probe.host, probe.port, probe.timeoutMs, { mark });
    closeFd(fd);
    return true;
  } catch (e) {
    return isConnectionRefused(e);
  }
};

export interface HealthEvents {
  change: [name: string, state: UplinkState];
}

interface Watched {
  counter: HealthCounter;
  timer: NodeJS.Timeout | null;
  inFlight: boolean;
}

export class UplinkHealth extends EventEmitter<HealthEvents> {
  private readonly watched = new Map<string, Watched>();

  constructor(private readonly probeFn: ProbeFn = tcpProbe) {
    super();
  }

  state(name: string): UplinkState {
    return this.watched.get(name)?.counter.state ?? 'up';
  }

  watch(name: string, probe: ProbeConfig, mark: number): void {
    this.unwatch(name);
    const w: Watched = { counter: new HealthCounter(probe.downAfter, probe.upAfter), timer: null, inFlight: false };
    w.timer = setInterval(() => {
      // A probe still waiting for its timeout is not doubled up; it reports when it ends.
      if (w.inFlight) return;
      w.inFlight = true;
      this.probeFn(probe, mark)
        .catch(() => false)
        .then((ok) => {
          w.inFlight = false;
          if (this.watched.get(name) !== w) return;
          const t = w.counter.observe(ok);
          if (t) this.emit('change', name, t);
        });
    }, probe.intervalMs);
    w.timer.unref();
    this.watched.set(name, w);
  }

  unwatch(name: string): void {
    const w = this.watched.get(name);
    if (w?.timer) clearInterval(w.timer);
    this.watched.delete(name);
  }

  stop(): void {
    for (const name of [...this.watched.keys()]) this.unwatch(name);
  }
}
