/**
 * Netlink (nlmsghdr, genlmsghdr, nlattr) for the proxy's one exchange with the kernel: the
 * generic netlink controller's CTRL_CMD_GETFAMILY request and reply, and the `mptcp_pm` event
 * multicasts (include/uapi/linux/mptcp_pm.h). Every decoder returns a typed result and never
 * throws, whatever the bytes: the input comes from the kernel, but a bad datagram must cost one
 * event, not the process. (The kernel's side, for tests, is test/mptcp/netlink-encode.ts.)
 */
import net from 'node:net';
import { ipv6ToBytes } from '../core/address';

const NLMSG_HDRLEN = 16;
const GENL_HDRLEN = 4;
const NLA_HDRLEN = 4;
const NLMSG_ERROR = 2;
const NLM_F_REQUEST = 1;
/** The type bits of nla_type; the two top bits are the nested / byte-order flags. */
const NLA_TYPE_MASK = 0x3fff;
const NLA_F_NESTED = 0x8000;

export const GENL_ID_CTRL = 16;
export const CTRL_CMD_NEWFAMILY = 1;
const CTRL_CMD_GETFAMILY = 3;
export const CTRL_ATTR_FAMILY_ID = 1;
export const CTRL_ATTR_FAMILY_NAME = 2;
export const CTRL_ATTR_VERSION = 3;
export const CTRL_ATTR_MCAST_GROUPS = 7;
export const CTRL_ATTR_MCAST_GRP_NAME = 1;
export const CTRL_ATTR_MCAST_GRP_ID = 2;

export const MPTCP_PM_NAME = 'mptcp_pm';
export const MPTCP_PM_EV_GRP_NAME = 'mptcp_pm_events';
export const MPTCP_PM_VER = 1;

export const AF_INET = 2;
export const AF_INET6 = 10;

export type NetlinkDecodeErrorCode =
  | 'NL_TRUNCATED'
  | 'NL_BAD_LENGTH'
  | 'NL_KERNEL_ERROR'
  | 'NL_NOT_FOUND'
  | 'NL_UNKNOWN_EVENT'
  | 'NL_MISSING_ATTR'
  | 'NL_BAD_ATTR';

export interface NetlinkDecodeError {
  code: NetlinkDecodeErrorCode;
  detail: string;
  /** Positive errno, for NL_KERNEL_ERROR. */
  errno?: number;
}

export type Decoded<T> = { ok: true; value: T } | { ok: false; error: NetlinkDecodeError };

const fail = (code: NetlinkDecodeErrorCode, detail: string, errno?: number): { ok: false; error: NetlinkDecodeError } => ({
  ok: false,
  error: errno === undefined ? { code, detail } : { code, detail, errno },
});

const align4 = (n: number): number => (n + 3) & ~3;

// ---------------------------------------------------------------------------------------------
// nlmsghdr

export interface NlMsg {
  type: number;
  flags: number;
  seq: number;
  pid: number;
  payload: Buffer;
}

export function encodeNlmsg(m: { type: number; flags: number; seq: number; pid?: number; payload: Buffer }): Buffer {
  const len = NLMSG_HDRLEN + m.payload.length;
  const b = Buffer.alloc(align4(len));
  b.writeUInt32LE(len, 0);
  b.writeUInt16LE(m.type, 4);
  b.writeUInt16LE(m.flags, 6);
  b.writeUInt32LE(m.seq >>> 0, 8);
  b.writeUInt32LE((m.pid ?? 0) >>> 0, 12);
  m.payload.copy(b, NLMSG_HDRLEN);
  return b;
}

/**
 * Split one datagram into its netlink messages. Messages before a malformed one are kept;
 * `error` says why decoding stopped early.
 */
