/**
 * SOCKS codec: byte vectors for every message and reply, and fast-check properties (arbitrary
 * bytes never throw and give a typed result; encode→parse round-trips; any split of the input
 * gives the same result as the whole).
 */
import assert from 'node:assert/strict';
import net from 'node:net';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { ErrorCode } from '../../src/core/errors';
import type { ParseResult } from '../../src/proxy/socks/codec/common';
import { errorCode, okValue } from '../helpers/parse-result';
import { encodeSocks4Reply, parseSocks4Request } from '../../src/proxy/socks/codec/socks4';
import {
  encodeAuthStatus,
  encodeMethodSelection,
  encodeSocks5Datagram,
  encodeSocks5Reply,
  parseSocks5Auth,
  parseSocks5Datagram,
  parseSocks5Greeting,
  parseSocks5Request,
} from '../../src/proxy/socks/codec/socks5';
import { encodeSocks4Request, encodeSocks5Auth, encodeSocks5Greeting, encodeSocks5Request, parseSocks4Reply, parseSocks5Reply } from './client-codec';

const hex = (s: string): Buffer => Buffer.from(s.replace(/\s+/g, ''), 'hex');
const ascii = (s: string): string => Buffer.from(s, 'latin1').toString('hex');


/** Every proper prefix is incomplete, the whole message parses and consumes exactly itself. */
function assertFramed<T>(parse: (b: Buffer) => ParseResult<T>, msg: Buffer): T {
  for (let k = 0; k < msg.length; k++) assert.equal(parse(msg.subarray(0, k)).kind, 'incomplete', `prefix of ${k} bytes`);
  const r = okValue(parse(msg));
  assert.equal(r.consumed, msg.length);
  return r.value;
}

describe('SOCKS4 codec vectors', () => {
  it('parses CONNECT with a user id and leaves pipelined bytes unconsumed', () => {
    const msg = hex(`04 01 0050 01020304 ${ascii('fred')} 00`);
    assert.deepEqual(assertFramed(parseSocks4Request, msg), { command: 1, port: 80, host: '1.2.3.4', socks4a: false, userId: 'fred' });
    const r = okValue(parseSocks4Request(Buffer.concat([msg, Buffer.from('GET /')])));
    assert.equal(r.consumed, msg.length);
  });
  it('parses BIND with an empty user id', () => {
    assert.deepEqual(assertFramed(parseSocks4Request, hex('04 02 1f90 7f000001 00')), { command: 2, port: 8080, host: '127.0.0.1', socks4a: false, userId: '' });
  });
  it('parses SOCKS4a (0.0.0.x + host name)', () => {
    const msg = hex(`04 01 01bb 000000ff ${ascii('u')} 00 ${ascii('example.com')} 00`);
    assert.deepEqual(assertFramed(parseSocks4Request, msg), { command: 1, port: 443, host: 'example.com', socks4a: true, userId: 'u' });
  });
  it('treats 0.0.0.0 as an address, not 4a', () => {
    assert.equal(okValue(parseSocks4Request(hex('04 01 0050 00000000 00'))).value.host, '0.0.0.0');
  });
  it('refuses bad version, unknown command, oversized and empty fields', () => {
    assert.equal(errorCode(parseSocks4Request(hex('05'))), ErrorCode.VersionUnsupported);
    assert.equal(errorCode(parseSocks4Request(hex('04 03'))), ErrorCode.CommandUnsupported);
    const long = Buffer.alloc(256, 0x61);
    assert.equal(errorCode(parseSocks4Request(Buffer.concat([hex('04 01 0050 01020304'), long]))), ErrorCode.BadRequest);
    assert.equal(okValue(parseSocks4Request(Buffer.concat([hex('04 01 0050 01020304'), long.subarray(1), hex('00')]))).value.userId.length, 255);
    assert.equal(errorCode(parseSocks4Request(hex('04 01 0050 00000001 00 00'))), ErrorCode.BadRequest);
    assert.equal(errorCode(parseSocks4Request(Buffer.concat([hex('04 01 0050 00000001 00'), long]))), ErrorCode.BadRequest);
    assert.equal(errorCode(parseSocks4Request(hex(`04 01 0050 00000001 00 ${ascii('a b')} 00`))), ErrorCode.BadRequest);
  });
  it('encodes requests and replies', () => {
    assert.deepEqual(encodeSocks4Request({ command: 1, port: 80, host: '1.2.3.4', userId: 'fred' }), hex(`04 01 0050 01020304 ${ascii('fred')} 00`));
    assert.deepEqual(encodeSocks4Request({ command: 1, port: 80, host: 'a.b', userId: '' }), hex(`04 01 0050 00000001 00 ${ascii('a.b')} 00`));
    assert.deepEqual(encodeSocks4Reply(0x5a, '10.1.2.3', 1080), hex('00 5a 0438 0a010203'));
    assert.deepEqual(encodeSocks4Reply(0x5b), hex('00 5b 0000 00000000'));
    assert.deepEqual(encodeSocks4Reply(0x5a, '::1', 5), hex('00 5a 0005 00000000'));
    assert.deepEqual(assertFramed(parseSocks4Reply, hex('00 5a 0438 0a010203')), { code: 0x5a, host: '10.1.2.3', port: 1080 });
  });
});

