/**
 * Pure decoders for the kernel's struct mptcp_info and struct tcp_info (include/uapi/linux/mptcp.h
 * and tcp.h, offsets as Linux 6.18 fills them). Short buffers decode the fields they hold.
 */

/** The fields of struct mptcp_info that say which connection a socket is. */
export interface MptcpIdentity {
  /** Subflows in total, the initial one included (the kernel's `subflows` counts joins only). */
  subflows: number;
  fallback: boolean;
  token: number;
}

export function decodeMptcpIdentity(b: Buffer): MptcpIdentity | null {
  if (b.length < 16) return null;
  const total = b.length > 80 ? b.readUInt8(80) : 0;
  return { subflows: total || b.readUInt8(0) + 1, fallback: (b.readUInt32LE(8) & 1) === 1, token: b.readUInt32LE(12) };
}

export interface TcpInfo {
  state: number;
  /** Retransmission timeouts backed off since the last new ACK (icsk_backoff): > 0 while a timeout is pending. */
  backoff: number;
  /** Segments sent and not yet acknowledged, and ms since the last ACK came in. */
  unacked: number;
  lastAckRecvMs: number;
  /** Smoothed RTT and its variance, microseconds. */
  rttUs: number;
  rttVarUs: number;
  minRttUs: number;
  sndMss: number;
  advMss: number;
  pmtu: number;
  sndCwnd: number;
  totalRetrans: number;
  segsOut: number;
  bytesAcked: bigint;
  bytesReceived: bigint;
  bytesSent: bigint;
  deliveryRate: bigint;
}

export function decodeTcpInfo(b: Buffer): TcpInfo | null {
  if (b.length < 104) return null;
  const u64 = (off: number): bigint => (b.length >= off + 8 ? b.readBigUInt64LE(off) : 0n);
  return {
    state: b.readUInt8(0),
    backoff: b.readUInt8(4),
    unacked: b.readUInt32LE(24),
    lastAckRecvMs: b.readUInt32LE(56),
    sndMss: b.readUInt32LE(16),
    pmtu: b.readUInt32LE(60),
    rttUs: b.readUInt32LE(68),
    rttVarUs: b.readUInt32LE(72),
    sndCwnd: b.readUInt32LE(80),
    advMss: b.readUInt32LE(84),
    totalRetrans: b.readUInt32LE(100),
    bytesAcked: u64(120),
    bytesReceived: u64(128),
    segsOut: b.length >= 140 ? b.readUInt32LE(136) : 0,
    minRttUs: b.length >= 152 ? b.readUInt32LE(148) : 0,
    deliveryRate: u64(160),
    bytesSent: u64(200),
  };
}
