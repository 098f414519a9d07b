/**
 * Pure decoders for the MPTCP TCP option (kind 30, RFC 8684 §3) and the key-derived values
 * (token, initial data sequence number). Bad bytes give a typed `malformed` result, never a throw.
 */
import { createHash } from 'node:crypto';
import { formatIp } from './packet';

export const TCPOPT_MPTCP = 30;

export const MptcpSubtype = {
  MpCapable: 0,
  MpJoin: 1,
  Dss: 2,
  AddAddr: 3,
  RemoveAddr: 4,
  MpPrio: 5,
  MpFail: 6,
  MpFastclose: 7,
  MpTcpRst: 8,
} as const;

export interface Malformed {
  kind: 'malformed';
  reason: string;
}

export interface MpCapable {
  kind: 'mp_capable';
  version: number;
  /** Flag byte A..H (RFC 8684 §3.1). */
  checksumRequired: boolean;
  extensibility: boolean;
  /** C: the sender accepts no subflows to its source address (join only announced ones). */
  noJoinToSource: boolean;
  hmacSha256: boolean;
  length: number;
  /** SYN/ACK: the sender's key; ACK: the sender's key (then the receiver's). */
  senderKey?: bigint;
  receiverKey?: bigint;
  /** Present on the ACK that carries the first data (length 22 or 24). */
  dataLength?: number;
  checksum?: number;
}

export interface MpJoin {
  kind: 'mp_join';
  phase: 'syn' | 'synack' | 'ack';
  backup: boolean;
  /** SYN and SYN/ACK only. */
  addressId?: number;
  /** SYN: the token of the receiving host's connection. */
  token?: number;
  nonce?: number;
  /** SYN/ACK: truncated 64-bit HMAC. */
  truncatedHmac?: bigint;
  /** ACK: full 160-bit HMAC. */
  hmac?: Buffer;
}

export interface Dss {
  kind: 'dss';
  dataFin: boolean;
  dataAck?: bigint;
  dataAck64: boolean;
  /** Mapping: present when the M flag is set. */
  dsn?: bigint;
  dsn64: boolean;
  subflowSeq?: number;
  dataLength?: number;
  checksum?: number;
}

export interface AddAddr {
  kind: 'add_addr';
  /** The echo of an announcement (no HMAC): not an announcement of its own. */
  echo: boolean;
  family: 4 | 6;
  addressId: number;
  address: string;
  port?: number;
  hmac?: bigint;
}

export interface RemoveAddr {
  kind: 'remove_addr';
  addressIds: number[];
}

export interface MpPrio {
  kind: 'mp_prio';
  backup: boolean;
  addressId?: number;
}

export interface MpFail {
  kind: 'mp_fail';
  dsn: bigint;
}

export interface MpFastclose {
  kind: 'mp_fastclose';
  receiverKey: bigint;
}

export interface MpTcpRst {
  kind: 'mp_tcprst';
  /** T flag: the failure is temporary, a new subflow may be tried. */
  transient: boolean;
  flags: number;
  reason: number;
}

export interface UnknownSubtype {
  kind: 'unknown';
  subtype: number;
  length: number;
}

export type MptcpOption =
  | MpCapable
  | MpJoin
  | Dss
  | AddAddr
  | RemoveAddr
  | MpPrio
  | MpFail
  | MpFastclose
  | MpTcpRst
  | UnknownSubtype;

export type MptcpOptionResult = MptcpOption | Malformed;

const malformed = (reason: string): Malformed => ({ kind: 'malformed', reason });

/**
 * Decode the MPTCP option whose kind byte is at `off` and whose length byte says `len`
 * (the caller's option walker checked that `off + len` lies inside the buffer).
 */
