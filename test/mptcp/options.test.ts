import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import fc from 'fast-check';
import {
  decodeMptcpOption,
  decodeMptcpOptions,
  mptcpIdsn,
  mptcpToken,
  walkTcpOptions,
  type MptcpOption,
} from '../../src/mptcp/options';
import { tokenHex } from '../../src/core/subflow-id';
import { encodeMptcpOption } from './encode';

/** Decode one option given as bytes. */
const dec = (bytes: number[]): ReturnType<typeof decodeMptcpOption> => decodeMptcpOption(Buffer.from(bytes), 0, bytes.length);
const KEY_A = [0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08];
const KEY_B = [0xf1, 0xf2, 0xf3, 0xf4, 0xf5, 0xf6, 0xf7, 0xf8];

test('MP_CAPABLE, all four lengths of RFC 8684 Figure 4', () => {
  // SYN: kind, length 4, subtype 0 | version 1, flags A+H.
  assert.deepEqual(dec([30, 4, 0x01, 0x81]), {
    kind: 'mp_capable', version: 1, checksumRequired: true, extensibility: false, noJoinToSource: false, hmacSha256: true, length: 4,
  });
  const synack = dec([30, 12, 0x01, 0x21, ...KEY_A]);
  assert.equal(synack.kind, 'mp_capable');
  if (synack.kind !== 'mp_capable') return;
  assert.equal(synack.senderKey, 0x0102030405060708n);
  assert.equal(synack.noJoinToSource, true);
  assert.equal(synack.receiverKey, undefined);
  const ack = dec([30, 20, 0x01, 0x01, ...KEY_A, ...KEY_B]);
  assert.ok(ack.kind === 'mp_capable' && ack.receiverKey === 0xf1f2f3f4f5f6f7f8n && ack.dataLength === undefined);
  const data = dec([30, 22, 0x01, 0x01, ...KEY_A, ...KEY_B, 0x05, 0xdc]);
  assert.ok(data.kind === 'mp_capable' && data.dataLength === 1500 && data.checksum === undefined);
  const dataCsum = dec([30, 24, 0x01, 0x81, ...KEY_A, ...KEY_B, 0x00, 0x10, 0xbe, 0xef]);
  assert.ok(dataCsum.kind === 'mp_capable' && dataCsum.dataLength === 16 && dataCsum.checksum === 0xbeef);
  for (const len of [3, 5, 8, 13, 21, 23, 25]) {
    const bytes = [30, len, 0x01, 0x01, ...Array(40).fill(0)].slice(0, len);
    assert.equal(dec(bytes).kind, 'malformed', `length ${len}`);
  }
});

test('MP_JOIN SYN 12, SYN/ACK 16, ACK 24', () => {
  assert.deepEqual(dec([30, 12, 0x11, 0x05, 0xde, 0xad, 0xbe, 0xef, 0, 0, 0, 42]), {
    kind: 'mp_join', phase: 'syn', backup: true, addressId: 5, token: 0xdeadbeef, nonce: 42,
  });
  assert.deepEqual(dec([30, 16, 0x10, 0x02, ...KEY_B, 0, 0, 1, 0]), {
    kind: 'mp_join', phase: 'synack', backup: false, addressId: 2, truncatedHmac: 0xf1f2f3f4f5f6f7f8n, nonce: 256,
  });
  const hmac = Array.from({ length: 20 }, (_, i) => i + 1);
  const ack = dec([30, 24, 0x10, 0x00, ...hmac]);
  assert.ok(ack.kind === 'mp_join' && ack.phase === 'ack');
  if (ack.kind === 'mp_join') assert.deepEqual([...ack.hmac!], hmac);
  assert.equal(dec([30, 20, 0x10, 0, ...Array(16).fill(0)]).kind, 'malformed');
});