export function decodeNlmsgs(buf: Buffer): { messages: NlMsg[]; error?: NetlinkDecodeError } {
  const messages: NlMsg[] = [];
  let off = 0;
  while (off < buf.length) {
    const rest = buf.length - off;
    if (rest < NLMSG_HDRLEN) return { messages, error: { code: 'NL_TRUNCATED', detail: `${rest} trailing bytes, no nlmsghdr` } };
    const len = buf.readUInt32LE(off);
    if (len < NLMSG_HDRLEN || len > rest) return { messages, error: { code: 'NL_BAD_LENGTH', detail: `nlmsg_len ${len} with ${rest} bytes left` } };
    messages.push({
      type: buf.readUInt16LE(off + 4),
      flags: buf.readUInt16LE(off + 6),
      seq: buf.readUInt32LE(off + 8),
      pid: buf.readUInt32LE(off + 12),
      payload: buf.subarray(off + NLMSG_HDRLEN, off + len),
    });
    off += align4(len);
  }
  return { messages };
}

/** NLMSG_ERROR payload: a negative errno (0 is an ACK). */
export function decodeNlmsgError(payload: Buffer): Decoded<number> {
  if (payload.length < 4) return fail('NL_TRUNCATED', 'NLMSG_ERROR without error code');
  return { ok: true, value: -payload.readInt32LE(0) };
}

// ---------------------------------------------------------------------------------------------
// genlmsghdr + nlattr

export interface GenlMsg {
  cmd: number;
  version: number;
  attrs: Buffer;
}

export function encodeGenl(cmd: number, version: number, attrs: Buffer): Buffer {
  const b = Buffer.alloc(GENL_HDRLEN + attrs.length);
  b.writeUInt8(cmd, 0);
  b.writeUInt8(version, 1);
  attrs.copy(b, GENL_HDRLEN);
  return b;
}

export function decodeGenl(payload: Buffer): Decoded<GenlMsg> {
  if (payload.length < GENL_HDRLEN) return fail('NL_TRUNCATED', `genlmsghdr needs 4 bytes, got ${payload.length}`);
  return { ok: true, value: { cmd: payload.readUInt8(0), version: payload.readUInt8(1), attrs: payload.subarray(GENL_HDRLEN) } };
}

export interface NlAttr {
  type: number;
  nested: boolean;
  data: Buffer;
}

export function encodeAttrs(attrs: readonly { type: number; nested?: boolean; data: Buffer }[]): Buffer {
  const parts: Buffer[] = [];
  for (const a of attrs) {
    const len = NLA_HDRLEN + a.data.length;
    const b = Buffer.alloc(align4(len));
    b.writeUInt16LE(len, 0);
    b.writeUInt16LE((a.type & NLA_TYPE_MASK) | (a.nested ? NLA_F_NESTED : 0), 2);
    a.data.copy(b, NLA_HDRLEN);
    parts.push(b);
  }
  return Buffer.concat(parts);
}

/** Walks a run of nlattrs, handing each one's type field (flags included) and payload span to `visit`. */
function walkAttrs(buf: Buffer, visit: (typeField: number, start: number, end: number) => void): { ok: false; error: NetlinkDecodeError } | null {
  let off = 0;
  while (off < buf.length) {
    const rest = buf.length - off;
    if (rest < NLA_HDRLEN) return fail('NL_TRUNCATED', `${rest} trailing bytes, no nlattr`);
    // Bytes, not readUInt16LE: its argument checks cost more than the read, per attribute.
    const len = buf[off]! | (buf[off + 1]! << 8);
    if (len < NLA_HDRLEN || len > rest) return fail('NL_BAD_LENGTH', `nla_len ${len} with ${rest} bytes left`);
    visit(buf[off + 2]! | (buf[off + 3]! << 8), off + NLA_HDRLEN, off + len);
    off += align4(len);
  }
  return null;
}

export function decodeAttrs(buf: Buffer): Decoded<NlAttr[]> {
  const attrs: NlAttr[] = [];
  const bad = walkAttrs(buf, (t, start, end) => attrs.push({ type: t & NLA_TYPE_MASK, nested: (t & NLA_F_NESTED) !== 0, data: buf.subarray(start, end) }));
  return bad ?? { ok: true, value: attrs };
}

