/**
 * RFC 8803 codec: byte vectors laid out as the RFC's figures draw them (fixed header §4.1, each
 * TLV of §6), the error answers rendered from the one error table, and fast-check properties
 * (arbitrary bytes never throw and give a typed result; encode→parse round-trips; a valid
 * message is incomplete until its last byte and consumes exactly itself).
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { ERROR_TABLE, ErrorCode } from '../../src/core/errors';
import {
  CONVERT_MAGIC,
  ConvertError,
  decodeConvertTlvs,
  encodeConvertError,
  encodeConvertMessage,
  encodeTcpOptions,
  MAX_MESSAGE_BYTES,
  parseConvertFrame,
  parseConvertMessage,
  parseTcpOptions,
  type ConvertTlv,
} from '../../src/proxy/convert/codec';
import { honouredTcpOptions, optionsFromTcpInfo, refusedTcpOptions } from '../../src/proxy/convert/server';
import { convertErrorValue, refusalBytes } from '../../src/proxy/refusal';
import { errorCode, okValue } from '../helpers/parse-result';

const hex = (s: string): Buffer => Buffer.from(s.replace(/\s+/g, ''), 'hex');


/** Every proper prefix is incomplete; the whole parses and consumes exactly itself. */
function assertFramed(msg: Buffer): ConvertTlv[] {
  for (let k = 0; k < msg.length; k++) assert.equal(parseConvertMessage(msg.subarray(0, k)).kind, 'incomplete', `prefix of ${k} bytes`);
  const r = okValue(parseConvertMessage(msg));
  assert.equal(r.consumed, msg.length);
  return r.value;
}

// Figures of RFC 8803: header | Version=1 | Total Length (words) | Magic Number 0x2263 |
const CONNECT_V4 = hex(`01 06 2263  0a 05 0050  00000000 00000000 0000ffff c0000201`);
const CONNECT_V6 = hex(`01 06 2263  0a 05 01bb  20010db8 00000000 00000000 00000001`);

