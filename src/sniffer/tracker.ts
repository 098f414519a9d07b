/**
 * The sniffer's state machine: fed TCP segments (already located by the frame walker), it follows
 * MPTCP connections and their subflows and emits typed events. No I/O: tests feed it packets.
 *
 * Per-packet work on an established subflow is one map lookup keyed by a short string and a few
 * integer updates; options are decoded into objects only for the rare signalling ones. Bytes are
 * counted from sequence numbers, so the count stays right when the capture filter or the kernel
 * drops packets, and retransmissions are not counted twice.
 */
import {
  TCPOPT_MPTCP,
  MptcpSubtype,
  decodeMptcpOption,
  mptcpToken,
  walkTcpOptions,
  type MptcpOption,
} from '../mptcp/options';
import { tokenHex } from '../core/subflow-id';
import { TcpFlag, formatAddrPort, formatIp, type TcpPacket } from '../mptcp/packet';
import type { CloseReason, SniffEvent } from './events';

type SubflowState = 'syn' | 'synack' | 'ack' | 'established';

interface Subflow {
  key: string;
  kind: 'initial' | 'join';
  state: SubflowState;
  /** Whether the SYN's sender is the lower endpoint of the canonical key. */
  initiatorLow: boolean;
  src: string;
  dst: string;
  iface: string;
  conn: Conn | null;
  /** MP_JOIN SYN: the token it named. */
  joinToken: number;
  backup: boolean;
  addressId: number | undefined;
  /** Per direction (0 = src→dst, 1 = dst→src): next expected sequence number, -1 until known. */
  next: [number, number];
  bytes: [number, number];
  fin: [boolean, boolean];
  /** Sequence number a FIN was sent at, per direction, -1 before one. */
  finAt: [number, number];
  lastSeen: number;
}

interface Conn {
  /** Token of the side that received the MP_CAPABLE SYN (or, seen only from a join, the token it named). */
  serverToken: number;
  clientToken: number | null;
  /** Established subflows not yet closed. */
  live: Set<Subflow>;
  established: number;
  /** Subflows in any state that point here; at 0 with none live, the connection is forgotten. */
  refs: number;
}

export interface TrackerOptions {
  /** A handshake not finished after this long is forgotten. */
  handshakeTimeoutMs?: number;
  /** An established subflow with no packet for this long is reported closed ('idle'). */
  idleTimeoutMs?: number;
}

export interface SniffedSubflow {
  connection: string | null;
  kind: 'initial' | 'join';
  state: SubflowState;
  src: string;
  dst: string;
  interface: string;
  bytesSent: number;
  bytesReceived: number;
}

/** Most options one TCP header can hold (40 option bytes, 3 bytes minimum each). */
const MAX_OPTS = 14;

export class MptcpTracker {
  private readonly subflows = new Map<string, Subflow>();
  private readonly conns = new Map<number, Conn>();
  private readonly handshakeTimeoutMs: number;
  private readonly idleTimeoutMs: number;
  // Per-packet scratch, reused: offsets/lengths of the MPTCP options of the current segment.
  private readonly optOff = new Int32Array(MAX_OPTS);
  private readonly optLen = new Int32Array(MAX_OPTS);
  private optCount = 0;
  private curBuf: Buffer = Buffer.alloc(0);
  private readonly visit = (kind: number, off: number, len: number): void => {
    if (kind === TCPOPT_MPTCP && this.optCount < MAX_OPTS) {
      this.optOff[this.optCount] = off;
      this.optLen[this.optCount] = len;
      this.optCount++;
    }
  };
  private srcIsLow = false;

  /** Malformed option lists seen (counted, not reported per packet). */
  malformed = 0;

  constructor(
    private readonly emit: (e: SniffEvent) => void,
    opts: TrackerOptions = {},
  ) {
    this.handshakeTimeoutMs = opts.handshakeTimeoutMs ?? 30_000;
    this.idleTimeoutMs = opts.idleTimeoutMs ?? 2 * 3600_000;
  }