describe('SOCKS5 codec vectors', () => {
  it('greeting and method selection', () => {
    assert.deepEqual(assertFramed(parseSocks5Greeting, hex('05 02 00 02')), { methods: [0, 2] });
    assert.equal(errorCode(parseSocks5Greeting(hex('05 00'))), ErrorCode.BadRequest);
    assert.equal(errorCode(parseSocks5Greeting(hex('04 01 00'))), ErrorCode.VersionUnsupported);
    assert.deepEqual(encodeSocks5Greeting([0, 2]), hex('05 02 00 02'));
    assert.deepEqual(encodeMethodSelection(0x02), hex('05 02'));
    assert.deepEqual(encodeMethodSelection(0xff), hex('05 ff'));
  });
  it('RFC 1929 username/password', () => {
    const msg = hex(`01 04 ${ascii('user')} 06 ${ascii('secret')}`);
    assert.deepEqual(assertFramed(parseSocks5Auth, msg), { user: 'user', password: 'secret' });
    assert.deepEqual(encodeSocks5Auth({ user: 'user', password: 'secret' }), msg);
    assert.deepEqual(assertFramed(parseSocks5Auth, hex(`01 01 ${ascii('u')} 00`)), { user: 'u', password: '' });
    assert.equal(errorCode(parseSocks5Auth(hex('01 00 00'))), ErrorCode.BadRequest);
    assert.equal(errorCode(parseSocks5Auth(hex('05 01'))), ErrorCode.VersionUnsupported);
    assert.deepEqual(encodeAuthStatus(0), hex('01 00'));
    assert.deepEqual(encodeAuthStatus(1), hex('01 01'));
  });
  it('requests with every address type and command', () => {
    assert.deepEqual(assertFramed(parseSocks5Request, hex('05 01 00 01 7f000001 0050')), { command: 1, address: { atyp: 1, host: '127.0.0.1', port: 80 } });
    assert.deepEqual(assertFramed(parseSocks5Request, hex(`05 01 00 03 0b ${ascii('example.com')} 01bb`)), {
      command: 1,
      address: { atyp: 3, host: 'example.com', port: 443 },
    });
    assert.deepEqual(assertFramed(parseSocks5Request, hex('05 03 00 04 20010db8000000000000000000000001 0035')), {
      command: 3,
      address: { atyp: 4, host: '2001:db8::1', port: 53 },
    });
    assert.equal(okValue(parseSocks5Request(hex('05 02 00 01 00000000 0000'))).value.command, 2);
    assert.deepEqual(encodeSocks5Request(1, 'example.com', 443), hex(`05 01 00 03 0b ${ascii('example.com')} 01bb`));
    assert.deepEqual(encodeSocks5Request(3, '::ffff:1.2.3.4', 7), hex('05 03 00 04 00000000000000000000ffff01020304 0007'));
  });
  it('refuses unknown commands (before the address), bad address types and empty names', () => {
    assert.equal(errorCode(parseSocks5Request(hex('05 04'))), ErrorCode.CommandUnsupported);
    assert.equal(errorCode(parseSocks5Request(hex('05 00 00 01 7f000001 0050'))), ErrorCode.CommandUnsupported);
    assert.equal(errorCode(parseSocks5Request(hex('05 01 00 02'))), ErrorCode.AddressTypeUnsupported);
    assert.equal(errorCode(parseSocks5Request(hex('05 01 00 03 00 0050'))), ErrorCode.BadRequest);
    assert.equal(errorCode(parseSocks5Request(hex('05 01 00 03 02 0a00 0050'))), ErrorCode.BadRequest);
    assert.equal(errorCode(parseSocks5Request(hex('04 01 00 01'))), ErrorCode.VersionUnsupported);
  });
  it('replies', () => {
    assert.deepEqual(encodeSocks5Reply(0x00, '127.0.0.1', 1080), hex('05 00 00 01 7f000001 0438'));
    assert.deepEqual(encodeSocks5Reply(0x02), hex('05 02 00 01 00000000 0000'));
    assert.deepEqual(encodeSocks5Reply(0x00, '::1', 1), hex('05 00 00 04 00000000000000000000000000000001 0001'));
    assert.deepEqual(assertFramed(parseSocks5Reply, hex('05 05 00 01 00000000 0000')), { code: 5, address: { atyp: 1, host: '0.0.0.0', port: 0 } });
    assert.throws(() => encodeSocks5Reply(0, 'x'.repeat(256), 1), RangeError);
    assert.throws(() => encodeSocks5Reply(0, '1.2.3.4', 65536), RangeError);
  });
  it('UDP datagram header (RFC 1928 §7)', () => {
    const d = hex(`0000 00 01 7f000001 0035 ${ascii('hi')}`);
    const v = okValue(parseSocks5Datagram(d)).value;
    assert.deepEqual({ ...v, data: v.data.toString() }, { frag: 0, address: { atyp: 1, host: '127.0.0.1', port: 53 }, data: 'hi' });
    assert.deepEqual(encodeSocks5Datagram('127.0.0.1', 53, Buffer.from('hi')), d);
    assert.equal(okValue(parseSocks5Datagram(hex('0000 05 01 7f000001 0035'))).value.frag, 5);
    assert.equal(okValue(parseSocks5Datagram(hex('0000 00 01 7f000001 0035'))).value.data.length, 0);
    assert.equal(errorCode(parseSocks5Datagram(hex('0001 00 01 7f000001 0035'))), ErrorCode.BadRequest);
    assert.equal(parseSocks5Datagram(hex('0000 00 01 7f00')).kind, 'incomplete');
    assert.equal(errorCode(parseSocks5Datagram(hex('0000 00 05 7f000001 0035'))), ErrorCode.AddressTypeUnsupported);
  });
});