test('DSS: every flag combination, 4/8-byte numbers, checksum present or absent', () => {
  let seen = 0;
  for (let f = 0; f < 32; f++) {
    const A = f & 1, a = f & 2, M = f & 4, m = f & 8, F = f & 16;
    const ackLen = A ? (a ? 8 : 4) : 0;
    const mapLen = M ? (m ? 8 : 4) + 6 : 0;
    for (const csum of M ? [false, true] : [false]) {
      const body: number[] = [];
      for (let i = 0; i < ackLen; i++) body.push(0x10 + i);
      for (let i = 0; i < (M ? (m ? 8 : 4) : 0); i++) body.push(0x20 + i);
      if (M) body.push(0, 0, 0x30, 0x39, 0x01, 0x00); // subflow seq 12345, length 256
      if (csum) body.push(0xab, 0xcd);
      const o = dec([30, 4 + body.length, 0x20, f, ...body]);
      assert.equal(o.kind, 'dss', `flags ${f} csum ${csum}`);
      if (o.kind !== 'dss') continue;
      seen++;
      assert.equal(o.dataFin, F !== 0);
      if (A) assert.equal(o.dataAck, a ? 0x1011121314151617n : 0x10111213n);
      else assert.equal(o.dataAck, undefined);
      if (M) {
        assert.equal(o.dsn, m ? 0x2021222324252627n : 0x20212223n);
        assert.equal(o.subflowSeq, 12345);
        assert.equal(o.dataLength, 256);
        assert.equal(o.checksum, csum ? 0xabcd : undefined);
      } else assert.equal(o.dsn, undefined);
      assert.equal(4 + ackLen + mapLen + (csum ? 2 : 0), 4 + body.length);
    }
  }
  assert.equal(seen, 48);
  // A length that fits no flag combination.
  assert.equal(dec([30, 9, 0x20, 0x01, 1, 2, 3, 4, 5]).kind, 'malformed');
  assert.equal(dec([30, 8, 0x20, 0x04, 1, 2, 3, 4]).kind, 'malformed');
});