/**
 * decodeAttrs straight into a type → data map (last occurrence wins, as in the kernel's
 * nla_parse), with no per-attribute record.
 */
function decodeAttrMap(buf: Buffer): Decoded<Map<number, Buffer>> {
  const m = new Map<number, Buffer>();
  const bad = walkAttrs(buf, (t, start, end) => m.set(t & NLA_TYPE_MASK, buf.subarray(start, end)));
  return bad ?? { ok: true, value: m };
}

/** Host-order unsigned integer of 1, 2, 4 or 8 bytes (the width some attrs changed across kernels). */
function readUint(b: Buffer, at = 0, len = b.length - at): number | null {
  switch (len) {
    case 1:
      return b.readUInt8(at);
    case 2:
      return b.readUInt16LE(at);
    case 4:
      return b.readUInt32LE(at);
    case 8:
      return Number(b.readBigUInt64LE(at));
    default:
      return null;
  }
}

function cString(b: Buffer): string {
  const nul = b.indexOf(0);
  return b.subarray(0, nul < 0 ? b.length : nul).toString('latin1');
}

export const cstr = (s: string): Buffer => Buffer.concat([Buffer.from(s, 'latin1'), Buffer.from([0])]);

// ---------------------------------------------------------------------------------------------
// CTRL_CMD_GETFAMILY

export interface GenlFamily {
  id: number;
  name: string;
  version: number;
  /** Multicast group name → group id (what NETLINK_ADD_MEMBERSHIP takes). */
  groups: Map<string, number>;
}

export function encodeGetFamilyRequest(name: string, seq: number): Buffer {
  const attrs = encodeAttrs([{ type: CTRL_ATTR_FAMILY_NAME, data: cstr(name) }]);
  return encodeNlmsg({ type: GENL_ID_CTRL, flags: NLM_F_REQUEST, seq, payload: encodeGenl(CTRL_CMD_GETFAMILY, 1, attrs) });
}

function decodeGroups(buf: Buffer): Decoded<Map<string, number>> {
  const list = decodeAttrs(buf);
  if (!list.ok) return list;
  const groups = new Map<string, number>();
  for (const entry of list.value) {
    const inner = decodeAttrMap(entry.data);
    if (!inner.ok) return inner;
    const m = inner.value;
    const name = m.get(CTRL_ATTR_MCAST_GRP_NAME);
    const id = m.get(CTRL_ATTR_MCAST_GRP_ID);
    const idNum = id ? readUint(id) : null;
    if (!name || idNum === null) return fail('NL_MISSING_ATTR', 'multicast group without name or id');
    groups.set(cString(name), idNum);
  }
  return { ok: true, value: groups };
}

/**
 * The reply datagram to CTRL_CMD_GETFAMILY. A kernel without the family answers with
 * NLMSG_ERROR ENOENT, which comes back as NL_NOT_FOUND.
 */
