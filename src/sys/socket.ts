/**
 * MPTCP and TCP sockets made through libc: listeners created with IPPROTO_MPTCP, outgoing MPTCP
 * connects, socket options as one typed struct, and the read-only MPTCP getsockopts. This is the
 * only module that creates sockets outside Node's own net module.
 */
import net from 'node:net';
import { ipv6ToBytes } from '../core/address';
import {
  AF_INET,
  AF_INET6,
  EINPROGRESS,
  EOPNOTSUPP,
  MSG_FASTOPEN,
  IPPROTO_IP,
  IPPROTO_IPV6,
  IPPROTO_MPTCP,
  IPPROTO_TCP,
  IPV6_TCLASS,
  IPV6_TRANSPARENT,
  IPV6_V6ONLY,
  IP_TOS,
  IP_TRANSPARENT,
  MPTCP_INFO,
  MPTCP_SUBFLOW_ADDRS,
  MPTCP_TCPINFO,
  POLLOUT,
  SOCK_CLOEXEC,
  SOCK_DGRAM,
  SOCK_NONBLOCK,
  SOCK_STREAM,
  SOL_MPTCP,
  SOL_SOCKET,
  SOL_TCP,
  SO_ERROR,
  SO_KEEPALIVE,
  SO_MARK,
  SO_NETNS_COOKIE,
  SO_PRIORITY,
  SO_RCVBUF,
  SO_REUSEADDR,
  SO_REUSEPORT,
  SO_SNDBUF,
  SO_RCVBUFFORCE,
  SO_SNDBUFFORCE,
  SysError,
  TCP_CONGESTION,
  TCP_FASTOPEN,
  TCP_FASTOPEN_NO_COOKIE,
  TCP_INFO,
  TCP_IS_MPTCP,
  TCP_KEEPCNT,
  TCP_KEEPIDLE,
  TCP_KEEPINTVL,
  TCP_MAXSEG,
  TCP_NODELAY,
  TCP_NOTSENT_LOWAT,
  check,
  errno,
  libc,
} from './libc';

/** Every socket option the proxy sets, in one place. Unset fields are left alone. */
export interface SocketOptions {
  reuseAddr?: boolean;
  reusePort?: boolean;
  /** IPv6 sockets only: refuse IPv4-mapped traffic. */
  v6Only?: boolean;
  noDelay?: boolean;
  keepAlive?: { idleSec: number; intervalSec: number; count: number };
  mark?: number;
  /** Not inherited from an MPTCP listener: set it on the accepted socket (measured on Linux 6.18). */
  priority?: number;
  tos?: number;
  congestion?: string;
  /** Listener only: TFO queue length. */
  fastOpen?: number;
  /**
   * Listener only: take data in a SYN that carries no TFO cookie. Without it a Linux MPTCP
   * client sending data in its SYN (MSG_FASTOPEN, no cookie yet) falls back to plain TCP
   * (measured on Linux 6.18); RFC 8803 App. A.2 asks converters for it.
   */
  fastOpenNoCookie?: boolean;
  /**
   * IP_TRANSPARENT (IPV6_TRANSPARENT on IPv6): a listener TPROXY may hand foreign-addressed
   * connections to; needs CAP_NET_ADMIN. Measured: MPTCP listeners take it, the accepted socket
   * inherits it, joins work; on an accepted MPTCP socket the kernel answers EINVAL.
   */
  transparent?: boolean;
  /** Fixing these stops kernel autotuning (measured on Linux 6.18): only the tuning module sets them. */
  rcvBuf?: number;
  sndBuf?: number;
  /** Effective only before connect/listen on MPTCP. */
  maxSeg?: number;
  notSentLowat?: number;
}

function setInt(fd: number, level: number, name: number, value: number, what: string): void {
  const b = Buffer.alloc(4);
  b.writeInt32LE(value);
  check(`setsockopt(${what})`, libc.setsockopt(fd, level, name, b, 4));
}

