/**
 * Socket activation: listening sockets passed by systemd (LISTEN_FDS, sd_listen_fds(3)) or, in a
 * cluster worker, by the supervisor. Claimed once per process at start (the environment is
 * cleared then, so no child claims them again), checked (listening SOCK_STREAM, MPTCP or TCP),
 * and lent to listeners by name:
 *
 *   a listener takes the passed socket whose FileDescriptorName= equals the listener's name;
 *   failing that, the first free one named after its protocol (http, socks, mixed, transparent).
 *
 * The listener then serves on that socket whatever its `listen:` address says. A listener gets a
 * duplicate of the descriptor, so the original outlives the listener: a listener removed by a
 * SIGHUP frees its socket, and one added back later (or a restarted worker) takes it again.
 */
import type { ListenerConfig } from '../config/schema';
import { clearListenEnv, dupCloseOnExec, inspectListenFd, setCloseOnExec, systemdListenFds, type ListenFd } from '../sys/sdnotify';
import { ListenerError } from './listener-error';

/** Set in a worker's environment by the supervisor: "FD=NAME:FD=NAME" of the sockets it passes. */
export const WORKER_LISTEN_FDS_ENV = 'MPTCP_PROXY_LISTEN_FDS';

export interface ActivatedSocket {
  fd: number;
  name: string;
  protocol: 'mptcp' | 'tcp';
  address: string;
  port: number;
}

interface Slot extends ActivatedSocket {
  /** The listener using it now. */
  user: string | null;
}

function parseWorkerFds(value: string | undefined): ListenFd[] {
  if (!value) return [];
  return value.split(':').flatMap((item) => {
    const m = /^(\d+)=(.*)$/.exec(item);
    return m ? [{ fd: Number(m[1]), name: m[2] || 'unknown' }] : [];
  });
}

export class ActivatedSockets {
  private constructor(private readonly slots: Slot[]) {}

  /**
   * Claim what this process was passed (systemd's variables, or the supervisor's for a worker),
   * clear the variables, check every socket. A passed descriptor that is no listening stream
   * socket is an error: serving something else on it would be a silent misconfiguration.
   */
  static claim(env: NodeJS.ProcessEnv = process.env): ActivatedSockets {
    const passed = [...systemdListenFds(env), ...parseWorkerFds(env[WORKER_LISTEN_FDS_ENV])];
    clearListenEnv(env);
    delete env[WORKER_LISTEN_FDS_ENV];
    const slots = passed.map(({ fd, name }): Slot => {
      const info = inspectListenFd(fd);
      if (!info.ok) throw new ListenerError(`socket activation: fd ${fd} (${name}) cannot serve a listener: ${info.reason}`);
      setCloseOnExec(fd);
      return { fd, name, protocol: info.protocol, address: info.address, port: info.port, user: null };
    });
    return new ActivatedSockets(slots);
  }

  static none(): ActivatedSockets {
    return new ActivatedSockets([]);
  }

  get all(): readonly ActivatedSocket[] {
    return this.slots;
  }

  /** Passed sockets that no listener of `listeners` would take (worth a warning at start). */
  unmatched(listeners: readonly ListenerConfig[]): ActivatedSocket[] {
    const taken = new Set<Slot>();
    for (const l of listeners) {
      const s = this.match(l, (x) => !taken.has(x));
      if (s) taken.add(s);
    }
    return this.slots.filter((s) => !taken.has(s));
  }

  private match(l: ListenerConfig, free: (s: Slot) => boolean): Slot | undefined {
    return this.slots.find((s) => free(s) && s.name === l.name) ?? this.slots.find((s) => free(s) && s.name === l.protocol);
  }

  /** A duplicate of the socket for listener `l`, or null when none was passed for it. */
  take(l: ListenerConfig): (ActivatedSocket & { release(): void }) | null {
    const slot = this.match(l, (s) => s.user === null);
    if (!slot) return null;
    slot.user = l.name;
    return { ...slot, fd: dupCloseOnExec(slot.fd), release: () => void (slot.user = null) };
  }
}

let current = ActivatedSockets.none();

/** Claim this process's passed sockets (once, at start, before any child is spawned). */
export function claimActivatedSockets(env?: NodeJS.ProcessEnv): ActivatedSockets {
  current = ActivatedSockets.claim(env);
  return current;
}

/** The sockets claimed at start (none when not socket-activated). */
export function activatedSockets(): ActivatedSockets {
  return current;
}