describe('Convert codec vectors', () => {
  it('Connect TLV to an IPv4 destination (IPv4-mapped), with data behind the message left unconsumed', () => {
    assert.deepEqual(assertFramed(CONNECT_V4), [{ type: 'connect', host: '192.0.2.1', port: 80, options: Buffer.alloc(0) }]);
    assert.equal(okValue(parseConvertMessage(Buffer.concat([CONNECT_V4, Buffer.from('GET / HTTP/1.1\r\n')]))).consumed, 24);
    assert.deepEqual(encodeConvertMessage([{ type: 'connect', host: '192.0.2.1', port: 80, options: Buffer.alloc(0) }]), CONNECT_V4);
  });

  it('Connect TLV to an IPv6 destination, canonical text', () => {
    assert.deepEqual(assertFramed(CONNECT_V6), [{ type: 'connect', host: '2001:db8::1', port: 443, options: Buffer.alloc(0) }]);
    assert.deepEqual(encodeConvertMessage([{ type: 'connect', host: '2001:db8::1', port: 443, options: Buffer.alloc(0) }]), CONNECT_V6);
  });

  it('Connect TLV with TCP options (MSS 1460, SACK-permitted, padding) and a Cookie TLV', () => {
    const msg = hex(`01 0a 2263  0a 07 0050 00000000 00000000 0000ffff c0000201 020405b4 04020000  16 02 0000 c0ffee00`);
    const tlvs = assertFramed(msg);
    assert.deepEqual(tlvs, [
      { type: 'connect', host: '192.0.2.1', port: 80, options: hex('020405b4 04020000') },
      { type: 'cookie', cookie: hex('c0ffee00') },
    ]);
    assert.deepEqual(okValue(parseTcpOptions((tlvs[0] as { options: Buffer }).options)).value, [
      { kind: 2, data: hex('05b4') },
      { kind: 4, data: Buffer.alloc(0) },
    ]);
  });

  it('Info, Supported TCP Extensions, Extended TCP Header and Error TLVs', () => {
    assert.deepEqual(assertFramed(hex('01 02 2263  01 01 0000')), [{ type: 'info' }]);
    assert.deepEqual(encodeConvertMessage([{ type: 'info' }]), hex('01 02 2263  01 01 0000'));
    const supported = hex('01 03 2263  15 02 0000 0203041e');
    assert.deepEqual(assertFramed(supported), [{ type: 'supported-tcp-extensions', kinds: [2, 3, 4, 30] }]);
    assert.deepEqual(encodeConvertMessage([{ type: 'supported-tcp-extensions', kinds: [2, 3, 4, 30] }]), supported);
    const ext = hex('01 03 2263  14 02 0000 020405b4');
    assert.deepEqual(assertFramed(ext), [{ type: 'extended-tcp-header', header: hex('020405b4') }]);
    // Unsupported Version: the value is the version supported (1), padded.
    assert.deepEqual(assertFramed(hex('01 02 2263  1e 01 00 01')), [{ type: 'error', code: 0, value: hex('01') }]);
    assert.deepEqual(encodeConvertError(ConvertError.ConnectionReset), hex('01 02 2263  1e 01 60 00'));
  });

  it('refuses what is not a Convert message, with the proxy code the table turns into the RFC error', () => {
    assert.equal(errorCode(parseConvertMessage(hex('02 01 2263'))), ErrorCode.VersionUnsupported);
    assert.equal(errorCode(parseConvertMessage(hex('01 01 1234'))), ErrorCode.BadRequest);
    assert.equal(errorCode(parseConvertMessage(hex('01 00 2263'))), ErrorCode.BadRequest, 'Total Length 0');
    assert.equal(errorCode(parseConvertMessage(hex('01 02 2263 0a 00 0000'))), ErrorCode.BadRequest, 'TLV Length 0');
    assert.equal(errorCode(parseConvertMessage(hex('01 02 2263 0a 05 0050'))), ErrorCode.BadRequest, 'TLV beyond Total Length');
    assert.equal(errorCode(parseConvertMessage(hex('01 03 2263 0a 02 0050 00000000'))), ErrorCode.BadRequest, 'Connect without a whole address');
    assert.equal(errorCode(parseConvertMessage(hex('01 02 2263 63 01 0000'))), ErrorCode.CommandUnsupported, 'unknown TLV');
    assert.equal(parseConvertMessage(hex('01 06 2263 0a 05')).kind, 'incomplete');
    assert.equal(errorCode(parseTcpOptions(hex('0204'))), ErrorCode.BadRequest, 'option overruns');
    assert.equal(errorCode(parseTcpOptions(hex('2201'))), ErrorCode.BadRequest, 'option length 1');
    assert.deepEqual(okValue(parseTcpOptions(hex('0101 0000 2202'))).value, [], 'EOL ends the list');
  });

  it('every error code is answered with one Error TLV carrying the table code; 0 and 97 carry their values', () => {
    for (const code of Object.values(ErrorCode)) {
      const tlvs = assertFramed(refusalBytes('convert', code));
      assert.equal(tlvs.length, 1, code);
      const e = tlvs[0] as { type: string; code: number; value: Buffer };
      assert.equal(e.type, 'error');
      assert.equal(e.code, ERROR_TABLE[code].convert, code);
    }
    const value = (code: ErrorCode): number[] => [...(assertFramed(refusalBytes('convert', code))[0] as { value: Buffer }).value];
    assert.deepEqual(value(ErrorCode.VersionUnsupported), [1]);
    assert.deepEqual(value(ErrorCode.HostUnreachable), [1], 'ICMP host unreachable');
    assert.deepEqual(value(ErrorCode.NetUnreachable), [0], 'ICMP net unreachable');
    assert.equal(ERROR_TABLE[ErrorCode.ConnectRefused].convert, ConvertError.ConnectionReset);
    assert.equal(ERROR_TABLE[ErrorCode.DestDenied].convert, ConvertError.NotAuthorized);
    assert.equal(ERROR_TABLE[ErrorCode.AuthRequired].convert, ConvertError.MissingCookie);
    // A value of the caller's own (the refused option kinds) replaces the default.
    assert.deepEqual((assertFramed(refusalBytes('convert', ErrorCode.TcpOptionUnsupported, undefined, Buffer.of(34, 30)))[0] as { value: Buffer }).value, hex('221e000000'));
  });

  it('Error TLV values per §6.2.8: the message echoed one byte on (Malformed, Unsupported Message), ICMPv6 codes for IPv6 destinations', () => {
    const msg = hex('01 06 2263 0a 05 0050 00000000 00000000 0000ffff 7f000001');
    // Malformed Message (a loopback Connect, §6.2.5; a bad magic; a truncated message) and
    // Unsupported Message echo what was received behind one zero byte, keeping its alignment.
    for (const code of [ErrorCode.BadRequest, ErrorCode.HandshakeTimeout, ErrorCode.CommandUnsupported]) {
      const e = assertFramed(refusalBytes('convert', code, undefined, convertErrorValue(code, { message: msg })))[0] as { value: Buffer };
      assert.deepEqual(e.value, Buffer.concat([Buffer.of(0), msg]), code);
    }
    // ICMP (RFC 792) host unreachable is 1; ICMPv6 (RFC 4443 §3.1) address unreachable is 3.
    assert.deepEqual(convertErrorValue(ErrorCode.HostUnreachable), Buffer.of(1));
    assert.deepEqual(convertErrorValue(ErrorCode.HostUnreachable, { ipv6: true }), Buffer.of(3));
    assert.deepEqual(convertErrorValue(ErrorCode.NetUnreachable, { ipv6: true }), Buffer.of(0));
    assert.deepEqual(convertErrorValue(ErrorCode.VersionUnsupported, { message: msg }), Buffer.of(1));
    // Missing Cookie, Not Authorized, Connection Reset: zero (the padding).
    for (const code of [ErrorCode.AuthRequired, ErrorCode.DestDenied, ErrorCode.ConnectRefused]) assert.equal(convertErrorValue(code, { message: msg }), undefined, code);
  });

  it('Connect TCP options (§7): EOL, NOP, MSS, Window Scale and SACK blocks ignored and never announced; SACK-permitted and Timestamps with their sysctls; MPTCP with upstream MPTCP', () => {
    const sysctl = (values: Record<string, string>) => (name: string): string | null => values[name] ?? null;
    const on = sysctl({ 'net.ipv4.tcp_sack': '1', 'net.ipv4.tcp_timestamps': '1' });
    assert.deepEqual(honouredTcpOptions(false, on), [4, 8]);
    assert.deepEqual(honouredTcpOptions(true, on), [4, 8, 30]);
    assert.deepEqual(honouredTcpOptions(false, sysctl({ 'net.ipv4.tcp_sack': '0', 'net.ipv4.tcp_timestamps': '2' })), [8]);
    assert.deepEqual(refusedTcpOptions([0, 1, 2, 3, 5, 4, 8], [4, 8]), []);
    assert.deepEqual(refusedTcpOptions([2, 34, 4, 30, 34], [8]), [34, 4, 30]);
  });

  it('an echoed message too long for one Error TLV is cut to fit Total Length', () => {
    const m = encodeConvertError(ConvertError.MalformedMessage, Buffer.alloc(5000, 7));
    assert.equal(m.length, MAX_MESSAGE_BYTES);
    assert.equal(okValue(parseConvertMessage(m)).consumed, MAX_MESSAGE_BYTES);
  });

  it('the Extended TCP Header from tcp_info: MSS (+12 with timestamps), window scale, SACK-permitted', () => {
    const info = Buffer.alloc(104);
    info[5] = 1 | 2 | 4; // timestamps, SACK, window scale
    info[6] = 0x97; // rcv_wscale 9 (high nibble), snd_wscale 7
    info.writeUInt32LE(1448, 16);
    assert.deepEqual(optionsFromTcpInfo(info), hex('020405b4 030307 0402'));
    info[5] = 0;
    assert.deepEqual(optionsFromTcpInfo(info), hex('020405a8'));
  });
});

