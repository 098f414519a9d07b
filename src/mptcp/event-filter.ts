/**
 * A classic BPF socket filter (SO_ATTACH_FILTER) for the `mptcp_pm` events socket: the kernel
 * drops the events nobody in this process reads before they are queued, so the reader thread
 * never receives them and the main thread never decodes them. At thousands of new connections a
 * second each connection costs several events per MPTCP socket in the namespace (both ends when
 * the client or the origin is local, and the proxy's own upstream connections), and those
 * datagrams were most of the proxy's per-tunnel CPU outside the fast path.
 *
 * What it can tell apart, from the bytes of one event: the genl command (= event type), and for
 * CREATED/ESTABLISHED which side opened the connection. The kernel writes MPTCP_ATTR_TOKEN first
 * and, only on the server side, MPTCP_ATTR_SERVER_SIDE right after it (every kernel since the
 * events exist; 6.18 measured); a client-side event has FAMILY or FLAGS there. Anything else
 * (other families, NLMSG_ERROR, ACKs, short or unexpected layouts) is kept, so the JS decoder
 * still sees and reports it. CLOSED carries only the token, so its side cannot be told here.
 */
import { MptcpAttr, MptcpEventType, type MptcpEventName } from './netlink-codec';

/** struct sock_filter: { u16 code; u8 jt; u8 jf; u32 k }. */
export interface SockFilterInsn {
  code: number;
  jt: number;
  jf: number;
  k: number;
}

// Opcodes (linux/bpf_common.h, linux/filter.h).
const BPF_LD_W_LEN = 0x80; // A = packet length
const BPF_LD_H_ABS = 0x28; // A = ntohs(u16 at k)
const BPF_LD_B_ABS = 0x30; // A = u8 at k
const BPF_JEQ_K = 0x15; // A == k ? jt : jf
const BPF_JGE_K = 0x35; // A >= k ? jt : jf
const BPF_RET_K = 0x06; // accept k bytes (0 drops)

/** The largest program the kernel takes (BPF_MAXINSNS) and the reach of a conditional jump. */
export const BPF_MAXINSNS = 4096;
const MAX_JUMP = 255;

const NLMSG_TYPE = 4;
const GENL_CMD = 16;
/** nlmsghdr (16) + genlmsghdr (4): the first attribute. */
const FIRST_ATTR = 20;
/** The token attribute is 8 bytes (4 header + u32): the second attribute starts here. */
const SECOND_ATTR = FIRST_ATTR + 8;
/** Bytes up to and including the second attribute's type. */
const SIDE_CHECK_LEN = SECOND_ATTR + 4;

/** u16 fields of netlink are host-order (little-endian here, as the codec reads them); BPF loads are big-endian. */
const le16 = (v: number): number => ((v & 0xff) << 8) | ((v >> 8) & 0xff);

export interface EventFilterSpec {
  /** The `mptcp_pm` family id (CTRL_CMD_GETFAMILY). */
  familyId: number;
  /** Event types dropped whatever their side. */
  drop: ReadonlySet<MptcpEventName>;
  /** CREATED/ESTABLISHED (not in `drop`) of connections this host opened (client side) are dropped too. */
  serverSideOnly: boolean;
}

type Target = 'keep' | 'drop' | 'side' | 'next';
interface Pending {
  code: number;
  k: number;
  jt?: Target;
  jf?: Target;
}

/** The filter program for a spec (instructions in order, jumps resolved). */
export function mptcpEventFilter(spec: EventFilterSpec): SockFilterInsn[] {
  const dropped = [...spec.drop].map((n) => MptcpEventType[n]);
  const sided = spec.serverSideOnly ? (['created', 'established'] as const).filter((n) => !spec.drop.has(n)).map((n) => MptcpEventType[n]) : [];
  const body: Pending[] = [
    { code: BPF_LD_W_LEN, k: 0 },
    // Too short for a genl header: not an event this filter understands.
    { code: BPF_JGE_K, k: FIRST_ATTR, jt: 'next', jf: 'keep' },
    { code: BPF_LD_H_ABS, k: NLMSG_TYPE },
    { code: BPF_JEQ_K, k: le16(spec.familyId), jt: 'next', jf: 'keep' },
    { code: BPF_LD_B_ABS, k: GENL_CMD },
    ...dropped.map((cmd): Pending => ({ code: BPF_JEQ_K, k: cmd, jt: 'drop', jf: 'next' })),
    ...sided.map((cmd): Pending => ({ code: BPF_JEQ_K, k: cmd, jt: 'side', jf: 'next' })),
    { code: BPF_RET_K, k: 0xffffffff },
  ];
  const side: Pending[] = [
    { code: BPF_LD_W_LEN, k: 0 },
    { code: BPF_JGE_K, k: SIDE_CHECK_LEN, jt: 'next', jf: 'keep' },
    // The first attribute must be the token, or the layout is not the one described above.
    { code: BPF_LD_H_ABS, k: FIRST_ATTR + 2 },
    { code: BPF_JEQ_K, k: le16(MptcpAttr.token), jt: 'next', jf: 'keep' },
    { code: BPF_LD_H_ABS, k: SECOND_ATTR + 2 },
    { code: BPF_JEQ_K, k: le16(MptcpAttr.serverSide), jt: 'keep', jf: 'drop' },
  ];
  const all = [...body, ...(sided.length > 0 ? side : []), { code: BPF_RET_K, k: 0xffffffff }, { code: BPF_RET_K, k: 0 }];
  const at = { side: body.length, keep: all.length - 2, drop: all.length - 1 };
  const jump = (from: number, t: Target | undefined): number => {
    if (t === undefined || t === 'next') return 0;
    const off = at[t] - from - 1;
    if (off < 0 || off > MAX_JUMP) throw new RangeError(`BPF jump of ${off} from ${from}`);
    return off;
  };
  if (all.length > BPF_MAXINSNS) throw new RangeError(`BPF program of ${all.length} instructions`);
  return all.map((p, i) => ({ code: p.code, jt: jump(i, p.jt), jf: jump(i, p.jf), k: p.k >>> 0 }));
}

/** struct sock_filter[] in host order, for struct sock_fprog. */
export function encodeSockFilter(prog: readonly SockFilterInsn[]): Buffer {
  const b = Buffer.alloc(8 * prog.length);
  prog.forEach((ins, i) => {
    b.writeUInt16LE(ins.code, 8 * i);
    b.writeUInt8(ins.jt, 8 * i + 2);
    b.writeUInt8(ins.jf, 8 * i + 3);
    b.writeUInt32LE(ins.k, 8 * i + 4);
  });
  return b;
}
