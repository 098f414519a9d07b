/**
 * Netlink codec: vectors captured from this kernel (6.18) plus fast-check properties (arbitrary
 * bytes never throw; encode → decode gives the event back).
 */
import assert from 'node:assert/strict';
import net from 'node:net';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import {
  MptcpAttr,
  MptcpEventType,
  decodeAttrs,
  decodeGenl,
  decodeGetFamilyReply,
  decodeMptcpEvent,
  decodeMptcpEventMessage,
  decodeNlmsgs,
  encodeAttrs,
  encodeGenl,
  encodeGetFamilyRequest,
  encodeNlmsg,
  type MptcpPmEvent,
  type NlMsg,
  type SockEnd,
} from '../../src/mptcp/netlink-codec';
import { encodeGetFamilyReply, encodeMptcpEvent, u32, u8 } from './netlink-encode';
import { CLOSED, CREATED_CLIENT, ESTABLISHED_SERVER, LISTENER_CREATED } from './netlink-vectors';

const hex = (s: string): Buffer => Buffer.from(s.replace(/\s+/g, ''), 'hex');

/** CTRL_CMD_GETFAMILY "mptcp_pm" reply, seq 158826015, as the kernel sent it. */
const FAMILY_REPLY = hex(`
68010000100000001f7e7709942a0000010200000d0002006d707463705f706d00000000060001001c00000008000300010000000800040000000000
0800050000000000e0000600140001000800010001000000080002001a000000140002000800010002000000080002001a0000001400030008000100
03000000080002000e000000140004000800010004000000080002001a000000140005000800010005000000080002001a0000001400060008000100
06000000080002000a000000140007000800010007000000080002001a000000140008000800010008000000080002001a0000001400090008000100
09000000080002001a00000014000a00080001000a000000080002001a00000014000b00080001000b000000080002001a0000004400070020000100
0800020008000000120001006d707463705f706d5f636d6473000000200002000800020009000000140001006d707463705f706d5f6576656e747300`);
const FAMILY_SEQ = 158826015;
/** The same request for "no_such_family": NLMSG_ERROR -ENOENT, seq 158826016. */
const NOT_FOUND = hex('3c00000002000000207e7709942a0000feffffff2800000010000100207e77090000000003010000130002006e6f5f737563685f66616d696c790000');

function only(datagram: Buffer): NlMsg {
  const { messages, error } = decodeNlmsgs(datagram);
  assert.equal(error, undefined);
  assert.equal(messages.length, 1);
  return messages[0]!;
}

function event(datagram: Buffer): MptcpPmEvent {
  const r = decodeMptcpEventMessage(only(datagram));
  assert.ok(r.ok, JSON.stringify(!r.ok && r.error));
  return r.value;
}

describe('netlink codec: kernel vectors', () => {
  it('finds mptcp_pm and its groups in the controller reply', () => {
    const r = decodeGetFamilyReply(FAMILY_REPLY, FAMILY_SEQ);
    assert.ok(r.ok);
    assert.equal(r.value.id, 28);
    assert.equal(r.value.name, 'mptcp_pm');
    assert.equal(r.value.version, 1);
    assert.deepEqual([...r.value.groups], [
      ['mptcp_pm_cmds', 8],
      ['mptcp_pm_events', 9],
    ]);
  });

  it('ignores replies to another seq', () => {
    const r = decodeGetFamilyReply(FAMILY_REPLY, FAMILY_SEQ + 1);
    assert.ok(!r.ok);
    assert.equal(r.error.code, 'NL_TRUNCATED');
  });

  it('turns ENOENT from the controller into NL_NOT_FOUND', () => {
    const r = decodeGetFamilyReply(NOT_FOUND, 158826016);
    assert.ok(!r.ok);
    assert.equal(r.error.code, 'NL_NOT_FOUND');
    assert.equal(r.error.errno, 2);
  });

  it('builds the request the kernel answered', () => {
    const req = encodeGetFamilyRequest('mptcp_pm', 7);
    const m = only(req);
    assert.equal(m.type, 16);
    assert.equal(m.flags, 1);
    assert.equal(m.seq, 7);
    const g = decodeGenl(m.payload);
    assert.ok(g.ok);
    assert.equal(g.value.cmd, 3);
    const attrs = decodeAttrs(g.value.attrs);
    assert.ok(attrs.ok);
    assert.deepEqual(attrs.value.map((a) => [a.type, a.data.toString('latin1')]), [[2, 'mptcp_pm\0']]);
  });

  it('decodes a server-side ESTABLISHED', () => {
    assert.deepEqual(event(ESTABLISHED_SERVER), {
      type: 'established',
      token: 0xa5069233,
      family: 4,
      local: { address: '127.0.0.1', port: 0x9463 },
      remote: { address: '127.0.0.1', port: 0x93cc },
      serverSide: true,
      denyJoinId0: false,
      flags: 2,
      locId: 0,
      remId: 0,
    });
  });

  it('decodes a client-side CREATED (no server_side attribute)', () => {
    const ev = event(CREATED_CLIENT);
    assert.equal(ev.type, 'created');
    assert.ok(ev.type === 'created' && !ev.serverSide && ev.flags === 0 && ev.local.port === 0x93cc);
  });

  it('decodes CLOSED and LISTENER_CREATED', () => {
    assert.deepEqual(event(CLOSED), { type: 'closed', token: 0x5e2c7759 });
    assert.deepEqual(event(LISTENER_CREATED), { type: 'listener-created', family: 4, local: { address: '127.0.0.1', port: 0x9463 } });
  });

  it('splits several messages in one datagram', () => {
    const { messages, error } = decodeNlmsgs(Buffer.concat([CLOSED, ESTABLISHED_SERVER, CLOSED]));
    assert.equal(error, undefined);
    assert.deepEqual(
      messages.map((m) => decodeMptcpEventMessage(m)).map((r) => r.ok && r.value.type),
      ['closed', 'established', 'closed'],
    );
  });
});