export function decodeGetFamilyReply(datagram: Buffer, seq: number): Decoded<GenlFamily> {
  const { messages, error } = decodeNlmsgs(datagram);
  for (const msg of messages) {
    if (msg.seq !== seq) continue;
    if (msg.type === NLMSG_ERROR) {
      const e = decodeNlmsgError(msg.payload);
      if (!e.ok) return e;
      if (e.value === 2) return fail('NL_NOT_FOUND', 'generic netlink family not registered', 2);
      return fail('NL_KERNEL_ERROR', `controller answered errno ${e.value}`, e.value);
    }
    if (msg.type !== GENL_ID_CTRL) continue;
    const g = decodeGenl(msg.payload);
    if (!g.ok) return g;
    const attrs = decodeAttrMap(g.value.attrs);
    if (!attrs.ok) return attrs;
    const m = attrs.value;
    const idBuf = m.get(CTRL_ATTR_FAMILY_ID);
    const nameBuf = m.get(CTRL_ATTR_FAMILY_NAME);
    const id = idBuf ? readUint(idBuf) : null;
    if (id === null || !nameBuf) return fail('NL_MISSING_ATTR', 'family reply without id or name');
    const verBuf = m.get(CTRL_ATTR_VERSION);
    const groupsBuf = m.get(CTRL_ATTR_MCAST_GROUPS);
    const groups = groupsBuf ? decodeGroups(groupsBuf) : ({ ok: true, value: new Map<string, number>() } as const);
    if (!groups.ok) return groups;
    return { ok: true, value: { id, name: cString(nameBuf), version: (verBuf && readUint(verBuf)) ?? 0, groups: groups.value } };
  }
  return error ? { ok: false, error } : fail('NL_TRUNCATED', `no reply with seq ${seq}`);
}

// ---------------------------------------------------------------------------------------------
// mptcp_pm events

export const MptcpEventType = {
  created: 1,
  established: 2,
  closed: 3,
  announced: 6,
  removed: 7,
  'sub-established': 10,
  'sub-closed': 11,
  'sub-priority': 13,
  'listener-created': 15,
  'listener-closed': 16,
} as const;
export type MptcpEventName = keyof typeof MptcpEventType;
const EVENT_NAMES = new Map<number, MptcpEventName>(Object.entries(MptcpEventType).map(([k, v]) => [v, k as MptcpEventName]));

/** enum mptcp_event_attr */
export const MptcpAttr = {
  token: 1,
  family: 2,
  locId: 3,
  remId: 4,
  saddr4: 5,
  saddr6: 6,
  daddr4: 7,
  daddr6: 8,
  sport: 9,
  dport: 10,
  backup: 11,
  error: 12,
  flags: 13,
  timeout: 14,
  ifIdx: 15,
  resetReason: 16,
  resetFlags: 17,
  serverSide: 18,
} as const;

/** MPTCP_PM_EV_FLAG_* in the `flags` attribute of CREATED/ESTABLISHED (uapi mptcp.h). */
export const MPTCP_PM_EV_FLAG_DENY_JOIN_ID0 = 1;
export const MPTCP_PM_EV_FLAG_SERVER_SIDE = 2;

export interface SockEnd {
  address: string;
  port: number;
}

export interface ConnectionEvent {
  type: 'created' | 'established';
  token: number;
  family: 4 | 6;
  local: SockEnd;
  remote: SockEnd;
  /** From MPTCP_ATTR_SERVER_SIDE or, since 6.18, the SERVER_SIDE bit of `flags`. */
  serverSide: boolean;
  /** The peer asked not to get joins to its initial address (C flag). */
  denyJoinId0: boolean;
  flags: number;
  /** Address ids of the initial subflow, when the kernel sends them. */
  locId?: number;
  remId?: number;
}

export interface ClosedEvent {
  type: 'closed';
  token: number;
}

export interface AnnouncedEvent {
  type: 'announced';
  token: number;
  remId: number;
  family: 4 | 6;
  address: string;
  /** Only when the ADD_ADDR carried a port. */
  port?: number;
}

export interface RemovedEvent {
  type: 'removed';
  token: number;
  remId: number;
}

export interface PmSubflowEvent {
  type: 'sub-established' | 'sub-closed' | 'sub-priority';
  token: number;
  family: 4 | 6;
  locId: number;
  remId: number;
  local: SockEnd;
  remote: SockEnd;
  backup: boolean;
  /** Egress interface index; the kernel sends it only when the subflow is bound to a device. */
  ifIndex?: number;
  /** sk_err of the subflow, SUB_CLOSED only. */
  error?: number;
  /** MP_TCPRST reason and flags received from the peer, SUB_CLOSED only. */
  resetReason?: number;
  resetFlags?: number;
}