test('ADD_ADDR: v4/v6, with/without port, echo and with HMAC', () => {
  const h = [9, 9, 9, 9, 9, 9, 9, 9];
  assert.deepEqual(dec([30, 16, 0x30, 3, 10, 0, 0, 2, ...h]), {
    kind: 'add_addr', echo: false, family: 4, addressId: 3, address: '10.0.0.2', hmac: 0x0909090909090909n,
  });
  assert.deepEqual(dec([30, 18, 0x30, 3, 10, 0, 0, 2, 0x1f, 0x90, ...h]), {
    kind: 'add_addr', echo: false, family: 4, addressId: 3, address: '10.0.0.2', port: 8080, hmac: 0x0909090909090909n,
  });
  assert.deepEqual(dec([30, 8, 0x31, 3, 10, 0, 0, 2]), { kind: 'add_addr', echo: true, family: 4, addressId: 3, address: '10.0.0.2' });
  assert.deepEqual(dec([30, 10, 0x31, 3, 10, 0, 0, 2, 0, 80]), {
    kind: 'add_addr', echo: true, family: 4, addressId: 3, address: '10.0.0.2', port: 80,
  });
  const v6 = [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
  assert.deepEqual(dec([30, 28, 0x30, 7, ...v6, ...h]), {
    kind: 'add_addr', echo: false, family: 6, addressId: 7, address: '2001:db8::1', hmac: 0x0909090909090909n,
  });
  assert.deepEqual(dec([30, 30, 0x30, 7, ...v6, 0, 22, ...h]), {
    kind: 'add_addr', echo: false, family: 6, addressId: 7, address: '2001:db8::1', port: 22, hmac: 0x0909090909090909n,
  });
  assert.deepEqual(dec([30, 20, 0x31, 7, ...v6]), { kind: 'add_addr', echo: true, family: 6, addressId: 7, address: '2001:db8::1' });
  assert.deepEqual(dec([30, 22, 0x31, 7, ...v6, 0, 22]), {
    kind: 'add_addr', echo: true, family: 6, addressId: 7, address: '2001:db8::1', port: 22,
  });
  // An echo has no HMAC, so a 16-byte echo fits nothing.
  assert.equal(dec([30, 16, 0x31, 3, 10, 0, 0, 2, ...h]).kind, 'malformed');
  assert.equal(dec([30, 8, 0x30, 3, 10, 0, 0, 2]).kind, 'malformed');
});

test('REMOVE_ADDR, MP_PRIO, MP_FAIL, MP_FASTCLOSE, MP_TCPRST, unknown subtype', () => {
  assert.deepEqual(dec([30, 5, 0x40, 2, 7]), { kind: 'remove_addr', addressIds: [2, 7] });
  assert.equal(dec([30, 3, 0x40]).kind, 'malformed');
  assert.deepEqual(dec([30, 3, 0x51]), { kind: 'mp_prio', backup: true });
  assert.deepEqual(dec([30, 4, 0x50, 9]), { kind: 'mp_prio', backup: false, addressId: 9 });
  assert.equal(dec([30, 5, 0x50, 9, 9]).kind, 'malformed');
  assert.deepEqual(dec([30, 12, 0x60, 0, ...KEY_A]), { kind: 'mp_fail', dsn: 0x0102030405060708n });
  assert.deepEqual(dec([30, 12, 0x70, 0, ...KEY_B]), { kind: 'mp_fastclose', receiverKey: 0xf1f2f3f4f5f6f7f8n });
  assert.equal(dec([30, 8, 0x70, 0, 1, 2, 3, 4]).kind, 'malformed');
  assert.deepEqual(dec([30, 4, 0x81, 3]), { kind: 'mp_tcprst', transient: true, flags: 1, reason: 3 });
  assert.deepEqual(dec([30, 6, 0xf0, 0, 0, 0]), { kind: 'unknown', subtype: 15, length: 6 });
  assert.equal(dec([31, 4, 0x01, 0x01]).kind, 'malformed');
});

test('token and IDSN are the top 32 and low 64 bits of SHA-256 over the key', () => {
  // Independent computation over the spelled-out key bytes.
  const digest = createHash('sha256').update(Buffer.from(KEY_A)).digest('hex');
  assert.equal(tokenHex(mptcpToken(0x0102030405060708n)), digest.slice(0, 8));
  assert.equal(mptcpIdsn(0x0102030405060708n), BigInt('0x' + digest.slice(48)));
  assert.equal(tokenHex(1), '00000001');
});

test('option walker: NOP, EOL, several MPTCP options in one header, broken lists', () => {
  // NOP NOP TS(10) | DSS ack-only | MP_PRIO | EOL + junk after it.
  const b = Buffer.from([1, 1, 8, 10, 0, 0, 0, 1, 0, 0, 0, 2, 30, 8, 0x20, 0x01, 0, 0, 0, 5, 30, 3, 0x51, 0, 30, 30, 30]);
  const all = decodeMptcpOptions(b, 0, b.length);
  assert.deepEqual(all.map((o) => o.kind), ['dss', 'mp_prio']);
  assert.deepEqual(decodeMptcpOptions(Buffer.from([30, 12, 0x01]), 0, 3).map((o) => o.kind), ['malformed']);
  assert.deepEqual(decodeMptcpOptions(Buffer.from([2, 1, 30]), 0, 3).map((o) => o.kind), ['malformed']);
  assert.equal(walkTcpOptions(Buffer.from([1, 1, 1]), 0, 3, () => assert.fail('no option')), null);
});

test('property: arbitrary bytes never throw, through the walker and the decoder', () => {
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 60 }), fc.nat(70), fc.nat(70), (bytes, a, z) => {
      const b = Buffer.from(bytes);
      const out = decodeMptcpOptions(b, Math.min(a, z), Math.max(a, z));
      for (const o of out) assert.ok(typeof o.kind === 'string');
      if (b.length >= 3) decodeMptcpOption(b, 0, Math.min(b.length, 2 + (b[1]! % 40)));
    }),
    { numRuns: 5000 },
  );
});

const u64 = fc.bigInt({ min: 0n, max: 2n ** 64n - 1n });
const u32 = fc.nat({ max: 0xffffffff });
const u16 = fc.nat({ max: 0xffff });
const u8 = fc.nat({ max: 255 });