export function applySocketOptions(fd: number, family: 4 | 6, o: SocketOptions): void {
  if (o.reuseAddr !== undefined) setInt(fd, SOL_SOCKET, SO_REUSEADDR, +o.reuseAddr, 'SO_REUSEADDR');
  if (o.reusePort !== undefined) setInt(fd, SOL_SOCKET, SO_REUSEPORT, +o.reusePort, 'SO_REUSEPORT');
  if (o.v6Only !== undefined && family === 6) setInt(fd, IPPROTO_IPV6, IPV6_V6ONLY, +o.v6Only, 'IPV6_V6ONLY');
  if (o.noDelay !== undefined) setInt(fd, SOL_TCP, TCP_NODELAY, +o.noDelay, 'TCP_NODELAY');
  if (o.keepAlive) {
    setInt(fd, SOL_SOCKET, SO_KEEPALIVE, 1, 'SO_KEEPALIVE');
    setInt(fd, SOL_TCP, TCP_KEEPIDLE, o.keepAlive.idleSec, 'TCP_KEEPIDLE');
    setInt(fd, SOL_TCP, TCP_KEEPINTVL, o.keepAlive.intervalSec, 'TCP_KEEPINTVL');
    setInt(fd, SOL_TCP, TCP_KEEPCNT, o.keepAlive.count, 'TCP_KEEPCNT');
  }
  if (o.mark !== undefined) setInt(fd, SOL_SOCKET, SO_MARK, o.mark, 'SO_MARK');
  if (o.priority !== undefined) setInt(fd, SOL_SOCKET, SO_PRIORITY, o.priority, 'SO_PRIORITY');
  if (o.tos !== undefined) setInt(fd, family === 6 ? IPPROTO_IPV6 : IPPROTO_IP, family === 6 ? IPV6_TCLASS : IP_TOS, o.tos, 'IP_TOS');
  if (o.congestion !== undefined) {
    const b = Buffer.from(o.congestion);
    check('setsockopt(TCP_CONGESTION)', libc.setsockopt(fd, SOL_TCP, TCP_CONGESTION, b, b.length));
  }
  if (o.fastOpen !== undefined) setInt(fd, SOL_TCP, TCP_FASTOPEN, o.fastOpen, 'TCP_FASTOPEN');
  if (o.fastOpenNoCookie !== undefined) setInt(fd, SOL_TCP, TCP_FASTOPEN_NO_COOKIE, +o.fastOpenNoCookie, 'TCP_FASTOPEN_NO_COOKIE');
  if (o.transparent !== undefined) {
    if (family === 6) setInt(fd, IPPROTO_IPV6, IPV6_TRANSPARENT, +o.transparent, 'IPV6_TRANSPARENT');
    else setInt(fd, IPPROTO_IP, IP_TRANSPARENT, +o.transparent, 'IP_TRANSPARENT');
  }
  if (o.rcvBuf !== undefined) setInt(fd, SOL_SOCKET, SO_RCVBUF, o.rcvBuf, 'SO_RCVBUF');
  if (o.sndBuf !== undefined) setInt(fd, SOL_SOCKET, SO_SNDBUF, o.sndBuf, 'SO_SNDBUF');
  if (o.maxSeg !== undefined) setInt(fd, SOL_TCP, TCP_MAXSEG, o.maxSeg, 'TCP_MAXSEG');
  if (o.notSentLowat !== undefined) setInt(fd, SOL_TCP, TCP_NOTSENT_LOWAT, o.notSentLowat, 'TCP_NOTSENT_LOWAT');
}

/** struct sockaddr_in / sockaddr_in6 for a numeric address. */
export function encodeSockaddr(address: string, port: number): Buffer {
  if (net.isIPv4(address)) {
    const b = Buffer.alloc(16);
    b.writeUInt16LE(AF_INET, 0);
    b.writeUInt16BE(port, 2);
    address.split('.').forEach((o, i) => b.writeUInt8(Number(o), 4 + i));
    return b;
  }
  if (net.isIPv6(address)) {
    const b = Buffer.alloc(28);
    b.writeUInt16LE(AF_INET6, 0);
    b.writeUInt16BE(port, 2);
    ipv6ToBytes(address).copy(b, 8);
    return b;
  }
  throw new Error(`not a numeric address: ${address}`);
}

