/**
 * Kernel tunables under /proc/sys. Keys use sysctl(8) spelling ("net.mptcp.enabled"); a "/"
 * inside a key stands for a "." in one component (VLAN interface "eth0.100" is "eth0/100"),
 * as sysctl(8) does. /proc/sys/net is per network namespace: it shows the caller's namespace.
 */
import fs from 'node:fs';
import path from 'node:path';

const PROC_SYS = '/proc/sys';

/** 0 sets the C flag ("do not join my initial address") on every MP_CAPABLE SYN/ACK of the namespace. */
export const C_FLAG_SYSCTL = 'net.mptcp.allow_join_initial_addr_port';
/** The namespace's MPTCP path manager: 0 the in-kernel one, 1 a userspace one (6.15+ also names it in net.mptcp.path_manager). */
export const PM_TYPE_SYSCTL = 'net.mptcp.pm_type';

export const SysctlErrorCode = {
  /** The key does not exist on this kernel (feature not built, interface gone). */
  NotFound: 'MPX_SYSCTL_NOT_FOUND',
  /** Not allowed (no CAP_NET_ADMIN/root, or /proc/sys read-only as under ProtectKernelTunables). */
  Denied: 'MPX_SYSCTL_DENIED',
  /** The kernel refused the value (EINVAL). */
  Invalid: 'MPX_SYSCTL_INVALID',
  Failed: 'MPX_SYSCTL_FAILED',
} as const;
export type SysctlErrorCode = (typeof SysctlErrorCode)[keyof typeof SysctlErrorCode];

export class SysctlError extends Error {
  constructor(
    readonly code: SysctlErrorCode,
    readonly key: string,
    detail: string,
  ) {
    super(`sysctl ${key}: ${detail}`);
    this.name = 'SysctlError';
  }
}

/** "net.ipv4.conf.eth0/100.rp_filter" → "/proc/sys/net/ipv4/conf/eth0.100/rp_filter". */
export function sysctlPath(key: string): string {
  const parts = key.split('.').map((p) => p.replaceAll('/', '.'));
  if (parts.some((p) => p === '' || p === '..' || p === '.')) throw new SysctlError(SysctlErrorCode.NotFound, key, 'malformed key');
  return path.join(PROC_SYS, ...parts);
}

/** The interface name as one sysctl key component (its dots become slashes). */
export function sysctlIfName(ifname: string): string {
  return ifname.replaceAll('.', '/');
}

function toSysctlError(key: string, e: unknown): SysctlError {
  const code = (e as NodeJS.ErrnoException).code;
  const map: Record<string, SysctlErrorCode> = { ENOENT: SysctlErrorCode.NotFound, EACCES: SysctlErrorCode.Denied, EPERM: SysctlErrorCode.Denied, EROFS: SysctlErrorCode.Denied, EINVAL: SysctlErrorCode.Invalid };
  return new SysctlError(map[code ?? ''] ?? SysctlErrorCode.Failed, key, (e as Error).message);
}

/** The value with whitespace runs collapsed ("4096\t131072\t6291456" → "4096 131072 6291456"); null when the key does not exist. */
export function readSysctl(key: string): string | null {
  try {
    return fs.readFileSync(sysctlPath(key), 'utf8').trim().replace(/\s+/g, ' ');
  } catch (e) {
    const err = toSysctlError(key, e);
    if (err.code === SysctlErrorCode.NotFound) return null;
    throw err;
  }
}

/** Write one value; throws SysctlError (typed by errno). */
export function writeSysctl(key: string, value: string): void {
  try {
    fs.writeFileSync(sysctlPath(key), value);
  } catch (e) {
    throw toSysctlError(key, e);
  }
}

