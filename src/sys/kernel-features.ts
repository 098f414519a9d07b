/**
 * What this kernel and system can do, read-only: built-in or modular kernel features
 * (/proc/config.gz, /lib/modules), the process's effective capabilities, installed tools.
 */
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import zlib from 'node:zlib';
import { ExecError, execTool } from './exec';
import { AF_INET, AF_INET6, errno, IPPROTO_MPTCP, libc, SOCK_CLOEXEC, SOCK_STREAM, SysError } from './libc';
import { applySocketOptions } from './socket';

export type FeatureState = 'builtin' | 'module' | 'absent' | 'unknown';

/** CONFIG_* → "y" | "m" | value, from /proc/config.gz; null when the kernel does not expose it. */
export function readKernelConfig(file = '/proc/config.gz'): Map<string, string> | null {
  let text: string;
  try {
    text = zlib.gunzipSync(fs.readFileSync(file)).toString();
  } catch {
    return null;
  }
  return parseKernelConfig(text);
}

export function parseKernelConfig(text: string): Map<string, string> {
  const out = new Map<string, string>();
  for (const line of text.split('\n')) {
    const m = /^(CONFIG_[A-Z0-9_]+)=(.*)$/.exec(line);
    if (m) out.set(m[1]!, m[2]!);
  }
  return out;
}

/** Is a loadable module file for `name` installed for the running kernel (or already loaded)? */
function moduleInstalled(name: string): boolean {
  if (fs.existsSync(path.join('/sys/module', name))) return true;
  const dir = path.join('/lib/modules', os.release());
  try {
    const dep = fs.readFileSync(path.join(dir, 'modules.dep'), 'utf8');
    return new RegExp(`(^|/)${name.replaceAll('_', '[_-]')}\\.ko(\\.[a-z]+)?:`, 'm').test(dep);
  } catch {
    return false;
  }
}

/**
 * State of a kernel feature from its config symbol and module name. With no config to read, a
 * present module says "module"; otherwise we cannot tell ("unknown", not "absent").
 */
export function kernelFeature(config: Map<string, string> | null, symbol: string, module: string): FeatureState {
  const v = config?.get(symbol);
  if (v === 'y') return 'builtin';
  if (v === 'm') return moduleInstalled(module) ? 'module' : 'absent';
  if (config) return 'absent';
  return moduleInstalled(module) ? 'module' : 'unknown';
}

/** Effective capability mask of this process (CapEff in /proc/self/status). */
export function effectiveCapabilities(statusFile = '/proc/self/status'): bigint | null {
  try {
    const m = /^CapEff:\s*([0-9a-f]+)$/im.exec(fs.readFileSync(statusFile, 'utf8'));
    return m ? BigInt(`0x${m[1]}`) : null;
  } catch {
    return null;
  }
}

/** True when `argv` runs and exits 0 (e.g. ['nft', '--version']); false when not installed or failing. */
export async function toolWorks(argv: readonly string[]): Promise<boolean> {
  try {
    await execTool(argv, { timeoutMs: 5000 });
    return true;
  } catch (e) {
    if (e instanceof ExecError) return false;
    throw e;
  }
}

/**
 * Can this process open an MPTCP socket (in its network namespace)? The sysctl can say 1 while
 * a seccomp filter or an LSM still refuses IPPROTO_MPTCP; only trying tells.
 */
export type ProbeResult = { ok: true } | { ok: false; error: string };

const probeError = (e: unknown): ProbeResult => ({ ok: false, error: e instanceof SysError ? `${e.code}: ${e.message}` : (e as Error).message });

export function mptcpSocketProbe(): ProbeResult {
  const fd = libc.socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, IPPROTO_MPTCP) as number;
  if (fd < 0) {
    return probeError(new SysError('socket(AF_INET, SOCK_STREAM, IPPROTO_MPTCP)', errno()));
  }
  libc.close(fd);
  return { ok: true };
}

/**
 * May this process set IP_TRANSPARENT (IPV6_TRANSPARENT) on a socket of `family`, as transparent
 * listeners do? The kernel wants CAP_NET_ADMIN or CAP_NET_RAW in the socket's namespace.
 */
export function transparentSocketProbe(family: 4 | 6): ProbeResult {
  const fd = libc.socket(family === 6 ? AF_INET6 : AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0) as number;
  if (fd < 0) return probeError(new SysError(`socket(${family === 6 ? 'AF_INET6' : 'AF_INET'}, SOCK_STREAM)`, errno()));
  try {
    applySocketOptions(fd, family, { transparent: true });
    return { ok: true };
  } catch (e) {
    return probeError(e);
  } finally {
    libc.close(fd);
  }
}
