/**
 * The mptcp_pm event filter: the program run by a classic BPF interpreter (the kernel's semantics
 * for the opcodes it uses: big-endian loads, an out-of-bounds load drops the packet) over the
 * kernel's own event bytes and over encoded events of every type and side.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { BPF_MAXINSNS, encodeSockFilter, mptcpEventFilter, type EventFilterSpec, type SockFilterInsn } from '../../src/mptcp/event-filter';
import { MptcpEventType, encodeGenl, encodeNlmsg, type MptcpEventName, type MptcpPmEvent } from '../../src/mptcp/netlink-codec';
import { encodeMptcpEvent } from './netlink-encode';
import { CLOSED, CREATED_CLIENT, ESTABLISHED_SERVER, LISTENER_CREATED } from './netlink-vectors';

/** Bytes the packet keeps (0 = dropped), as the kernel's sk_run_filter computes them. */
function runFilter(prog: readonly SockFilterInsn[], pkt: Buffer): number {
  let a = 0;
  for (let pc = 0; pc < prog.length; pc++) {
    const { code, jt, jf, k } = prog[pc]!;
    switch (code) {
      case 0x80: // ld len
        a = pkt.length;
        break;
      case 0x28: // ldh [k]
        if (k + 2 > pkt.length) return 0;
        a = pkt.readUInt16BE(k);
        break;
      case 0x30: // ldb [k]
        if (k + 1 > pkt.length) return 0;
        a = pkt[k]!;
        break;
      case 0x15: // jeq #k
        pc += a === k ? jt : jf;
        break;
      case 0x35: // jge #k
        pc += a >= k ? jt : jf;
        break;
      case 0x06: // ret #k
        return k;
      default:
        throw new Error(`opcode ${code} at ${pc}`);
    }
  }
  throw new Error('fell off the end of the program');
}

const FAMILY = 0x1c;
const ALL_TYPES = Object.keys(MptcpEventType) as MptcpEventName[];
const kept = (spec: EventFilterSpec, pkt: Buffer): boolean => runFilter(mptcpEventFilter(spec), pkt) !== 0;
const spec = (drop: MptcpEventName[], serverSideOnly: boolean): EventFilterSpec => ({ familyId: FAMILY, drop: new Set(drop), serverSideOnly });

const end = (address: string, port: number): { address: string; port: number } => ({ address, port });
/** One event of each type; CREATED/ESTABLISHED on either side, IPv4 and IPv6. */
function sampleEvents(): MptcpPmEvent[] {
  const out: MptcpPmEvent[] = [];
  for (const family of [4, 6] as const) {
    const [l, r] = family === 4 ? ['10.0.0.1', '10.0.0.2'] : ['fd00::1', 'fd00::2'];
    for (const type of ['created', 'established'] as const)
      for (const serverSide of [true, false])
        for (const flags of serverSide ? [2, 3] : [0, 1])
          out.push({ type, token: 0xa5069233, family, local: end(l, 443), remote: end(r, 40000), serverSide, denyJoinId0: (flags & 1) !== 0, flags, locId: 0, remId: 1 });
    out.push({ type: 'closed', token: 7 });
    out.push({ type: 'announced', token: 7, remId: 2, family, address: r });
    out.push({ type: 'removed', token: 7, remId: 2 });
    for (const type of ['sub-established', 'sub-closed', 'sub-priority'] as const) out.push({ type, token: 7, family, local: end(l, 443), remote: end(r, 40001), locId: 0, remId: 2, backup: false });
    for (const type of ['listener-created', 'listener-closed'] as const) out.push({ type, family, local: end(l, 443) });
  }
  return out;
}
const expected = (s: EventFilterSpec, ev: MptcpPmEvent): boolean =>
  !s.drop.has(ev.type) && !(s.serverSideOnly && (ev.type === 'created' || ev.type === 'established') && !ev.serverSide);

describe('mptcp_pm event filter (classic BPF)', () => {
  it("on the kernel's own bytes: drops client-side CREATED and the dropped types, keeps server-side ESTABLISHED and CLOSED", () => {
    const s = spec(['listener-created'], true);
    assert.equal(kept(s, ESTABLISHED_SERVER), true);
    assert.equal(kept(s, CREATED_CLIENT), false);
    assert.equal(kept(s, CLOSED), true);
    assert.equal(kept(s, LISTENER_CREATED), false);
    // Nothing asked to be dropped: everything passes, whole.
    for (const pkt of [ESTABLISHED_SERVER, CREATED_CLIENT, CLOSED, LISTENER_CREATED]) assert.equal(runFilter(mptcpEventFilter(spec([], false)), pkt), 0xffffffff);
  });

  it('every event type and side gets the verdict of the spec, for every set of dropped types', () => {
    const events = sampleEvents();
    fc.assert(
      fc.property(fc.subarray(ALL_TYPES), fc.boolean(), (drop, serverSideOnly) => {
        const s = spec(drop, serverSideOnly);
        for (const ev of events) assert.equal(kept(s, encodeMptcpEvent(ev, FAMILY)), expected(s, ev), `${JSON.stringify(ev)} with ${JSON.stringify({ drop, serverSideOnly })}`);
      }),
      { numRuns: 300 },
    );
  });

  it('keeps what it cannot read: other families, NLMSG_ERROR, short messages, a CREATED not starting with the token', () => {
    const s = spec(ALL_TYPES, true);
    assert.equal(kept(s, Buffer.from(ESTABLISHED_SERVER).fill(0x10, 4, 5)), true, 'another genl family');
    assert.equal(kept(s, encodeNlmsg({ type: 2, flags: 0, seq: 1, payload: Buffer.alloc(20) })), true, 'NLMSG_ERROR');
    assert.equal(kept(s, Buffer.alloc(12)), true, 'shorter than a genl header');
    const sided = spec([], true);
    // A CREATED cut short before its second attribute, and one whose first attribute is not the token.
    assert.equal(kept(sided, CREATED_CLIENT.subarray(0, 30)), true);
    const noToken = encodeNlmsg({ type: FAMILY, flags: 0, seq: 0, payload: encodeGenl(MptcpEventType.created, 1, Buffer.from('0600020002000000', 'hex')) });
    assert.equal(kept(sided, noToken), true);
    // And never runs past the end of arbitrary bytes into a crash: every input gets a verdict.
    fc.assert(fc.property(fc.uint8Array({ maxLength: 64 }), (bytes) => [0, 0xffffffff].includes(runFilter(mptcpEventFilter(s), Buffer.from(bytes)))));
  });

  it('encodes struct sock_filter in host order, within the kernel limits', () => {
    const prog = mptcpEventFilter(spec(ALL_TYPES, true));
    assert.ok(prog.length <= BPF_MAXINSNS);
    const b = encodeSockFilter(prog);
    assert.equal(b.length, 8 * prog.length);
    prog.forEach((ins, i) => assert.deepEqual({ code: b.readUInt16LE(8 * i), jt: b[8 * i + 2], jf: b[8 * i + 3], k: b.readUInt32LE(8 * i + 4) }, ins));
  });
});
