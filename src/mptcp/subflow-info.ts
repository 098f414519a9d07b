/**
 * Pure decoders for the per-subflow arrays of MPTCP_SUBFLOW_ADDRS and MPTCP_TCPINFO
 * (struct mptcp_subflow_data header, then one element per subflow), and their pairing into one
 * record per subflow. The kernel copies min(size_kernel, size_user) bytes of each element into
 * slots of size_user bytes, and reports in num_subflows how many subflows exist, which can be
 * more than fit in the buffer.
 */
import { decodeSockaddr } from '../sys/socket';
import { decodeTcpInfo, type TcpInfo } from './info';
import type { SockEnd } from './netlink-codec';

/** What the raw getters in src/sys/socket return, plus the element size they asked for. */
export interface SubflowArray {
  /** num_subflows as the kernel set it. */
  num: number;
  /** size_kernel: the kernel's own element size. */
  sizeKernel: number;
  /** The bytes after the 16-byte header. */
  data: Buffer;
}

/** Element slices: min(num, slots that fit), each cut to the bytes the kernel filled. */
function elements(a: SubflowArray, sizeUser: number): Buffer[] {
  if (sizeUser <= 0) return [];
  const count = Math.min(a.num, Math.floor(a.data.length / sizeUser));
  const filled = Math.min(sizeUser, a.sizeKernel > 0 ? a.sizeKernel : sizeUser);
  const out: Buffer[] = [];
  for (let i = 0; i < count; i++) out.push(a.data.subarray(i * sizeUser, i * sizeUser + filled));
  return out;
}

export interface SubflowAddrs {
  local: SockEnd | null;
  remote: SockEnd | null;
}

/** struct mptcp_subflow_addrs: two sockaddr_storage (128 bytes each), local then remote. */
const SOCKADDR_STORAGE = 128;

export function decodeSubflowAddrs(a: SubflowArray, sizeUser: number): SubflowAddrs[] {
  const end = (b: Buffer): SockEnd | null => {
    const sa = decodeSockaddr(b);
    return sa ? { address: sa.address, port: sa.port } : null;
  };
  return elements(a, sizeUser).map((e) => ({ local: end(e.subarray(0, SOCKADDR_STORAGE)), remote: end(e.subarray(SOCKADDR_STORAGE, 2 * SOCKADDR_STORAGE)) }));
}

export function decodeSubflowTcpInfos(a: SubflowArray, sizeUser: number): (TcpInfo | null)[] {
  return elements(a, sizeUser).map(decodeTcpInfo);
}

export interface SubflowSample {
  /** Position in the kernel's subflow list (the initial subflow first). */
  index: number;
  local: SockEnd | null;
  remote: SockEnd | null;
  tcp: TcpInfo | null;
}

/**
 * Pair the two arrays by position. Both getsockopts walk the same subflow list, but a subflow
 * can come or go between the two calls: then the counts differ and the result is null, so the
 * caller can read again.
 */
export function pairSubflows(addrs: SubflowArray, addrsSize: number, infos: SubflowArray, infoSize: number): SubflowSample[] | null {
  if (addrs.num !== infos.num) return null;
  const a = decodeSubflowAddrs(addrs, addrsSize);
  const t = decodeSubflowTcpInfos(infos, infoSize);
  const n = Math.min(a.length, t.length);
  const out: SubflowSample[] = [];
  for (let i = 0; i < n; i++) out.push({ index: i, local: a[i]!.local, remote: a[i]!.remote, tcp: t[i]! });
  return out;
}
