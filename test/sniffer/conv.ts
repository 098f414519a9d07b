/**
 * Scripted MPTCP conversations for the tracker tests: each subflow keeps both sides' sequence
 * numbers, so segments come out as the kernel would send them.
 */
import type { MptcpOption } from '../../src/mptcp/options';
import { LinkType, newTcpPacket, parseFrame, type TcpPacket } from '../../src/mptcp/packet';
import { encodeMptcpOption, frame, ipPacket } from '../mptcp/encode';

export const F = { FIN: 1, SYN: 2, RST: 4, PSH: 8, ACK: 16 } as const;

/** Timestamps (NOP NOP TS) as Linux puts before MPTCP options. */
export const TS = Buffer.from([1, 1, 8, 10, 0, 0, 0, 1, 0, 0, 0, 0]);

export const dssAck = (ack: bigint): MptcpOption => ({ kind: 'dss', dataFin: false, dataAck: ack, dataAck64: true, dsn64: false });

export class Subflow {
  private seq: [number, number];
  constructor(
    readonly a: { addr: string; port: number },
    readonly b: { addr: string; port: number },
    isnA = 1000,
    isnB = 500000,
  ) {
    this.seq = [isnA >>> 0, isnB >>> 0];
  }

  /** One segment from side a (dir 0) or b (dir 1), as raw IP bytes. */
  seg(dir: 0 | 1, flags: number, opts: MptcpOption[] = [], payload = 0): Buffer {
    const [s, d] = dir === 0 ? [this.a, this.b] : [this.b, this.a];
    const other = dir === 0 ? 1 : 0;
    const buf = ipPacket({
      src: s.addr,
      dst: d.addr,
      sport: s.port,
      dport: d.port,
      seq: this.seq[dir],
      ack: flags & F.ACK ? this.seq[other] : 0,
      flags,
      options: [TS, ...opts.map(encodeMptcpOption)],
      payload,
    });
    this.seq[dir] = (this.seq[dir] + payload + (flags & F.SYN ? 1 : 0) + (flags & F.FIN ? 1 : 0)) >>> 0;
    return buf;
  }
}

/** Walk raw IP bytes into a fresh packet record (a copy: the tracker keeps none of it). */
export function tcp(ip: Buffer, linkType: number = LinkType.Raw): TcpPacket {
  const r = parseFrame(frame(ip, linkType), linkType, newTcpPacket());
  if (r.kind !== 'tcp') throw new Error(`not a TCP packet: ${r.reason}`);
  return r;
}