export function decodeMptcpOption(b: Buffer, off: number, len: number): MptcpOptionResult {
  if (len < 3 || off < 0 || off + len > b.length) return malformed('option shorter than 3 bytes or past the header');
  if (b[off] !== TCPOPT_MPTCP) return malformed('not an MPTCP option');
  const subtype = b[off + 2]! >> 4;
  switch (subtype) {
    case MptcpSubtype.MpCapable:
      return decodeMpCapable(b, off, len);
    case MptcpSubtype.MpJoin:
      return decodeMpJoin(b, off, len);
    case MptcpSubtype.Dss:
      return decodeDss(b, off, len);
    case MptcpSubtype.AddAddr:
      return decodeAddAddr(b, off, len);
    case MptcpSubtype.RemoveAddr: {
      const ids: number[] = [];
      for (let i = off + 3; i < off + len; i++) ids.push(b[i]!);
      return ids.length > 0 ? { kind: 'remove_addr', addressIds: ids } : malformed('REMOVE_ADDR without address ids');
    }
    case MptcpSubtype.MpPrio:
      if (len !== 3 && len !== 4) return malformed(`MP_PRIO length ${len}`);
      return len === 4
        ? { kind: 'mp_prio', backup: (b[off + 2]! & 1) === 1, addressId: b[off + 3]! }
        : { kind: 'mp_prio', backup: (b[off + 2]! & 1) === 1 };
    case MptcpSubtype.MpFail:
      return len === 12 ? { kind: 'mp_fail', dsn: b.readBigUInt64BE(off + 4) } : malformed(`MP_FAIL length ${len}`);
    case MptcpSubtype.MpFastclose:
      return len === 12
        ? { kind: 'mp_fastclose', receiverKey: b.readBigUInt64BE(off + 4) }
        : malformed(`MP_FASTCLOSE length ${len}`);
    case MptcpSubtype.MpTcpRst:
      return len === 4
        ? { kind: 'mp_tcprst', transient: (b[off + 2]! & 1) === 1, flags: b[off + 2]! & 0x0f, reason: b[off + 3]! }
        : malformed(`MP_TCPRST length ${len}`);
    default:
      return { kind: 'unknown', subtype, length: len };
  }
}

function decodeMpCapable(b: Buffer, off: number, len: number): MptcpOptionResult {
  if (len !== 4 && len !== 12 && len !== 20 && len !== 22 && len !== 24) return malformed(`MP_CAPABLE length ${len}`);
  const flags = b[off + 3]!;
  const out: MpCapable = {
    kind: 'mp_capable',
    version: b[off + 2]! & 0x0f,
    checksumRequired: (flags & 0x80) !== 0,
    extensibility: (flags & 0x40) !== 0,
    noJoinToSource: (flags & 0x20) !== 0,
    hmacSha256: (flags & 0x01) !== 0,
    length: len,
  };
  if (len >= 12) out.senderKey = b.readBigUInt64BE(off + 4);
  if (len >= 20) out.receiverKey = b.readBigUInt64BE(off + 12);
  if (len >= 22) out.dataLength = b.readUInt16BE(off + 20);
  if (len === 24) out.checksum = b.readUInt16BE(off + 22);
  return out;
}

function decodeMpJoin(b: Buffer, off: number, len: number): MptcpOptionResult {
  const backup = (b[off + 2]! & 1) === 1;
  switch (len) {
    case 12:
      return { kind: 'mp_join', phase: 'syn', backup, addressId: b[off + 3]!, token: b.readUInt32BE(off + 4), nonce: b.readUInt32BE(off + 8) };
    case 16:
      return {
        kind: 'mp_join',
        phase: 'synack',
        backup,
        addressId: b[off + 3]!,
        truncatedHmac: b.readBigUInt64BE(off + 4),
        nonce: b.readUInt32BE(off + 12),
      };
    case 24:
      // The ACK has no B flag or address id; its 12 bits after the subtype are reserved.
      return { kind: 'mp_join', phase: 'ack', backup: false, hmac: Buffer.from(b.subarray(off + 4, off + 24)) };
    default:
      return malformed(`MP_JOIN length ${len}`);
  }
}

const DSS_A = 0x01;
const DSS_a = 0x02;
const DSS_M = 0x04;
const DSS_m = 0x08;
const DSS_F = 0x10;