describe('netlink codec: malformed input', () => {
  it('keeps the good messages before a bad length', () => {
    const bad = Buffer.concat([CLOSED, hex('ff000000')]);
    const { messages, error } = decodeNlmsgs(bad);
    assert.equal(messages.length, 1);
    assert.equal(error?.code, 'NL_TRUNCATED');
    const over = Buffer.from(CLOSED);
    over.writeUInt32LE(1000, 0);
    assert.equal(decodeNlmsgs(over).error?.code, 'NL_BAD_LENGTH');
  });

  it('reports a missing token and a short address', () => {
    const noToken = decodeMptcpEvent(MptcpEventType.closed, Buffer.alloc(0));
    assert.ok(!noToken.ok);
    assert.equal(noToken.error.code, 'NL_MISSING_ATTR');
    const shortAddr = decodeMptcpEvent(
      MptcpEventType['listener-created'],
      encodeAttrs([
        { type: MptcpAttr.sport, data: Buffer.from([0, 80]) },
        { type: MptcpAttr.saddr4, data: Buffer.from([10, 0]) },
      ]),
    );
    assert.ok(!shortAddr.ok);
    assert.equal(shortAddr.error.code, 'NL_BAD_ATTR');
  });

  it('refuses unknown event types', () => {
    const r = decodeMptcpEvent(4, encodeAttrs([{ type: MptcpAttr.token, data: u32(1) }]));
    assert.ok(!r.ok);
    assert.equal(r.error.code, 'NL_UNKNOWN_EVENT');
  });

  it('reads `error` as u8 (6.18) or u32 (its documented width elsewhere)', () => {
    const base = (err: Buffer): Buffer =>
      encodeAttrs([
        { type: MptcpAttr.token, data: u32(9) },
        { type: MptcpAttr.saddr4, data: Buffer.from([10, 0, 0, 1]) },
        { type: MptcpAttr.daddr4, data: Buffer.from([10, 0, 0, 2]) },
        { type: MptcpAttr.sport, data: Buffer.from([0, 1]) },
        { type: MptcpAttr.dport, data: Buffer.from([0, 2]) },
        { type: MptcpAttr.locId, data: u8(1) },
        { type: MptcpAttr.remId, data: u8(0) },
        { type: MptcpAttr.error, data: err },
      ]);
    for (const e of [u8(104), u32(104)]) {
      const r = decodeMptcpEvent(MptcpEventType['sub-closed'], base(e));
      assert.ok(r.ok && r.value.type === 'sub-closed' && r.value.error === 104 && r.value.family === 4);
    }
  });

  it('never throws on arbitrary bytes, at any layer', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 400 }), fc.integer({ min: 0, max: 20 }), (bytes, cmd) => {
        const b = Buffer.from(bytes);
        const { messages } = decodeNlmsgs(b);
        for (const m of messages) decodeMptcpEventMessage(m);
        decodeAttrs(b);
        decodeGenl(b);
        decodeGetFamilyReply(b, 0);
        const r = decodeMptcpEvent(cmd, b);
        assert.equal(typeof r.ok, 'boolean');
      }),
      { numRuns: 2000 },
    );
  });

  it('never throws on corrupted real messages (bit flips, cuts)', () => {
    const vectors = [FAMILY_REPLY, NOT_FOUND, ESTABLISHED_SERVER, CREATED_CLIENT, CLOSED, LISTENER_CREATED];
    fc.assert(
      fc.property(fc.constantFrom(...vectors), fc.nat(), fc.integer({ min: 0, max: 255 }), fc.nat(), (v, pos, val, cut) => {
        const b = Buffer.from(v);
        b[pos % b.length] = val;
        const c = b.subarray(0, cut % (b.length + 1));
        for (const m of decodeNlmsgs(c).messages) decodeMptcpEventMessage(m);
        decodeGetFamilyReply(c, FAMILY_SEQ);
      }),
      { numRuns: 3000 },
    );
  });
});