  /** Feed one TCP segment captured on `iface` at `time` (ms since the epoch). */
  process(pkt: TcpPacket, iface: string, time: number): void {
    this.optCount = 0;
    this.curBuf = pkt.buf;
    if (walkTcpOptions(pkt.buf, pkt.optStart, pkt.optEnd, this.visit)) this.malformed++;
    const key = this.flowKey(pkt);
    const flags = pkt.flags;
    const sf = this.subflows.get(key);

    if (flags & TcpFlag.SYN && !(flags & TcpFlag.ACK)) {
      if (sf && sf.state !== 'syn') this.drop(sf, 'rst', time, undefined); // port reuse: the old one is gone
      else if (sf) return; // SYN retransmission
      this.onSyn(pkt, key, iface, time);
      return;
    }
    if (!sf) return; // not a subflow we saw start (plain TCP, or begun before the capture)
    sf.lastSeen = time;
    const dir = this.srcIsLow === sf.initiatorLow ? 0 : 1;
    this.account(sf, dir, pkt);

    if (flags & TcpFlag.SYN) {
      this.onSynAck(sf);
      return;
    }
    if (sf.state !== 'established' && !this.advanceHandshake(sf, dir, pkt, time)) return;
    if (this.optCount > 0 && this.signalling(sf, dir, time)) return; // a fast close ended it
    if (flags & TcpFlag.RST) {
      this.drop(sf, 'rst', time, this.resetReason());
    } else if (flags & TcpFlag.FIN) {
      sf.fin[dir] = true;
      if (sf.fin[0] && sf.fin[1]) this.drop(sf, 'fin', time, undefined);
    }
  }

  /** Forget stale handshakes and report idle subflows closed. Call now and then. */
  expire(now: number): void {
    for (const sf of this.subflows.values()) {
      if (sf.state !== 'established') {
        if (now - sf.lastSeen > this.handshakeTimeoutMs) this.drop(sf, 'idle', now, undefined);
      } else if (now - sf.lastSeen > this.idleTimeoutMs) this.drop(sf, 'idle', now, undefined);
    }
  }

  /** Current subflows with their byte counts (for metrics and status). */
  snapshot(): SniffedSubflow[] {
    return [...this.subflows.values()].map((sf) => ({
      connection: sf.conn ? tokenHex(sf.conn.serverToken) : null,
      kind: sf.kind,
      state: sf.state,
      src: sf.src,
      dst: sf.dst,
      interface: sf.iface,
      bytesSent: sf.bytes[0],
      bytesReceived: sf.bytes[1],
    }));
  }

  get size(): { subflows: number; connections: number } {
    return { subflows: this.subflows.size, connections: new Set(this.conns.values()).size };
  }

  /**
   * Direction-independent key (lower endpoint first, addresses as 16-bit char codes); sets
   * srcIsLow to say which end sent this packet. Plain JS reads: no call into Buffer's C++ side.
   */
  private flowKey(pkt: TcpPacket): string {
    const b = pkt.buf;
    const n = pkt.addrLen;
    const s = pkt.srcOff;
    const d = pkt.dstOff;
    let c = 0;
    for (let i = 0; i < n && c === 0; i++) c = b[s + i]! - b[d + i]!;
    if (c === 0) c = pkt.srcPort - pkt.dstPort;
    this.srcIsLow = c < 0;
    const lo = this.srcIsLow ? s : d;
    const hi = this.srcIsLow ? d : s;
    const loPort = this.srcIsLow ? pkt.srcPort : pkt.dstPort;
    const hiPort = this.srcIsLow ? pkt.dstPort : pkt.srcPort;
    const w = (o: number): number => (b[o]! << 8) | b[o + 1]!;
    if (n === 4) return String.fromCharCode(w(lo), w(lo + 2), loPort, hiPort, w(hi), w(hi + 2));
    // One call for all 18 units: concatenating pieces would make a rope the Map has to flatten.
    return String.fromCharCode(
      w(lo), w(lo + 2), w(lo + 4), w(lo + 6), w(lo + 8), w(lo + 10), w(lo + 12), w(lo + 14), loPort,
      hiPort, w(hi), w(hi + 2), w(hi + 4), w(hi + 6), w(hi + 8), w(hi + 10), w(hi + 12), w(hi + 14),
    );
  }