const tlvArb: fc.Arbitrary<ConvertTlv> = fc.oneof(
  fc.constant({ type: 'info' as const }),
  fc
    .tuple(fc.oneof(fc.ipV4(), fc.ipV6()), fc.nat({ max: 65535 }), fc.uint8Array({ maxLength: 40 }))
    .map(([host, port, o]) => ({ type: 'connect' as const, host, port, options: Buffer.from(o.subarray(0, o.length - (o.length % 4))) })),
  fc.uint8Array({ maxLength: 40 }).map((h) => ({ type: 'extended-tcp-header' as const, header: Buffer.from(h.subarray(0, h.length - (h.length % 4))) })),
  fc.array(fc.integer({ min: 1, max: 255 }), { maxLength: 30 }).map((kinds) => ({ type: 'supported-tcp-extensions' as const, kinds })),
  fc.uint8Array({ maxLength: 40 }).map((c) => ({ type: 'cookie' as const, cookie: Buffer.from(c.subarray(0, c.length - (c.length % 4))) })),
  // Code and value fill whole words when the value has 4k+1 bytes.
  fc.tuple(fc.nat({ max: 255 }), fc.uint8Array({ minLength: 1, maxLength: 41 })).map(([code, v]) => ({ type: 'error' as const, code, value: Buffer.from(v.subarray(0, v.length - ((v.length - 1) % 4))) })),
);

