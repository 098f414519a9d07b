/**
 * systemd integration: sd_notify(3) state messages over $NOTIFY_SOCKET (an AF_UNIX datagram
 * socket, which Node cannot send to, hence FFI) and sd_listen_fds(3) for socket activation.
 */
import koffi from 'koffi';
import { check, libc, SysError } from './libc';

const AF_UNIX = 1;
const SOCK_DGRAM = 2;
const SOCK_CLOEXEC = 0o2000000;
const MSG_NOSIGNAL = 0x4000;
/** sizeof(sockaddr_un.sun_path) */
const SUN_PATH_MAX = 108;
/** sd_listen_fds(3): passed descriptors start here. */
const SD_LISTEN_FDS_START = 3;

const lib = koffi.load('libc.so.6');
const sendto = lib.func('intptr_t sendto(int fd, const void *buf, size_t len, int flags, const void *addr, uint32_t addrlen)');

export type NotifyResult = { ok: true; sent: boolean } | { ok: false; error: SysError | Error };

/** sockaddr_un for a NOTIFY_SOCKET value: a path, or "@name" for the abstract namespace. */
export function notifySockaddr(socketPath: string): Buffer | null {
  const abstract = socketPath.startsWith('@');
  const name = Buffer.from(abstract ? `\0${socketPath.slice(1)}` : socketPath);
  if (name.length === 0 || name.length >= SUN_PATH_MAX) return null;
  const addr = Buffer.alloc(2 + name.length + (abstract ? 0 : 1));
  addr.writeUInt16LE(AF_UNIX, 0);
  name.copy(addr, 2);
  // Abstract names are exactly `length` bytes (no NUL); paths keep their terminating NUL.
  return addr;
}

/**
 * Send one notification ("READY=1", ...). Without $NOTIFY_SOCKET (not run by systemd with
 * Type=notify) nothing is sent and that is not an error. Never throws: a failed notify must not
 * take the proxy down, the caller logs it.
 */
export function sdNotify(state: string, env: NodeJS.ProcessEnv = process.env): NotifyResult {
  const target = env.NOTIFY_SOCKET;
  if (!target) return { ok: true, sent: false };
  const addr = notifySockaddr(target);
  if (!addr) return { ok: false, error: new Error(`NOTIFY_SOCKET is not a usable unix socket address: ${JSON.stringify(target)}`) };
  let fd = -1;
  try {
    fd = check('socket', libc.socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0) as number);
    const msg = Buffer.from(state);
    check('sendto', Number(sendto(fd, msg, msg.length, MSG_NOSIGNAL, addr, addr.length)));
    return { ok: true, sent: true };
  } catch (e) {
    return { ok: false, error: e as SysError };
  } finally {
    if (fd >= 0) libc.close(fd);
  }
}

/** CLOCK_MONOTONIC in µs, as RELOADING=1 wants it (libuv's hrtime is CLOCK_MONOTONIC). */
function monotonicUsec(): bigint {
  return process.hrtime.bigint() / 1000n;
}

export const notifyReady = (env?: NodeJS.ProcessEnv): NotifyResult => sdNotify('READY=1\nSTATUS=serving', env);
/** Before re-reading the config; send notifyReady() when the reload is done. */
export const notifyReloading = (env?: NodeJS.ProcessEnv): NotifyResult => sdNotify(`RELOADING=1\nMONOTONIC_USEC=${monotonicUsec()}\nSTATUS=reloading`, env);
export const notifyStopping = (env?: NodeJS.ProcessEnv): NotifyResult => sdNotify('STOPPING=1\nSTATUS=draining', env);

export interface ListenFd {
  fd: number;
  /** FileDescriptorName= of the socket unit ("unknown" when unnamed). */
  name: string;
}

/**
 * Descriptors passed by socket activation (sd_listen_fds(3)): only when LISTEN_PID is this
 * process, so a child that inherited the environment does not claim them.
 */
export function systemdListenFds(env: NodeJS.ProcessEnv = process.env, pid: number = process.pid): ListenFd[] {
  if (env.LISTEN_PID !== String(pid)) return [];
  const count = Number(env.LISTEN_FDS);
  if (!Number.isInteger(count) || count <= 0) return [];
  const names = (env.LISTEN_FDNAMES ?? '').split(':');
  return Array.from({ length: count }, (_, i) => ({ fd: SD_LISTEN_FDS_START + i, name: names[i] || 'unknown' }));
}
