/**
 * A small encoder for MPTCP options and whole frames, kept under test/ to build vectors and to
 * round-trip the decoder. Layouts follow RFC 8684 §3 figure by figure.
 */
import net from 'node:net';
import type { MptcpOption } from '../../src/mptcp/options';
import { LinkType } from '../../src/mptcp/packet';

function u64(v: bigint): Buffer {
  const b = Buffer.alloc(8);
  b.writeBigUInt64BE(BigInt.asUintN(64, v));
  return b;
}
function u32(v: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(v >>> 0);
  return b;
}
function u16(v: number): Buffer {
  const b = Buffer.alloc(2);
  b.writeUInt16BE(v);
  return b;
}

export function ipBytes(addr: string): Buffer {
  if (net.isIPv4(addr)) return Buffer.from(addr.split('.').map(Number));
  // A dotted-quad tail ("::ffff:1.2.3.4") becomes two hex groups first.
  const text = addr.replace(/(\d+)\.(\d+)\.(\d+)\.(\d+)$/, (_m, a: string, b: string, c: string, d: string) =>
    `${((+a << 8) | +b).toString(16)}:${((+c << 8) | +d).toString(16)}`,
  );
  const [head = '', tail] = text.split('::');
  const h = head ? head.split(':') : [];
  const t = tail ? tail.split(':') : [];
  const groups = tail !== undefined ? [...h, ...Array(8 - h.length - t.length).fill('0'), ...t] : h;
  return Buffer.concat(groups.map((g) => u16(parseInt(g, 16))));
}

/** Option bytes: kind 30, length, then the subtype body. */
function option(body: Buffer): Buffer {
  return Buffer.concat([Buffer.from([30, body.length + 2]), body]);
}

export function encodeMptcpOption(o: MptcpOption): Buffer {
  switch (o.kind) {
    case 'mp_capable': {
      const flags = (o.checksumRequired ? 0x80 : 0) | (o.extensibility ? 0x40 : 0) | (o.noJoinToSource ? 0x20 : 0) | (o.hmacSha256 ? 1 : 0);
      const parts: Buffer[] = [Buffer.from([(0 << 4) | o.version, flags])];
      if (o.senderKey !== undefined) parts.push(u64(o.senderKey));
      if (o.receiverKey !== undefined) parts.push(u64(o.receiverKey));
      if (o.dataLength !== undefined) parts.push(u16(o.dataLength));
      if (o.checksum !== undefined) parts.push(u16(o.checksum));
      return option(Buffer.concat(parts));
    }
    case 'mp_join': {
      const first = (1 << 4) | (o.backup ? 1 : 0);
      if (o.phase === 'syn') return option(Buffer.concat([Buffer.from([first, o.addressId!]), u32(o.token!), u32(o.nonce!)]));
      if (o.phase === 'synack') return option(Buffer.concat([Buffer.from([first, o.addressId!]), u64(o.truncatedHmac!), u32(o.nonce!)]));
      return option(Buffer.concat([Buffer.from([1 << 4, 0]), o.hmac!]));
    }
    case 'dss': {
      const hasAck = o.dataAck !== undefined;
      const hasMap = o.dsn !== undefined;
      const f = (o.dataFin ? 0x10 : 0) | (hasMap && o.dsn64 ? 0x08 : 0) | (hasMap ? 0x04 : 0) | (hasAck && o.dataAck64 ? 0x02 : 0) | (hasAck ? 0x01 : 0);
      const parts: Buffer[] = [Buffer.from([2 << 4, f])];
      if (hasAck) parts.push(o.dataAck64 ? u64(o.dataAck!) : u32(Number(o.dataAck!)));
      if (hasMap) {
        parts.push(o.dsn64 ? u64(o.dsn!) : u32(Number(o.dsn!)), u32(o.subflowSeq!), u16(o.dataLength!));
        if (o.checksum !== undefined) parts.push(u16(o.checksum));
      }
      return option(Buffer.concat(parts));
    }
    case 'add_addr': {
      const parts: Buffer[] = [Buffer.from([(3 << 4) | (o.echo ? 1 : 0), o.addressId]), ipBytes(o.address)];
      if (o.port !== undefined) parts.push(u16(o.port));
      if (o.hmac !== undefined) parts.push(u64(o.hmac));
      return option(Buffer.concat(parts));
    }
    case 'remove_addr':
      return option(Buffer.from([4 << 4, ...o.addressIds]));
    case 'mp_prio':
      return option(Buffer.from([(5 << 4) | (o.backup ? 1 : 0), ...(o.addressId !== undefined ? [o.addressId] : [])]));
    case 'mp_fail':
      return option(Buffer.concat([Buffer.from([6 << 4, 0]), u64(o.dsn)]));
    case 'mp_fastclose':
      return option(Buffer.concat([Buffer.from([7 << 4, 0]), u64(o.receiverKey)]));
    case 'mp_tcprst':
      return option(Buffer.from([(8 << 4) | (o.flags & 0x0f), o.reason]));
    case 'unknown':
      return option(Buffer.concat([Buffer.from([o.subtype << 4]), Buffer.alloc(o.length - 3)]));
  }
}