export interface ListenerEvent {
  type: 'listener-created' | 'listener-closed';
  family: 4 | 6;
  local: SockEnd;
}

export type MptcpPmEvent = ConnectionEvent | ClosedEvent | AnnouncedEvent | RemovedEvent | PmSubflowEvent | ListenerEvent;

/** Byte values as text, for IPv4 addresses. */
const DECIMAL = Array.from({ length: 256 }, (_, i) => String(i));

/** The highest mptcp_event_attr the events are read for; higher ones are skipped. */
const MAX_EVENT_ATTR = 31;

/**
 * Field accessors over one event's attributes (last occurrence of a type wins, as in nla_parse);
 * undefined when absent, null when malformed. Attributes are found by payload offset, with no
 * Buffer or map entry each: every event of every new connection comes here. One event is
 * decoded at a time (synchronously), so the offset tables are shared.
 */
const attrStart = new Int32Array(MAX_EVENT_ATTR + 1);
const attrEnd = new Int32Array(MAX_EVENT_ATTR + 1);
class Attrs {
  private constructor(private readonly b: Buffer) {}
  static index(b: Buffer): Decoded<Attrs> {
    attrStart.fill(-1);
    const bad = walkAttrs(b, (t, start, end) => {
      const type = t & NLA_TYPE_MASK;
      if (type > MAX_EVENT_ATTR) return;
      attrStart[type] = start;
      attrEnd[type] = end;
    });
    return bad ?? { ok: true, value: new Attrs(b) };
  }
  has(t: number): boolean {
    return attrStart[t]! >= 0;
  }
  private len(t: number): number {
    return attrEnd[t]! - attrStart[t]!;
  }
  uint(t: number): number | undefined | null {
    return this.has(t) ? readUint(this.b, attrStart[t]!, this.len(t)) : undefined;
  }
  port(t: number): number | undefined | null {
    if (!this.has(t)) return undefined;
    return this.len(t) >= 2 ? this.b.readUInt16BE(attrStart[t]!) : null;
  }
  addr(t4: number, t6: number): string | undefined | null {
    const b = this.b;
    if (this.has(t4)) {
      const at = attrStart[t4]!;
      return this.len(t4) >= 4 ? `${DECIMAL[b[at]!]}.${DECIMAL[b[at + 1]!]}.${DECIMAL[b[at + 2]!]}.${DECIMAL[b[at + 3]!]}` : null;
    }
    if (this.has(t6)) return this.len(t6) >= 16 ? ipv6String(b.subarray(attrStart[t6]!, attrStart[t6]! + 16)) : null;
    return undefined;
  }
}

function ipv6String(b: Buffer): string {
  const groups: string[] = [];
  for (let i = 0; i < 8; i++) groups.push(b.readUInt16BE(2 * i).toString(16));
  return new net.SocketAddress({ address: groups.join(':'), family: 'ipv6' }).address;
}

const ATTR_NAMES = new Map<number, string>(Object.entries(MptcpAttr).map(([k, v]) => [v, k]));

/** Pulls typed fields, remembering the first missing or malformed one. */
class Fields {
  problem: NetlinkDecodeError | null = null;
  constructor(readonly a: Attrs) {}
  private check<T>(t: number, v: T | undefined | null, required: boolean): T | undefined {
    if (v === null) this.problem ??= { code: 'NL_BAD_ATTR', detail: `attribute ${ATTR_NAMES.get(t) ?? t} malformed` };
    else if (v === undefined && required) this.problem ??= { code: 'NL_MISSING_ATTR', detail: `attribute ${ATTR_NAMES.get(t) ?? t} missing` };
    return v ?? undefined;
  }
  uint(t: number, required: true): number;
  uint(t: number, required: false): number | undefined;
  uint(t: number, required: boolean): number | undefined {
    return this.check(t, this.a.uint(t), required) ?? (required ? 0 : undefined);
  }
  port(t: number, required: boolean): number {
    return this.check(t, this.a.port(t), required) ?? 0;
  }
  addr(t4: number, t6: number): string {
    return this.check(t4, this.a.addr(t4, t6), true) ?? '';
  }
  /** AF_INET/AF_INET6 from `family`, or from which address attribute is present. */
  family(): 4 | 6 {
    const f = this.a.uint(MptcpAttr.family);
    if (f === AF_INET) return 4;
    if (f === AF_INET6) return 6;
    if (f === undefined) {
      if (this.a.has(MptcpAttr.saddr4) || this.a.has(MptcpAttr.daddr4)) return 4;
      if (this.a.has(MptcpAttr.saddr6) || this.a.has(MptcpAttr.daddr6)) return 6;
    }
    this.problem ??= { code: 'NL_BAD_ATTR', detail: `address family ${f ?? 'missing'}` };
    return 4;
  }
}