// ---- properties ----

const INCREMENTAL = {
  socks4Request: parseSocks4Request,
  socks4Reply: parseSocks4Reply,
  socks5Greeting: parseSocks5Greeting,
  socks5Auth: parseSocks5Auth,
  socks5Request: parseSocks5Request,
  socks5Reply: parseSocks5Reply,
} as const;
const ALL: Record<string, (b: Buffer) => ParseResult<unknown>> = { ...INCREMENTAL, socks5Datagram: parseSocks5Datagram };
const CODES = new Set<string>(Object.values(ErrorCode));

/** Bytes that start like a message of each kind, so the properties reach past the first byte. */
const bytesFor = (lead: number[]): fc.Arbitrary<Buffer> =>
  fc.tuple(fc.constantFrom(...lead), fc.uint8Array({ maxLength: 600 })).map(([b, rest]) => Buffer.concat([Buffer.of(b), rest]));
const port = fc.integer({ min: 0, max: 65535 });
/** Names as raw bytes (latin1), the printable range the codec accepts. */
const name = fc
  .uint8Array({ minLength: 1, maxLength: 255 })
  .map((a) => Buffer.from(a.map((b) => (b <= 0x20 || b === 0x7f ? 0x61 : b))).toString('latin1'));
const host = fc.oneof(fc.ipV4(), fc.ipV6(), name, fc.domain());
const userId = fc.string({ maxLength: 80 }).filter((s) => !s.includes('\0') && Buffer.byteLength(s) <= 255);
/** Valid messages of every kind, so the properties reach the ok paths and the deep errors too. */
const validMessage = fc.oneof(
  fc.tuple(fc.constantFrom(1 as const, 2 as const), fc.oneof(fc.ipV4(), name), port, userId).map(([command, h, p, u]) => encodeSocks4Request({ command, host: h, port: p, userId: u })),
  fc.tuple(fc.nat({ max: 255 }), fc.ipV4(), port).map(([c, h, p]) => encodeSocks4Reply(c, h, p)),
  fc.array(fc.nat({ max: 255 }), { minLength: 1, maxLength: 255 }).map((m) => encodeSocks5Greeting(m)),
  fc.tuple(fc.string({ minLength: 1, maxLength: 40 }), fc.string({ maxLength: 40 })).map(([user, password]) => encodeSocks5Auth({ user, password })),
  fc.tuple(fc.constantFrom(1, 2, 3), host, port).map(([c, h, p]) => encodeSocks5Request(c, h, p)),
  fc.tuple(fc.nat({ max: 255 }), host, port).map(([c, h, p]) => encodeSocks5Reply(c, h, p)),
);
/** A valid message, maybe with one byte changed, maybe cut short, with random bytes after it. */
const nearlyValid = fc
  .tuple(validMessage, fc.option(fc.tuple(fc.nat(), fc.nat({ max: 255 }))), fc.option(fc.nat()), fc.uint8Array({ maxLength: 32 }))
  .map(([msg, flip, cut, tail]) => {
    const m = Buffer.from(msg);
    if (flip) m[flip[0] % m.length] = flip[1];
    return Buffer.concat([cut === null ? m : m.subarray(0, cut % (m.length + 1)), tail]);
  });
