/**
 * systemd integration: sd_notify(3) state messages over $NOTIFY_SOCKET (an AF_UNIX datagram
 * socket, which Node cannot send to, hence FFI) and sd_listen_fds(3) for socket activation.
 */
import { check, IPPROTO_MPTCP, IPPROTO_TCP, libc, SOCK_CLOEXEC, SOCK_STREAM, SOL_SOCKET, SysError } from './libc';
import { socketName } from './socket';

const AF_UNIX = 1;
const SOCK_DGRAM = 2;
const MSG_NOSIGNAL = 0x4000;
/** sizeof(sockaddr_un.sun_path) */
const SUN_PATH_MAX = 108;
/** sd_listen_fds(3): passed descriptors start here. */
const SD_LISTEN_FDS_START = 3;

const F_DUPFD_CLOEXEC = 1030;
const F_SETFD = 2;
const FD_CLOEXEC = 1;
const SO_TYPE = 3;
const SO_ACCEPTCONN = 30;
const SO_PROTOCOL = 38;

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
    check('sendto', Number(libc.sendto(fd, msg, msg.length, MSG_NOSIGNAL, addr, addr.length)));
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

/** Forget the activation variables, so no child (worker, tool) and no later read claims the fds. */
export function clearListenEnv(env: NodeJS.ProcessEnv = process.env): void {
  delete env.LISTEN_FDS;
  delete env.LISTEN_PID;
  delete env.LISTEN_FDNAMES;
}

export type InheritedSocket = { ok: true; protocol: 'mptcp' | 'tcp'; address: string; port: number } | { ok: false; reason: string };

function intOption(fd: number, name: number): number | null {
  const b = Buffer.alloc(4);
  return libc.getsockopt(fd, SOL_SOCKET, name, b, [4]) < 0 ? null : b.readInt32LE(0);
}

/**
 * What a passed descriptor is: only a listening SOCK_STREAM socket of protocol MPTCP or TCP
 * (SO_PROTOCOL) can serve a proxy listener. Anything else gets the reason it cannot.
 */
export function inspectListenFd(fd: number): InheritedSocket {
  const type = intOption(fd, SO_TYPE);
  if (type === null) return { ok: false, reason: 'not a socket' };
  if (type !== SOCK_STREAM) return { ok: false, reason: `socket type ${type}, not SOCK_STREAM` };
  if (intOption(fd, SO_ACCEPTCONN) !== 1) return { ok: false, reason: 'not listening' };
  const proto = intOption(fd, SO_PROTOCOL);
  if (proto !== IPPROTO_MPTCP && proto !== IPPROTO_TCP) return { ok: false, reason: `protocol ${proto}, neither MPTCP nor TCP` };
  let name;
  try {
    name = socketName(fd);
  } catch (e) {
    return { ok: false, reason: (e as Error).message };
  }
  return { ok: true, protocol: proto === IPPROTO_MPTCP ? 'mptcp' : 'tcp', address: name.address, port: name.port };
}

/** Keep an inherited descriptor from leaking into children spawned later. */
export function setCloseOnExec(fd: number): void {
  check('fcntl(F_SETFD)', libc.fcntl(fd, F_SETFD, 'int', FD_CLOEXEC) as number);
}

/** A close-on-exec duplicate (net.Server owns and closes it; the original stays for later use). */
export function dupCloseOnExec(fd: number): number {
  return check('fcntl(F_DUPFD_CLOEXEC)', libc.fcntl(fd, F_DUPFD_CLOEXEC, 'int', 3) as number);
}