/** Decode one event from the genl command (= event type) and its attribute bytes. */
export function decodeMptcpEvent(cmd: number, attrBytes: Buffer): Decoded<MptcpPmEvent> {
  const type = EVENT_NAMES.get(cmd);
  if (!type) return fail('NL_UNKNOWN_EVENT', `mptcp_pm event type ${cmd}`);
  const attrs = Attrs.index(attrBytes);
  if (!attrs.ok) return attrs;
  const f = new Fields(attrs.value);
  const A = MptcpAttr;
  let ev: MptcpPmEvent;
  switch (type) {
    case 'created':
    case 'established': {
      const flags = f.uint(A.flags, false) ?? 0;
      ev = {
        type,
        token: f.uint(A.token, true),
        family: f.family(),
        local: { address: f.addr(A.saddr4, A.saddr6), port: f.port(A.sport, true) },
        remote: { address: f.addr(A.daddr4, A.daddr6), port: f.port(A.dport, true) },
        serverSide: (f.uint(A.serverSide, false) ?? 0) !== 0 || (flags & MPTCP_PM_EV_FLAG_SERVER_SIDE) !== 0,
        denyJoinId0: (flags & MPTCP_PM_EV_FLAG_DENY_JOIN_ID0) !== 0,
        flags,
      };
      const locId = f.uint(A.locId, false);
      const remId = f.uint(A.remId, false);
      if (locId !== undefined) ev.locId = locId;
      if (remId !== undefined) ev.remId = remId;
      break;
    }
    case 'closed':
      ev = { type, token: f.uint(A.token, true) };
      break;
    case 'announced': {
      const port = f.a.has(A.dport) ? f.port(A.dport, false) : undefined;
      ev = { type, token: f.uint(A.token, true), remId: f.uint(A.remId, true), family: f.family(), address: f.addr(A.daddr4, A.daddr6) };
      if (port !== undefined) ev.port = port;
      break;
    }
    case 'removed':
      ev = { type, token: f.uint(A.token, true), remId: f.uint(A.remId, true) };
      break;
    case 'sub-established':
    case 'sub-closed':
    case 'sub-priority': {
      const sub: PmSubflowEvent = {
        type,
        token: f.uint(A.token, true),
        family: f.family(),
        locId: f.uint(A.locId, true),
        remId: f.uint(A.remId, true),
        local: { address: f.addr(A.saddr4, A.saddr6), port: f.port(A.sport, true) },
        remote: { address: f.addr(A.daddr4, A.daddr6), port: f.port(A.dport, true) },
        backup: (f.uint(A.backup, false) ?? 0) !== 0,
      };
      const ifIndex = f.uint(A.ifIdx, false);
      if (ifIndex !== undefined) sub.ifIndex = ifIndex | 0; // s32 on the wire
      const error = f.uint(A.error, false);
      if (error !== undefined) sub.error = error;
      const resetReason = f.uint(A.resetReason, false);
      if (resetReason !== undefined) sub.resetReason = resetReason;
      const resetFlags = f.uint(A.resetFlags, false);
      if (resetFlags !== undefined) sub.resetFlags = resetFlags;
      ev = sub;
      break;
    }
    case 'listener-created':
    case 'listener-closed':
      ev = { type, family: f.family(), local: { address: f.addr(A.saddr4, A.saddr6), port: f.port(A.sport, true) } };
      break;
  }
  return f.problem ? { ok: false, error: f.problem } : { ok: true, value: ev };
}