/** Decode a sockaddr_in/in6 (or sockaddr_storage holding one). */
export function decodeSockaddr(b: Buffer): { address: string; port: number; family: 4 | 6 } | null {
  if (b.length < 2) return null;
  const family = b.readUInt16LE(0);
  if (family === AF_INET && b.length >= 8) return { family: 4, port: b.readUInt16BE(2), address: `${b[4]}.${b[5]}.${b[6]}.${b[7]}` };
  if (family === AF_INET6 && b.length >= 24) {
    const groups: string[] = [];
    for (let i = 0; i < 8; i++) groups.push(b.readUInt16BE(8 + 2 * i).toString(16));
    return { family: 6, port: b.readUInt16BE(2), address: new net.SocketAddress({ address: groups.join(':'), family: 'ipv6' }).address };
  }
  return null;
}

export interface ListenSocket {
  fd: number;
  /** False when the kernel refused IPPROTO_MPTCP and a TCP socket was made instead. */
  mptcp: boolean;
  /** Why MPTCP was not used, for the one warning. */
  fallbackReason?: string;
}

const MPTCP_REFUSED = new Set(['EPROTONOSUPPORT', 'ENOPROTOOPT', 'EINVAL', 'EAFNOSUPPORT']);

function openSocket(family: 4 | 6, wantMptcp: boolean): { fd: number; mptcp: boolean; fallbackReason?: string } {
  const domain = family === 6 ? AF_INET6 : AF_INET;
  const type = SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC;
  if (wantMptcp) {
    const fd = libc.socket(domain, type, IPPROTO_MPTCP) as number;
    if (fd >= 0) return { fd, mptcp: true };
    const err = new SysError('socket(IPPROTO_MPTCP)', errno());
    if (!MPTCP_REFUSED.has(err.code)) throw err;
    return { fd: check('socket', libc.socket(domain, type, IPPROTO_TCP)), mptcp: false, fallbackReason: err.message };
  }
  return { fd: check('socket', libc.socket(domain, type, IPPROTO_TCP)), mptcp: false };
}

/**
 * A bound, listening, non-blocking socket ready for `net.Server.listen({ fd })`.
 * `address` must be numeric.
 */
export function createListenSocket(address: string, port: number, opts: { mptcp: boolean; backlog: number; options: SocketOptions }): ListenSocket {
  const family = net.isIPv6(address) ? 6 : 4;
  const s = openSocket(family, opts.mptcp);
  try {
    applySocketOptions(s.fd, family, { reuseAddr: true, ...(family === 6 ? { v6Only: true } : {}), ...opts.options });
    const sa = encodeSockaddr(address, port);
    check(`bind ${address}:${port}`, libc.bind(s.fd, sa, sa.length));
    check('listen', libc.listen(s.fd, opts.backlog));
    return s;
  } catch (e) {
    libc.close(s.fd);
    throw e;
  }
}

/** Local address of a socket fd (for port-0 listeners). */
export function socketName(fd: number): { address: string; port: number; family: 4 | 6 } {
  const b = Buffer.alloc(128);
  const len = [128];
  check('getsockname', libc.getsockname(fd, b, len));
  const sa = decodeSockaddr(b.subarray(0, len[0]));
  if (!sa) throw new Error('getsockname: unknown address family');
  return sa;
}

function pollWritable(fd: number, timeoutMs: number): Promise<number> {
  const pfd = Buffer.alloc(8);
  pfd.writeInt32LE(fd, 0);
  pfd.writeInt16LE(POLLOUT, 4);
  return new Promise((resolve, reject) => {
    libc.poll.async(pfd, 1, timeoutMs, (err: unknown, rc: number) => (err ? reject(err) : resolve(rc)));
  });
}

function soError(fd: number): number {
  const b = Buffer.alloc(4);
  check('getsockopt(SO_ERROR)', libc.getsockopt(fd, SOL_SOCKET, SO_ERROR, b, [4]));
  return b.readInt32LE(0);
}

export class ConnectTimeoutError extends Error {
  code = 'ETIMEDOUT';
}

/**
 * Connect an MPTCP socket (or TCP when the kernel refuses MPTCP) and return the connected fd.
 * The wait runs on koffi's worker thread (poll), so the event loop never blocks.
 */