/** The host as the parser reports it: dotted quad for IPv4 (and IPv4-mapped), canonical IPv6. */
function normalised(t: ConvertTlv): ConvertTlv {
  if (t.type !== 'connect') return t;
  const r = okValue(parseConvertMessage(encodeConvertMessage([t]))).value[0] as { host: string };
  return { ...t, host: r.host };
}

const CODES = new Set<string>(Object.values(ErrorCode));

describe('Convert codec properties', () => {
  it('arbitrary bytes (and arbitrary bytes behind a valid header) never throw and give a typed result', () => {
    const input = fc.oneof(fc.uint8Array({ maxLength: 300 }), fc.uint8Array({ maxLength: 300 }).map((b) => Buffer.concat([Buffer.of(1, Math.ceil((b.length + 4) / 4), 0x22, 0x63), b])));
    fc.assert(
      fc.property(input, (raw) => {
        const buf = Buffer.from(raw);
        const r = parseConvertMessage(buf);
        if (r.kind === 'ok') assert.ok(r.consumed >= 4 && r.consumed <= buf.length && r.consumed % 4 === 0);
        else if (r.kind === 'error') assert.ok(CODES.has(r.code) && r.detail.length > 0);
        else assert.equal(r.kind, 'incomplete');
        const f = parseConvertFrame(buf);
        if (f.kind === 'ok') assert.equal(decodeConvertTlvs(f.value).kind === 'incomplete', false, 'a whole frame is never incomplete');
      }),
      { numRuns: 3000 },
    );
  });

  it('encode→parse round-trips any list of TLVs; the message is incomplete until its last byte', () => {
    fc.assert(
      fc.property(fc.array(tlvArb, { maxLength: 6 }), (tlvs) => {
        const msg = encodeConvertMessage(tlvs);
        assert.equal(msg.readUInt16BE(2), CONVERT_MAGIC);
        assert.equal(msg[1]! * 4, msg.length);
        assert.deepEqual(assertFramed(msg), tlvs.map(normalised));
      }),
      { numRuns: 500 },
    );
  });

  it('TCP options round-trip', () => {
    const opt = fc.tuple(fc.integer({ min: 2, max: 255 }), fc.uint8Array({ maxLength: 38 })).map(([kind, d]) => ({ kind, data: Buffer.from(d) }));
    fc.assert(
      fc.property(fc.array(opt, { maxLength: 5 }), (opts) => {
        assert.deepEqual(okValue(parseTcpOptions(encodeTcpOptions(opts))).value, opts);
      }),
      { numRuns: 500 },
    );
  });
});