/** One mptcp_pm netlink message (nlmsg type = the family id resolved at run time). */
export function decodeMptcpEventMessage(msg: NlMsg): Decoded<MptcpPmEvent> {
  const g = decodeGenl(msg.payload);
  return g.ok ? decodeMptcpEvent(g.value.cmd, g.value.attrs) : g;
}

// ---------------------------------------------------------------------------------------------
// mptcp_pm commands of the userspace path manager (uapi mptcp_pm.h), and the kernel's ACK

export const NLM_F_ACK = 4;
/** Set by the kernel on an NLMSG_ERROR that carries extended-ACK attributes after the request. */
const NLM_F_CAPPED = 0x100;
const NLM_F_ACK_TLVS = 0x200;
const NLMSGERR_ATTR_MSG = 1;

/** enum mptcp_pm_cmd: the commands a userspace path manager sends, with a connection token. */
export const MptcpPmCmd = { setFlags: 7, announce: 8, remove: 9, subflowCreate: 10, subflowDestroy: 11 } as const;
/** MPTCP_PM_ATTR_* (command level). */
export const MptcpPmAttr = { addr: 1, token: 4, locId: 5, addrRemote: 6 } as const;
/** MPTCP_PM_ADDR_ATTR_* (inside the nested address attributes). The port is in host order here, unlike the events'. */
export const MptcpPmAddrAttr = { family: 1, id: 2, addr4: 3, addr6: 4, port: 5, flags: 6, ifIdx: 7 } as const;
export const MPTCP_PM_ADDR_FLAG_SIGNAL = 1;
export const MPTCP_PM_ADDR_FLAG_BACKUP = 4;

export interface PmAddr {
  address: string;
  /** 0 or absent: none (the kernel then matches or picks by address only). */
  port?: number;
  /** Address id; ANNOUNCE needs one (1..255). */
  id?: number;
  flags?: number;
}

export type PmCommand =
  /** ADD_ADDR of a local address (and port) on one connection. */
  | { cmd: 'announce'; token: number; local: PmAddr & { id: number } }
  /** RM_ADDR of an announced id, closing the subflows that use it. */
  | { cmd: 'remove'; token: number; locId: number }
  /** An MP_JOIN from `local` (port chosen by the kernel) to `remote`. */
  | { cmd: 'subflow-create'; token: number; local: PmAddr; remote: PmAddr & { port: number } }
  | { cmd: 'subflow-destroy'; token: number; local: PmAddr & { port: number }; remote: PmAddr & { port: number } }
  /** MP_PRIO on the subflows matching local (and remote) address, and port where given. */
  | { cmd: 'set-flags'; token: number; local: PmAddr; remote: PmAddr; backup: boolean };

function u8b(v: number): Buffer {
  return Buffer.from([v & 0xff]);
}
function u16b(v: number): Buffer {
  const b = Buffer.alloc(2);
  b.writeUInt16LE(v & 0xffff);
  return b;
}
function u32b(v: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32LE(v >>> 0);
  return b;
}

/** An IP literal as the kernel's in_addr / in6_addr bytes (network order). */
function ipBytes(address: string): Buffer {
  return net.isIPv4(address) ? Buffer.from(address.split('.').map(Number)) : ipv6ToBytes(address);
}