  private option(i: number): MptcpOption | null {
    const r = decodeMptcpOption(this.curBuf, this.optOff[i]!, this.optLen[i]!);
    if (r.kind === 'malformed') {
      this.malformed++;
      return null;
    }
    return r;
  }

  /** The first MPTCP option of a subtype in the current segment, decoded. */
  private find(subtype: number): MptcpOption | null {
    for (let i = 0; i < this.optCount; i++) {
      if (this.curBuf[this.optOff[i]! + 2]! >> 4 === subtype) return this.option(i);
    }
    return null;
  }

  private resetReason(): number | undefined {
    const o = this.find(MptcpSubtype.MpTcpRst);
    return o?.kind === 'mp_tcprst' ? o.reason : undefined;
  }

  private onSyn(pkt: TcpPacket, key: string, iface: string, time: number): void {
    const cap = this.find(MptcpSubtype.MpCapable);
    const join = cap ? null : this.find(MptcpSubtype.MpJoin);
    if (!cap && !(join?.kind === 'mp_join' && join.phase === 'syn')) return;
    const sf: Subflow = {
      key,
      kind: cap ? 'initial' : 'join',
      state: 'syn',
      initiatorLow: this.srcIsLow,
      src: formatAddrPort(formatIp(pkt.buf, pkt.srcOff, pkt.addrLen), pkt.srcPort),
      dst: formatAddrPort(formatIp(pkt.buf, pkt.dstOff, pkt.addrLen), pkt.dstPort),
      iface,
      conn: null,
      joinToken: join?.kind === 'mp_join' ? join.token! : 0,
      backup: join?.kind === 'mp_join' ? join.backup : false,
      addressId: join?.kind === 'mp_join' ? join.addressId : undefined,
      next: [(pkt.seq + 1) >>> 0, -1],
      bytes: [0, 0],
      fin: [false, false],
      finAt: [-1, -1],
      lastSeen: time,
    };
    this.subflows.set(key, sf);
    this.account(sf, 0, pkt);
  }

  private onSynAck(sf: Subflow): void {
    if (sf.state !== 'syn') return; // retransmitted SYN/ACK
    if (sf.kind === 'initial') {
      const cap = this.find(MptcpSubtype.MpCapable);
      if (cap?.kind !== 'mp_capable') return this.forget(sf); // answered as plain TCP
      if (cap.senderKey !== undefined) {
        const token = mptcpToken(cap.senderKey);
        this.attach(sf, this.conns.get(token) ?? this.newConn(token));
      }
    } else {
      const join = this.find(MptcpSubtype.MpJoin);
      if (join?.kind !== 'mp_join') return this.forget(sf);
      // A token we never saw the handshake for still names one connection: keep it.
      this.attach(sf, this.conns.get(sf.joinToken) ?? this.newConn(sf.joinToken));
    }
    sf.state = 'synack';
  }