function decodeDss(b: Buffer, off: number, len: number): MptcpOptionResult {
  if (len < 4) return malformed('DSS shorter than 4 bytes');
  const f = b[off + 3]!;
  const ackLen = f & DSS_A ? (f & DSS_a ? 8 : 4) : 0;
  const mapLen = f & DSS_M ? (f & DSS_m ? 8 : 4) + 6 : 0;
  const base = 4 + ackLen + mapLen;
  // The checksum is there only when the connection negotiated it: the length tells.
  const withChecksum = mapLen > 0 && len === base + 2;
  if (len !== base && !withChecksum) return malformed(`DSS length ${len} does not match flags 0x${f.toString(16)}`);
  const out: Dss = { kind: 'dss', dataFin: (f & DSS_F) !== 0, dataAck64: (f & DSS_a) !== 0 && ackLen > 0, dsn64: (f & DSS_m) !== 0 && mapLen > 0 };
  let p = off + 4;
  if (ackLen === 8) out.dataAck = b.readBigUInt64BE(p);
  else if (ackLen === 4) out.dataAck = BigInt(b.readUInt32BE(p));
  p += ackLen;
  if (mapLen > 0) {
    out.dsn = mapLen === 14 ? b.readBigUInt64BE(p) : BigInt(b.readUInt32BE(p));
    p += mapLen - 6;
    out.subflowSeq = b.readUInt32BE(p);
    out.dataLength = b.readUInt16BE(p + 4);
    if (withChecksum) out.checksum = b.readUInt16BE(p + 6);
  }
  return out;
}

function decodeAddAddr(b: Buffer, off: number, len: number): MptcpOptionResult {
  const echo = (b[off + 2]! & 1) === 1;
  // RFC 8684 dropped the IP version field: the family and the port follow from the length.
  const body = len - 4 - (echo ? 0 : 8);
  let family: 4 | 6;
  let hasPort: boolean;
  if (body === 4 || body === 6) (family = 4), (hasPort = body === 6);
  else if (body === 16 || body === 18) (family = 6), (hasPort = body === 18);
  else return malformed(`ADD_ADDR length ${len}${echo ? ' (echo)' : ''}`);
  const addrLen = family === 4 ? 4 : 16;
  const out: AddAddr = { kind: 'add_addr', echo, family, addressId: b[off + 3]!, address: formatIp(b, off + 4, addrLen) };
  let p = off + 4 + addrLen;
  if (hasPort) (out.port = b.readUInt16BE(p)), (p += 2);
  if (!echo) out.hmac = b.readBigUInt64BE(p);
  return out;
}

/** Walk a TCP option area; calls `visit` for every option with its kind, offset and length. */
export function walkTcpOptions(
  b: Buffer,
  start: number,
  end: number,
  visit: (kind: number, off: number, len: number) => void,
): Malformed | null {
  let p = start;
  const stop = Math.min(end, b.length);
  while (p < stop) {
    const kind = b[p]!;
    if (kind === 0) return null; // end of option list
    if (kind === 1) {
      p++;
      continue;
    }
    if (p + 1 >= stop) return MALFORMED_OPT_TRUNCATED;
    const len = b[p + 1]!;
    if (len < 2) return MALFORMED_OPT_LEN;
    if (p + len > stop) return MALFORMED_OPT_TRUNCATED;
    visit(kind, p, len);
    p += len;
  }
  return null;
}

const MALFORMED_OPT_TRUNCATED: Malformed = Object.freeze({ kind: 'malformed', reason: 'TCP option runs past the header' });
const MALFORMED_OPT_LEN: Malformed = Object.freeze({ kind: 'malformed', reason: 'TCP option length below 2' });

/** Every MPTCP option in a TCP option area, decoded; a broken option list gives one malformed entry. */
export function decodeMptcpOptions(b: Buffer, start: number, end: number): MptcpOptionResult[] {
  const out: MptcpOptionResult[] = [];
  const err = walkTcpOptions(b, start, end, (kind, off, len) => {
    if (kind === TCPOPT_MPTCP) out.push(decodeMptcpOption(b, off, len));
  });
  if (err) out.push(err);
  return out;
}

function keyHash(key: bigint): Buffer {
  const k = Buffer.allocUnsafe(8);
  k.writeBigUInt64BE(BigInt.asUintN(64, key));
  return createHash('sha256').update(k).digest();
}

/** Token: the most significant 32 bits of SHA-256 over the 64-bit key (RFC 8684 §3.1). */
export function mptcpToken(key: bigint): number {
  return keyHash(key).readUInt32BE(0);
}

/** Initial data sequence number: the least significant 64 bits of SHA-256 over the key. */
export function mptcpIdsn(key: bigint): bigint {
  return keyHash(key).readBigUInt64BE(24);
}