const anyBytes = fc.oneof(fc.uint8Array({ maxLength: 600 }).map((a) => Buffer.from(a)), bytesFor([0, 1, 4, 5]), nearlyValid);

/** Feed `whole` in chunks cut at `cuts`, parsing after each, as the server's reader does. */
function incremental<T>(parse: (b: Buffer) => ParseResult<T>, whole: Buffer, cuts: number[]): ParseResult<T> {
  const points = [...new Set(cuts.map((c) => c % (whole.length + 1)))].sort((a, b) => a - b);
  for (const p of [...points, whole.length]) {
    const r = parse(whole.subarray(0, p));
    if (r.kind !== 'incomplete') return r;
  }
  return { kind: 'incomplete' };
}

describe('SOCKS codec properties', () => {
  it('arbitrary bytes never throw and always give a typed result', () => {
    fc.assert(
      fc.property(anyBytes, (buf) => {
        for (const [name, parse] of Object.entries(ALL)) {
          const r = parse(buf);
          if (r.kind === 'ok') assert.ok(r.consumed > 0 && r.consumed <= buf.length, `${name} consumed ${r.consumed} of ${buf.length}`);
          else if (r.kind === 'error') assert.ok(CODES.has(r.code) && r.detail.length > 0, `${name} gave ${JSON.stringify(r)}`);
          else assert.equal(r.kind, 'incomplete', name);
        }
      }),
      { numRuns: 2000 },
    );
  });

  it('any split of arbitrary bytes gives the same result as the whole', () => {
    fc.assert(
      fc.property(anyBytes, fc.array(fc.nat(), { maxLength: 8 }), (buf, cuts) => {
        for (const [name, parse] of Object.entries(INCREMENTAL)) {
          assert.deepEqual(incremental(parse as (b: Buffer) => ParseResult<unknown>, buf, cuts), parse(buf), name);
        }
      }),
      { numRuns: 2000 },
    );
  });

  /** What the parser reports for a host: IP literals in canonical form. */
  it('at every byte boundary: incomplete until the decision, then the same result as the whole', () => {
    fc.assert(
      fc.property(nearlyValid, (buf) => {
        for (const [name, parse] of Object.entries(INCREMENTAL) as [string, (b: Buffer) => ParseResult<unknown>][]) {
          const whole = parse(buf);
          let decided = false;
          for (let k = 0; k <= buf.length; k++) {
            const r = parse(buf.subarray(0, k));
            if (r.kind === 'incomplete') assert.ok(!decided, `${name}: incomplete again at ${k} after a decision`);
            else {
              assert.deepEqual(r, whole, `${name}: prefix of ${k} bytes decided differently from the whole`);
              decided = true;
            }
          }
        }
      }),
      { numRuns: 300 },
    );
  });

  const canonical = (h: string): string => (net.isIPv6(h) ? new net.SocketAddress({ address: h, family: 'ipv6' }).address : h);

  it('SOCKS5 request, reply and datagram round-trip, and every split of them parses the same', () => {
    fc.assert(
      fc.property(fc.constantFrom(1, 2, 3), host, port, fc.uint8Array({ maxLength: 64 }), fc.nat({ max: 255 }), (cmd, h, p, data, frag) => {
        const req = assertFramed(parseSocks5Request, encodeSocks5Request(cmd, h, p));
        assert.deepEqual([req.command, req.address.host, req.address.port], [cmd, canonical(h), p]);
        assert.equal(req.address.atyp, net.isIPv4(h) ? 1 : net.isIPv6(h) ? 4 : 3);
        const rep = assertFramed(parseSocks5Reply, encodeSocks5Reply(frag, h, p));
        assert.deepEqual([rep.code, rep.address.host, rep.address.port], [frag, canonical(h), p]);
        const dg = okValue(parseSocks5Datagram(encodeSocks5Datagram(h, p, Buffer.from(data), frag))).value;
        assert.deepEqual([dg.frag, dg.address.host, dg.address.port, [...dg.data]], [frag, canonical(h), p, [...data]]);
      }),
      { numRuns: 1000 },
    );
  });

  it('SOCKS5 greeting and RFC 1929 credentials round-trip', () => {
    const text = (min: number) => fc.string({ unit: 'grapheme', minLength: min, maxLength: 60 }).filter((s) => Buffer.byteLength(s) <= 255 && Buffer.byteLength(s) >= min);
    fc.assert(
      fc.property(fc.array(fc.nat({ max: 255 }), { minLength: 1, maxLength: 255 }), text(1), text(0), (methods, user, password) => {
        assert.deepEqual(assertFramed(parseSocks5Greeting, encodeSocks5Greeting(methods)).methods, methods);
        assert.deepEqual(assertFramed(parseSocks5Auth, encodeSocks5Auth({ user, password })), { user, password });
      }),
      { numRuns: 500 },
    );
  });

  it('SOCKS4/4a request and reply round-trip', () => {
    fc.assert(
      fc.property(fc.constantFrom(1 as const, 2 as const), fc.oneof(fc.ipV4(), name), port, userId, (command, h, p, u) => {
        const v = assertFramed(parseSocks4Request, encodeSocks4Request({ command, host: h, port: p, userId: u }));
        // 0.0.0.x (x≠0) cannot be sent as an address: it goes as a 4a name.
        const socks4a = !net.isIPv4(h) || /^0\.0\.0\.[1-9]/.test(h);
        assert.deepEqual(v, { command, host: h, port: p, userId: u, socks4a });
      }),
      { numRuns: 1000 },
    );
    fc.assert(
      fc.property(fc.nat({ max: 255 }), fc.ipV4(), port, (code, h, p) => {
        assert.deepEqual(assertFramed(parseSocks4Reply, encodeSocks4Reply(code, h, p)), { code, host: h, port: p });
      }),
    );
  });
});