export async function connectMptcp(address: string, port: number, timeoutMs: number, options: SocketOptions = {}): Promise<{ fd: number; mptcp: boolean }> {
  const { fd, mptcp } = await connectSocket(address, port, timeoutMs, { mptcp: true, options });
  return { fd, mptcp };
}

/**
 * Connect (MPTCP first when `mptcp`, else TCP) with `synData` in the SYN where the kernel allows
 * it: sendto(MSG_FASTOPEN) puts as much as fits in the SYN when net.ipv4.tcp_fastopen has the
 * client bit (0x1) and a cookie for the destination is cached (or the no-cookie bit 0x4 is set);
 * without a cookie the SYN asks for one and carries nothing. `sentInSyn` counts the bytes that
 * went; the caller sends the rest once connected. A destination that ignores the SYN's data gets
 * it again from the kernel after the handshake.
 */
export async function connectSocket(
  address: string,
  port: number,
  timeoutMs: number,
  o: { mptcp: boolean; options?: SocketOptions; synData?: Buffer },
): Promise<{ fd: number; mptcp: boolean; sentInSyn: number }> {
  const family = net.isIPv6(address) ? 6 : 4;
  const s = openSocket(family, o.mptcp);
  try {
    applySocketOptions(s.fd, family, o.options ?? {});
    const sa = encodeSockaddr(address, port);
    let sentInSyn = 0;
    let rc: number;
    let e = 0;
    if (o.synData && o.synData.length > 0) {
      rc = Number(libc.sendto(s.fd, o.synData, o.synData.length, MSG_FASTOPEN, sa, sa.length));
      if (rc >= 0) sentInSyn = rc;
      else e = errno();
      // TFO off on the client side (net.ipv4.tcp_fastopen without 0x1): a plain connect.
      if (rc < 0 && e === EOPNOTSUPP) rc = libc.connect(s.fd, sa, sa.length) as number;
    } else rc = libc.connect(s.fd, sa, sa.length) as number;
    if (rc < 0) {
      e = errno();
      if (e !== EINPROGRESS) throw new SysError('connect', e);
    }
    // Non-blocking: the SYN is out (with or without data); connected once writable.
    const ready = await pollWritable(s.fd, timeoutMs);
    if (ready === 0) throw new ConnectTimeoutError(`connect ${address}:${port} timed out`);
    const err = soError(s.fd);
    if (err !== 0) throw new SysError('connect', err);
    return { fd: s.fd, mptcp: s.mptcp, sentInSyn };
  } catch (err) {
    libc.close(s.fd);
    throw err;
  }
}

export function closeFd(fd: number): void {
  libc.close(fd);
}

/** Whether a connectMptcp failure was the peer's refusal (an RST: the path itself works). */
export function isConnectionRefused(e: unknown): boolean {
  return e instanceof SysError && e.code === 'ECONNREFUSED';
}

// The getters below run for every connection: buffers come from Node's pool (allocUnsafe), and
// only bytes the kernel wrote are returned (cut to the length it reported).
function getRaw(fd: number, level: number, name: number, size: number): Buffer | null {
  const b = Buffer.allocUnsafe(size);
  const len = [size];
  if (libc.getsockopt(fd, level, name, b, len) < 0) return null;
  return b.subarray(0, len[0]);
}

/** TCP_IS_MPTCP: did this connection negotiate MPTCP? Null when unknown (not a TCP socket). */
export function isMptcp(fd: number): boolean | null {
  const b = getRaw(fd, SOL_TCP, TCP_IS_MPTCP, 4);
  return b && b.length >= 4 ? b.readInt32LE(0) === 1 : null;
}

/** Raw struct mptcp_info (decode with src/mptcp/info). Null on plain TCP or fallback sockets. */
export function mptcpInfoRaw(fd: number): Buffer | null {
  return getRaw(fd, SOL_MPTCP, MPTCP_INFO, 256);
}

/** Raw struct tcp_info of a TCP socket (of the first subflow on an MPTCP socket). */
export function tcpInfoRaw(fd: number): Buffer | null {
  return getRaw(fd, SOL_TCP, TCP_INFO, 512);
}

/**
 * MPTCP_TCPINFO / MPTCP_SUBFLOW_ADDRS: struct mptcp_subflow_data header (16 bytes) followed by
 * an inline array. Returns the header's counts and the array bytes.
 */