function encodePmAddr(a: PmAddr): Buffer {
  const v4 = net.isIPv4(a.address);
  const A = MptcpPmAddrAttr;
  const attrs: { type: number; data: Buffer }[] = [
    { type: A.family, data: u16b(v4 ? AF_INET : AF_INET6) },
    { type: v4 ? A.addr4 : A.addr6, data: ipBytes(a.address) },
  ];
  if (a.id !== undefined) attrs.push({ type: A.id, data: u8b(a.id) });
  if (a.port) attrs.push({ type: A.port, data: u16b(a.port) });
  if (a.flags !== undefined) attrs.push({ type: A.flags, data: u32b(a.flags) });
  return encodeAttrs(attrs);
}

/** One command as a request datagram (NLM_F_REQUEST | NLM_F_ACK) for the family id resolved at run time. */
export function encodePmCommand(c: PmCommand, familyId: number, seq: number): Buffer {
  const P = MptcpPmAttr;
  const attrs: { type: number; nested?: boolean; data: Buffer }[] = [{ type: P.token, data: u32b(c.token) }];
  let cmd: number;
  switch (c.cmd) {
    case 'announce':
      cmd = MptcpPmCmd.announce;
      attrs.push({ type: P.addr, nested: true, data: encodePmAddr({ ...c.local, flags: (c.local.flags ?? 0) | MPTCP_PM_ADDR_FLAG_SIGNAL }) });
      break;
    case 'remove':
      cmd = MptcpPmCmd.remove;
      attrs.push({ type: P.locId, data: u8b(c.locId) });
      break;
    case 'subflow-create':
    case 'subflow-destroy':
      cmd = c.cmd === 'subflow-create' ? MptcpPmCmd.subflowCreate : MptcpPmCmd.subflowDestroy;
      attrs.push({ type: P.addr, nested: true, data: encodePmAddr(c.local) }, { type: P.addrRemote, nested: true, data: encodePmAddr(c.remote) });
      break;
    case 'set-flags':
      cmd = MptcpPmCmd.setFlags;
      attrs.push({ type: P.addr, nested: true, data: encodePmAddr({ ...c.local, flags: c.backup ? MPTCP_PM_ADDR_FLAG_BACKUP : 0 }) }, { type: P.addrRemote, nested: true, data: encodePmAddr(c.remote) });
      break;
  }
  return encodeNlmsg({ type: familyId, flags: NLM_F_REQUEST | NLM_F_ACK, seq, payload: encodeGenl(cmd, MPTCP_PM_VER, encodeAttrs(attrs)) });
}

export interface NetlinkAck {
  /** Positive errno; 0 = done. */
  errno: number;
  /** The kernel's extended-ACK text (e.g. "invalid addr id"), when it sent one. */
  message?: string;
}

/** The kernel's NLMSG_ERROR answer (an ACK when errno is 0) to the request with `seq`. */
export function decodePmAck(datagram: Buffer, seq: number): Decoded<NetlinkAck> {
  const { messages, error } = decodeNlmsgs(datagram);
  for (const msg of messages) {
    if (msg.seq !== seq || msg.type !== NLMSG_ERROR) continue;
    const e = decodeNlmsgError(msg.payload);
    if (!e.ok) return e;
    const ack: NetlinkAck = { errno: Math.abs(e.value) }; // an ACK decodes as -0
    if (msg.flags & NLM_F_ACK_TLVS && msg.payload.length >= 4 + NLMSG_HDRLEN) {
      // After the errno: the request's nlmsghdr, and its payload too unless the kernel capped it.
      const skip = 4 + (msg.flags & NLM_F_CAPPED ? NLMSG_HDRLEN : align4(msg.payload.readUInt32LE(4)));
      const tlvs = skip <= msg.payload.length ? decodeAttrMap(msg.payload.subarray(skip)) : null;
      const text = tlvs?.ok ? tlvs.value.get(NLMSGERR_ATTR_MSG) : undefined;
      if (text) ack.message = cString(text);
    }
    return { ok: true, value: ack };
  }
  return error ? { ok: false, error } : fail('NL_TRUNCATED', `no ACK with seq ${seq}`);
}