const canon = (a: string): string => (net.isIPv6(a) ? new net.SocketAddress({ address: a, family: 'ipv6' }).address : a);
const byte = fc.integer({ min: 0, max: 255 });
const port = fc.integer({ min: 0, max: 65535 });
const token = fc.integer({ min: 0, max: 0xffffffff });
const fam = fc.constantFrom<4 | 6>(4, 6);
const addrOf = (f: 4 | 6): fc.Arbitrary<string> => (f === 4 ? fc.ipV4() : fc.ipV6().map(canon));
const endOf = (f: 4 | 6): fc.Arbitrary<SockEnd> => fc.record({ address: addrOf(f), port });

const eventArb: fc.Arbitrary<MptcpPmEvent> = fam.chain((family) =>
  fc.oneof(
    fc
      .record({
        type: fc.constantFrom('created' as const, 'established' as const),
        token,
        local: endOf(family),
        remote: endOf(family),
        flags: fc.integer({ min: 0, max: 3 }),
        locId: fc.option(byte, { nil: undefined }),
        remId: fc.option(byte, { nil: undefined }),
      })
      .map(({ locId, remId, ...e }) => ({
        ...e,
        family,
        serverSide: (e.flags & 2) !== 0,
        denyJoinId0: (e.flags & 1) !== 0,
        ...(locId === undefined ? {} : { locId }),
        ...(remId === undefined ? {} : { remId }),
      })),
    fc.record({ type: fc.constant('closed' as const), token }),
    fc
      .record({ type: fc.constant('announced' as const), token, remId: byte, address: addrOf(family), port: fc.option(port, { nil: undefined }) })
      .map(({ port: p, ...e }) => ({ ...e, family, ...(p === undefined ? {} : { port: p }) })),
    fc.record({ type: fc.constant('removed' as const), token, remId: byte }),
    fc
      .record({
        type: fc.constantFrom('sub-established' as const, 'sub-closed' as const, 'sub-priority' as const),
        token,
        locId: byte,
        remId: byte,
        local: endOf(family),
        remote: endOf(family),
        backup: fc.boolean(),
        ifIndex: fc.option(fc.integer({ min: 1, max: 0x7fffffff }), { nil: undefined }),
        error: fc.option(byte, { nil: undefined }),
        resetReason: fc.option(fc.integer({ min: 0, max: 6 }), { nil: undefined }),
        resetFlags: fc.option(fc.integer({ min: 0, max: 15 }), { nil: undefined }),
      })
      .map((e) => {
        const out: Record<string, unknown> = { family };
        for (const [k, v] of Object.entries(e)) if (v !== undefined) out[k] = v;
        return out as unknown as MptcpPmEvent;
      }),
    fc.record({ type: fc.constantFrom('listener-created' as const, 'listener-closed' as const), local: endOf(family) }).map((e) => ({ ...e, family })),
  ),
);

describe('netlink codec: round trips', () => {
  it('encodeMptcpEvent → decode gives the event back', () => {
    fc.assert(
      fc.property(eventArb, fc.integer({ min: 17, max: 0xffff }), (ev, familyId) => {
        const m = only(encodeMptcpEvent(ev, familyId));
        assert.equal(m.type, familyId);
        const r = decodeMptcpEventMessage(m);
        assert.ok(r.ok, JSON.stringify(!r.ok && r.error));
        // fc.record builds null-prototype objects; strict deepEqual compares prototypes.
        assert.deepEqual(r.value, structuredClone(ev));
      }),
      { numRuns: 1000 },
    );
  });

  it('attributes and netlink headers round-trip', () => {
    const attr = fc.record({ type: fc.integer({ min: 0, max: 0x3fff }), nested: fc.boolean(), data: fc.uint8Array({ maxLength: 40 }).map((u) => Buffer.from(u)) });
    fc.assert(
      fc.property(fc.array(attr, { maxLength: 8 }), fc.integer({ min: 0, max: 0xffff }), token, fc.integer({ min: 0, max: 255 }), (attrs, type, seq, cmd) => {
        const msg = encodeNlmsg({ type, flags: 5, seq, pid: 0, payload: encodeGenl(cmd, 1, encodeAttrs(attrs)) });
        const m = only(msg);
        assert.deepEqual([m.type, m.flags, m.seq], [type, 5, seq]);
        const g = decodeGenl(m.payload);
        assert.ok(g.ok);
        assert.equal(g.value.cmd, cmd);
        const back = decodeAttrs(g.value.attrs);
        assert.ok(back.ok);
        assert.deepEqual(back.value, attrs.map((a) => ({ ...a })));
      }),
    );
  });

  it('a family reply round-trips', () => {
    const name = fc.stringMatching(/^[a-z_]{1,15}$/);
    fc.assert(
      fc.property(name, fc.integer({ min: 17, max: 0xffff }), fc.uniqueArray(fc.tuple(name, fc.integer({ min: 1, max: 1000 })), { selector: (g) => g[0], maxLength: 5 }), token, (n, id, groups, seq) => {
        const f = { id, name: n, version: 1, groups: new Map(groups) };
        const r = decodeGetFamilyReply(encodeGetFamilyReply(f, seq), seq);
        assert.ok(r.ok);
        assert.deepEqual(r.value, f);
      }),
    );
  });
});