function subflowArray(fd: number, name: number, elemSize: number, maxSubflows: number): { num: number; sizeKernel: number; data: Buffer } | null {
  const b = Buffer.allocUnsafe(16 + elemSize * maxSubflows);
  // struct mptcp_subflow_data: size_subflow_data, num_subflows, size_kernel (both set by the
  // kernel, which wants them zero), size_user.
  b.writeUInt32LE(16, 0);
  b.writeUInt32LE(0, 4);
  b.writeUInt32LE(0, 8);
  b.writeUInt32LE(elemSize, 12);
  const len = [b.length];
  if (libc.getsockopt(fd, SOL_MPTCP, name, b, len) < 0) return null;
  return { num: b.readUInt32LE(4), sizeKernel: b.readUInt32LE(8), data: b.subarray(16, len[0]) };
}

export const TCP_INFO_SIZE = 280;
export const SUBFLOW_ADDRS_SIZE = 256;

export function mptcpSubflowTcpInfoRaw(fd: number, maxSubflows = 8): { num: number; sizeKernel: number; data: Buffer } | null {
  return subflowArray(fd, MPTCP_TCPINFO, TCP_INFO_SIZE, maxSubflows);
}

export function mptcpSubflowAddrsRaw(fd: number, maxSubflows = 8): { num: number; sizeKernel: number; data: Buffer } | null {
  return subflowArray(fd, MPTCP_SUBFLOW_ADDRS, SUBFLOW_ADDRS_SIZE, maxSubflows);
}

/** The OS fd behind a Node socket (libuv handle); -1 when not available. */
export function socketFd(socket: net.Socket): number {
  const fd = (socket as unknown as { _handle?: { fd?: number } })._handle?.fd;
  return typeof fd === 'number' ? fd : -1;
}

export type BufferDirection = 'rcv' | 'snd';

/** SO_RCVBUF / SO_SNDBUF as the kernel reports them (sk_rcvbuf / sk_sndbuf, overhead included). */
export function socketBufferSize(fd: number, dir: BufferDirection): number | null {
  const b = getRaw(fd, SOL_SOCKET, dir === 'rcv' ? SO_RCVBUF : SO_SNDBUF, 4);
  return b && b.length >= 4 ? b.readInt32LE(0) : null;
}

/**
 * Lock one buffer of a socket at `bytes` as the kernel counts it (the value getsockopt and
 * tcp_rmem/tcp_wmem use: the kernel doubles what setsockopt gets, for its bookkeeping). Tries the
 * FORCE variant first so net.core.[rw]mem_max does not cap it, then the plain option (EPERM
 * without CAP_NET_ADMIN). This stops the kernel's autotuning of that buffer (measured on Linux 6.18).
 * Returns the size the kernel applied.
 */
export function setSocketBufferSize(fd: number, dir: BufferDirection, bytes: number): number {
  const half = Math.max(1, Math.ceil(bytes / 2));
  const b = Buffer.alloc(4);
  b.writeInt32LE(Math.min(half, 0x7fffffff));
  const [force, plain] = dir === 'rcv' ? [SO_RCVBUFFORCE, SO_RCVBUF] : [SO_SNDBUFFORCE, SO_SNDBUF];
  if (libc.setsockopt(fd, SOL_SOCKET, force, b, 4) < 0) check(`setsockopt(${dir === 'rcv' ? 'SO_RCVBUF' : 'SO_SNDBUF'})`, libc.setsockopt(fd, SOL_SOCKET, plain, b, 4));
  return socketBufferSize(fd, dir) ?? bytes;
}

/**
 * This process's network namespace as a cookie (decimal text): unlike the namespace inode, it is
 * never given to another namespace during the boot. Null when the kernel has no SO_NETNS_COOKIE.
 */
export function netnsCookie(): string | null {
  const fd = libc.socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0) as number;
  if (fd < 0) return null;
  try {
    const b = getRaw(fd, SOL_SOCKET, SO_NETNS_COOKIE, 8);
    return b && b.length === 8 ? b.readBigUInt64LE(0).toString() : null;
  } finally {
    libc.close(fd);
  }
}