const arbOption: fc.Arbitrary<MptcpOption> = fc.oneof(
  fc
    .record({ len: fc.constantFrom(4, 12, 20, 22, 24), version: fc.nat(15), fl: u8, k1: u64, k2: u64, dl: u16, cs: u16 })
    .map(({ len, version, fl, k1, k2, dl, cs }): MptcpOption => ({
      kind: 'mp_capable', version, checksumRequired: (fl & 0x80) !== 0, extensibility: (fl & 0x40) !== 0,
      noJoinToSource: (fl & 0x20) !== 0, hmacSha256: (fl & 1) !== 0, length: len,
      ...(len >= 12 ? { senderKey: k1 } : {}), ...(len >= 20 ? { receiverKey: k2 } : {}),
      ...(len >= 22 ? { dataLength: dl } : {}), ...(len === 24 ? { checksum: cs } : {}),
    })),
  fc.record({ backup: fc.boolean(), addressId: u8, token: u32, nonce: u32 }).map((r): MptcpOption => ({ kind: 'mp_join', phase: 'syn', ...r })),
  fc.record({ backup: fc.boolean(), addressId: u8, truncatedHmac: u64, nonce: u32 }).map((r): MptcpOption => ({ kind: 'mp_join', phase: 'synack', ...r })),
  fc.uint8Array({ minLength: 20, maxLength: 20 }).map((h): MptcpOption => ({ kind: 'mp_join', phase: 'ack', backup: false, hmac: Buffer.from(h) })),
  fc
    .record({ fin: fc.boolean(), ack: fc.option(fc.tuple(fc.boolean(), u64)), map: fc.option(fc.tuple(fc.boolean(), u64, u32, u16, fc.option(u16))) })
    .map(({ fin, ack, map }): MptcpOption => {
      const o: MptcpOption = { kind: 'dss', dataFin: fin, dataAck64: ack ? ack[0] : false, dsn64: map ? map[0] : false };
      if (ack) o.dataAck = ack[0] ? ack[1] : ack[1] & 0xffffffffn;
      if (map) {
        o.dsn = map[0] ? map[1] : map[1] & 0xffffffffn;
        o.subflowSeq = map[2];
        o.dataLength = map[3];
        if (map[4] !== null) o.checksum = map[4];
      }
      return o;
    }),
  fc
    .record({ echo: fc.boolean(), v6: fc.boolean(), id: u8, a: fc.ipV4(), port: fc.option(u16), h: u64 })
    .map(({ echo, v6, id, a, port, h }): MptcpOption => ({
      kind: 'add_addr', echo, family: v6 ? 6 : 4, addressId: id, address: v6 ? '2001:db8::' + (id + 1).toString(16) : a,
      ...(port !== null ? { port } : {}), ...(echo ? {} : { hmac: h }),
    })),
  fc.array(u8, { minLength: 1, maxLength: 20 }).map((ids): MptcpOption => ({ kind: 'remove_addr', addressIds: ids })),
  fc.record({ backup: fc.boolean(), id: fc.option(u8) }).map(({ backup, id }): MptcpOption => ({ kind: 'mp_prio', backup, ...(id !== null ? { addressId: id } : {}) })),
  u64.map((dsn): MptcpOption => ({ kind: 'mp_fail', dsn })),
  u64.map((receiverKey): MptcpOption => ({ kind: 'mp_fastclose', receiverKey })),
  fc.record({ flags: fc.nat(15), reason: u8 }).map(({ flags, reason }): MptcpOption => ({ kind: 'mp_tcprst', transient: (flags & 1) === 1, flags, reason })),
);

test('property: encode → decode round-trips every subtype', () => {
  fc.assert(
    fc.property(arbOption, (o) => {
      const bytes = encodeMptcpOption(o);
      assert.equal(bytes[1], bytes.length);
      assert.deepEqual(decodeMptcpOption(bytes, 0, bytes.length), o);
    }),
    { numRuns: 3000 },
  );
});