  /** Returns true once the subflow is established (this packet then goes on to signalling). */
  private advanceHandshake(sf: Subflow, dir: 0 | 1, pkt: TcpPacket, time: number): boolean {
    if (pkt.flags & TcpFlag.RST) {
      if (sf.kind === 'join' && sf.conn) this.joinFailed(sf, time, this.resetReason());
      this.forget(sf);
      return false;
    }
    if (sf.state === 'syn') return false; // an ACK before any SYN/ACK: not ours to judge
    if (sf.kind === 'initial') {
      const cap = this.find(MptcpSubtype.MpCapable);
      if (cap?.kind === 'mp_capable' && dir === 0 && cap.senderKey !== undefined && cap.receiverKey !== undefined) {
        this.learnClientKey(sf, cap.senderKey, cap.receiverKey);
      } else if (!cap && !this.has(MptcpSubtype.Dss)) {
        // Third ACK without MPTCP options: the client fell back to plain TCP.
        if (dir === 0 && sf.state === 'synack') this.forget(sf);
        return false;
      }
      this.establish(sf, time);
      return true;
    }
    // Join: the initiator's HMAC ACK, then the responder's fourth ACK (or anything else from it).
    if (dir === 0) {
      const join = this.find(MptcpSubtype.MpJoin);
      if (join?.kind === 'mp_join' && join.phase === 'ack') sf.state = 'ack';
      return false;
    }
    this.establish(sf, time);
    return true;
  }

  private has(subtype: number): boolean {
    for (let i = 0; i < this.optCount; i++) if (this.curBuf[this.optOff[i]! + 2]! >> 4 === subtype) return true;
    return false;
  }

  private learnClientKey(sf: Subflow, clientKey: bigint, serverKey: bigint): void {
    if (!sf.conn) {
      const token = mptcpToken(serverKey);
      this.attach(sf, this.conns.get(token) ?? this.newConn(token));
    }
    const conn = sf.conn!;
    if (conn.clientToken === null) {
      conn.clientToken = mptcpToken(clientKey);
      // Joins the server opens name the client's token.
      if (!this.conns.has(conn.clientToken)) this.conns.set(conn.clientToken, conn);
    }
  }

  private attach(sf: Subflow, conn: Conn): void {
    sf.conn = conn;
    conn.refs++;
  }

  private newConn(token: number): Conn {
    const c: Conn = { serverToken: token, clientToken: null, live: new Set(), established: 0, refs: 0 };
    this.conns.set(token, c);
    return c;
  }

  private establish(sf: Subflow, time: number): void {
    sf.state = 'established';
    const conn = sf.conn;
    if (!conn) return;
    conn.live.add(sf);
    conn.established++;
    this.emit({
      event: 'subflow',
      time,
      ...subflowIdentity(sf, conn),
      backup: sf.backup,
      ...(sf.addressId !== undefined ? { addressId: sf.addressId } : {}),
    });
  }

  private joinFailed(sf: Subflow, time: number, resetReason: number | undefined): void {
    this.emit({
      event: 'join-failed',
      time,
      connection: tokenHex(sf.conn!.serverToken),
      src: sf.src,
      dst: sf.dst,
      interface: sf.iface,
      ...(resetReason !== undefined ? { resetReason } : {}),
    });
  }

  /** Report the segment's signalling options; true when they ended the subflow. */
  private signalling(sf: Subflow, dir: 0 | 1, time: number): boolean {
    const conn = sf.conn;
    if (!conn) return false;
    const connection = tokenHex(conn.serverToken);
    let by: string | null = null;
    const sender = (): string => (by ??= dir === 0 ? sf.src : sf.dst);
    for (let i = 0; i < this.optCount; i++) {
      const subtype = this.curBuf[this.optOff[i]! + 2]! >> 4;
      if (subtype === MptcpSubtype.Dss || subtype === MptcpSubtype.MpCapable || subtype === MptcpSubtype.MpJoin) continue;
      const o = this.option(i);
      if (!o) continue;
      switch (o.kind) {
        case 'add_addr':
          if (o.echo) break; // the echo acknowledges an announcement; it announces nothing
          this.emit({
            event: 'announce',
            time,
            connection,
            by: sender(),
            addressId: o.addressId,
            address: o.address,
            ...(o.port !== undefined ? { port: o.port } : {}),
            interface: sf.iface,
          });
          break;
        case 'remove_addr':
          this.emit({ event: 'remove', time, connection, by: sender(), addressIds: o.addressIds });
          break;
        case 'mp_prio':
          if (o.addressId === undefined) sf.backup = o.backup;
          this.emit({
            event: 'priority',
            time,
            connection,
            by: sender(),
            src: sf.src,
            dst: sf.dst,
            backup: o.backup,
            ...(o.addressId !== undefined ? { addressId: o.addressId } : {}),
          });
          break;
        case 'mp_fail':
          this.emit({ event: 'fail', time, connection, by: sender(), dsn: o.dsn.toString() });
          break;
        case 'mp_fastclose':
          this.emit({ event: 'fastclose', time, connection, by: sender() });
          // The fast close ends every subflow at once; a RST follows on each, maybe unseen.
          for (const s of [...conn.live]) this.drop(s, 'fastclose', time, s === sf ? this.resetReason() : undefined);
          return true;
        default:
          break;
      }
    }
    return false;
  }