export interface SegmentSpec {
  src: string;
  dst: string;
  sport: number;
  dport: number;
  seq?: number;
  ack?: number;
  /** TCP flag byte (FIN 1, SYN 2, RST 4, PSH 8, ACK 16). */
  flags: number;
  /** Raw option bytes, padded to a multiple of 4 with trailing NOPs. */
  options?: Buffer[];
  payload?: Buffer | number;
}

/** An IPv4 or IPv6 packet holding one TCP segment (checksums left zero: the decoder ignores them). */
export function ipPacket(s: SegmentSpec): Buffer {
  let opts = Buffer.concat(s.options ?? []);
  // NOPs after the options, as Linux pads: every option it writes starts on a 4-byte boundary.
  if (opts.length % 4) opts = Buffer.concat([opts, Buffer.alloc(4 - (opts.length % 4), 1)]);
  const payload = typeof s.payload === 'number' ? Buffer.alloc(s.payload, 0x61) : (s.payload ?? Buffer.alloc(0));
  const tcp = Buffer.alloc(20 + opts.length);
  tcp.writeUInt16BE(s.sport, 0);
  tcp.writeUInt16BE(s.dport, 2);
  tcp.writeUInt32BE((s.seq ?? 1000) >>> 0, 4);
  tcp.writeUInt32BE((s.ack ?? 0) >>> 0, 8);
  tcp[12] = ((20 + opts.length) / 4) << 4;
  tcp[13] = s.flags;
  tcp.writeUInt16BE(65535, 14);
  opts.copy(tcp, 20);
  const seg = Buffer.concat([tcp, payload]);
  if (net.isIPv4(s.src)) {
    const ip = Buffer.alloc(20);
    ip[0] = 0x45;
    ip.writeUInt16BE(20 + seg.length, 2);
    ip[8] = 64;
    ip[9] = 6;
    ipBytes(s.src).copy(ip, 12);
    ipBytes(s.dst).copy(ip, 16);
    return Buffer.concat([ip, seg]);
  }
  const ip = Buffer.alloc(40);
  ip[0] = 0x60;
  ip.writeUInt16BE(seg.length, 4);
  ip[6] = 6;
  ip[7] = 64;
  ipBytes(s.src).copy(ip, 8);
  ipBytes(s.dst).copy(ip, 24);
  return Buffer.concat([ip, seg]);
}

/** Wrap an IP packet in a link header of the given type (Ethernet may carry VLAN tags). */
export function frame(ip: Buffer, linkType: number, vlans: number[] = []): Buffer {
  const etherType = ip[0]! >> 4 === 6 ? 0x86dd : 0x0800;
  switch (linkType) {
    case LinkType.Ethernet: {
      const head = Buffer.alloc(12, 0x02);
      const tags = vlans.map((id, i) => Buffer.concat([u16(i === 0 && vlans.length > 1 ? 0x88a8 : 0x8100), u16(id)]));
      // Each tag is TPID + TCI; the next TPID/ethertype follows.
      const parts: Buffer[] = [head];
      for (const t of tags) parts.push(t.subarray(0, 2), t.subarray(2));
      parts.push(u16(etherType));
      return Buffer.concat([...parts, ip]);
    }
    case LinkType.LinuxSll: {
      const h = Buffer.alloc(16);
      h.writeUInt16BE(0, 0); // packet type: to us
      h.writeUInt16BE(1, 2); // ARPHRD_ETHER
      h.writeUInt16BE(6, 4);
      h.writeUInt16BE(etherType, 14);
      return Buffer.concat([h, ip]);
    }
    case LinkType.LinuxSll2: {
      const h = Buffer.alloc(20);
      h.writeUInt16BE(etherType, 0);
      h.writeUInt32BE(3, 4); // interface index
      h.writeUInt16BE(1, 8);
      h[11] = 6;
      return Buffer.concat([h, ip]);
    }
    case LinkType.Raw:
      return ip;
    default:
      throw new Error(`no encoder for link type ${linkType}`);
  }
}

/** Build a pcap (microsecond) file of raw frames, for feeding tshark and the offline reader. */
export function pcapFile(linkType: number, frames: Buffer[]): Buffer {
  const head = Buffer.alloc(24);
  head.writeUInt32LE(0xa1b2c3d4, 0);
  head.writeUInt16LE(2, 4);
  head.writeUInt16LE(4, 6);
  head.writeUInt32LE(65535, 16);
  head.writeUInt32LE(linkType, 20);
  const recs = frames.map((f, i) => {
    const r = Buffer.alloc(16);
    r.writeUInt32LE(1_700_000_000 + i, 0);
    r.writeUInt32LE(f.length, 8);
    r.writeUInt32LE(f.length, 12);
    return Buffer.concat([r, f]);
  });
  return Buffer.concat([head, ...recs]);
}
