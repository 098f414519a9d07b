/**
 * The kernel's side of the netlink exchanges, for tests: the controller's GETFAMILY reply and
 * `mptcp_pm` event multicasts, byte for byte as the kernel builds them, so the decoders in
 * src/mptcp/netlink-codec.ts are tested against (and fakes replay) the same bytes.
 */
import {
  AF_INET,
  AF_INET6,
  CTRL_ATTR_FAMILY_ID,
  CTRL_ATTR_FAMILY_NAME,
  CTRL_ATTR_MCAST_GROUPS,
  CTRL_ATTR_MCAST_GRP_ID,
  CTRL_ATTR_MCAST_GRP_NAME,
  CTRL_ATTR_VERSION,
  CTRL_CMD_NEWFAMILY,
  GENL_ID_CTRL,
  MPTCP_PM_VER,
  MptcpAttr,
  MptcpEventType,
  cstr,
  encodeAttrs,
  encodeGenl,
  encodeNlmsg,
  type GenlFamily,
  type MptcpPmEvent,
} from '../../src/mptcp/netlink-codec';
import { encodeSockaddr } from '../../src/sys/socket';

export const u8 = (v: number): Buffer => Buffer.from([v & 0xff]);
function u16(v: number): Buffer {
  const b = Buffer.alloc(2);
  b.writeUInt16LE(v & 0xffff);
  return b;
}
export function u32(v: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32LE(v >>> 0);
  return b;
}
function be16(v: number): Buffer {
  const b = Buffer.alloc(2);
  b.writeUInt16BE(v & 0xffff);
  return b;
}

/** The controller's answer to GETFAMILY. */
export function encodeGetFamilyReply(f: GenlFamily, seq: number): Buffer {
  const groups = [...f.groups].map(([name, id], i) => ({
    type: i + 1,
    nested: true,
    data: encodeAttrs([
      { type: CTRL_ATTR_MCAST_GRP_ID, data: u32(id) },
      { type: CTRL_ATTR_MCAST_GRP_NAME, data: cstr(name) },
    ]),
  }));
  const attrs = encodeAttrs([
    { type: CTRL_ATTR_FAMILY_NAME, data: cstr(f.name) },
    { type: CTRL_ATTR_FAMILY_ID, data: u16(f.id) },
    { type: CTRL_ATTR_VERSION, data: u32(f.version) },
    { type: CTRL_ATTR_MCAST_GROUPS, nested: true, data: encodeAttrs(groups) },
  ]);
  return encodeNlmsg({ type: GENL_ID_CTRL, flags: 0, seq, payload: encodeGenl(CTRL_CMD_NEWFAMILY, 2, attrs) });
}

function addrAttr(t4: number, t6: number, address: string): { type: number; data: Buffer } {
  // sockaddr_in (16 bytes) keeps the IPv4 address at offset 4, sockaddr_in6 the IPv6 one at 8.
  const sa = encodeSockaddr(address, 0);
  return sa.length === 16 ? { type: t4, data: sa.subarray(4, 8) } : { type: t6, data: sa.subarray(8, 24) };
}

/** The attributes the kernel puts in each event, in the kernel's widths. */
export function encodeMptcpEvent(ev: MptcpPmEvent, familyId: number, seq = 0): Buffer {
  const A = MptcpAttr;
  const attrs: { type: number; data: Buffer }[] = [];
  const fam = (f: 4 | 6): void => void attrs.push({ type: A.family, data: u16(f === 4 ? AF_INET : AF_INET6) });
  switch (ev.type) {
    case 'created':
    case 'established':
      attrs.push({ type: A.token, data: u32(ev.token) });
      if (ev.serverSide) attrs.push({ type: A.serverSide, data: u8(1) });
      if (ev.flags) attrs.push({ type: A.flags, data: u16(ev.flags) });
      fam(ev.family);
      attrs.push(addrAttr(A.saddr4, A.saddr6, ev.local.address), addrAttr(A.daddr4, A.daddr6, ev.remote.address));
      attrs.push({ type: A.sport, data: be16(ev.local.port) }, { type: A.dport, data: be16(ev.remote.port) });
      if (ev.locId !== undefined) attrs.push({ type: A.locId, data: u8(ev.locId) });
      if (ev.remId !== undefined) attrs.push({ type: A.remId, data: u8(ev.remId) });
      break;
    case 'closed':
      attrs.push({ type: A.token, data: u32(ev.token) });
      break;
    case 'announced':
      attrs.push({ type: A.token, data: u32(ev.token) }, { type: A.remId, data: u8(ev.remId) });
      fam(ev.family);
      attrs.push(addrAttr(A.daddr4, A.daddr6, ev.address));
      if (ev.port !== undefined) attrs.push({ type: A.dport, data: be16(ev.port) });
      break;
    case 'removed':
      attrs.push({ type: A.token, data: u32(ev.token) }, { type: A.remId, data: u8(ev.remId) });
      break;
    case 'sub-established':
    case 'sub-closed':
    case 'sub-priority':
      attrs.push({ type: A.token, data: u32(ev.token) });
      fam(ev.family);
      attrs.push(addrAttr(A.saddr4, A.saddr6, ev.local.address), addrAttr(A.daddr4, A.daddr6, ev.remote.address));
      attrs.push({ type: A.sport, data: be16(ev.local.port) }, { type: A.dport, data: be16(ev.remote.port) });
      attrs.push({ type: A.locId, data: u8(ev.locId) }, { type: A.remId, data: u8(ev.remId) }, { type: A.backup, data: u8(+ev.backup) });
      if (ev.ifIndex !== undefined) attrs.push({ type: A.ifIdx, data: u32(ev.ifIndex) });
      if (ev.error !== undefined) attrs.push({ type: A.error, data: u8(ev.error) });
      if (ev.resetReason !== undefined) attrs.push({ type: A.resetReason, data: u32(ev.resetReason) });
      if (ev.resetFlags !== undefined) attrs.push({ type: A.resetFlags, data: u32(ev.resetFlags) });
      break;
    case 'listener-created':
    case 'listener-closed':
      fam(ev.family);
      attrs.push({ type: A.sport, data: be16(ev.local.port) }, addrAttr(A.saddr4, A.saddr6, ev.local.address));
      break;
  }
  return encodeNlmsg({ type: familyId, flags: 0, seq, payload: encodeGenl(MptcpEventType[ev.type], MPTCP_PM_VER, encodeAttrs(attrs)) });
}