  /**
   * Count payload bytes from the sequence space: this segment's end in direction `dir`, and its
   * acknowledgment for the other one (the filter keeps pure ACKs, not every data segment).
   */
  private account(sf: Subflow, dir: 0 | 1, pkt: TcpPacket): void {
    const start = pkt.flags & TcpFlag.SYN ? (pkt.seq + 1) >>> 0 : pkt.seq;
    const end = (start + pkt.payloadLength) >>> 0;
    if (pkt.flags & TcpFlag.FIN && sf.finAt[dir] < 0) sf.finAt[dir] = end;
    this.advance(sf, dir, end);
    if (pkt.flags & TcpFlag.ACK) this.advance(sf, dir === 0 ? 1 : 0, pkt.ack);
  }

  private advance(sf: Subflow, dir: 0 | 1, seq: number): void {
    // The FIN takes one sequence number but is no payload: nothing counts past it.
    const fin = sf.finAt[dir];
    const end = fin >= 0 && ((seq - fin) | 0) > 0 ? fin : seq;
    const next = sf.next[dir];
    if (next < 0) {
      sf.next[dir] = end;
      return;
    }
    const d = (end - next) | 0;
    if (d > 0) {
      sf.bytes[dir] += d;
      sf.next[dir] = end;
    }
  }

  /** End a subflow: report it if it was established, and the connection if it was the last. */
  private drop(sf: Subflow, reason: CloseReason, time: number, resetReason: number | undefined): void {
    this.subflows.delete(sf.key);
    const conn = sf.conn;
    if (!conn) return;
    conn.refs--;
    if (sf.state !== 'established') {
      if (conn.refs === 0 && conn.live.size === 0) this.dropConn(conn);
      return;
    }
    conn.live.delete(sf);
    this.emit({
      event: 'subflow-closed',
      time,
      ...subflowIdentity(sf, conn),
      reason,
      ...(resetReason !== undefined ? { resetReason } : {}),
      bytesSent: sf.bytes[0],
      bytesReceived: sf.bytes[1],
    });
    if (conn.live.size === 0) {
      this.emit({ event: 'close', time, connection: tokenHex(conn.serverToken), reason, subflows: conn.established });
      this.dropConn(conn);
    }
  }

  /** Forget a subflow whose handshake did not finish, silently. */
  private forget(sf: Subflow): void {
    this.drop(sf, 'rst', sf.lastSeen, undefined);
  }

  private dropConn(conn: Conn): void {
    if (this.conns.get(conn.serverToken) === conn) this.conns.delete(conn.serverToken);
    if (conn.clientToken !== null && this.conns.get(conn.clientToken) === conn) this.conns.delete(conn.clientToken);
  }
}

/** The fields that name a subflow in both its up and its closed event. */
function subflowIdentity(sf: Subflow, conn: Conn) {
  return { connection: tokenHex(conn.serverToken), kind: sf.kind, src: sf.src, dst: sf.dst, interface: sf.iface };
}
