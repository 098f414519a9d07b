/**
 * Hostile inputs for the live fuzz suite: fast-check generators of raw bytes, HTTP-shaped,
 * SOCKS-shaped and Convert-shaped (RFC 8803) messages (each with cut points and a delay, so the proxy sees them whole and in
 * small pieces), the fixed smuggling vectors, and every SSRF spelling of a local address. The
 * judges decide whether a reply is one the protocol allows.
 */
import fc from 'fast-check';
import { parseConvertMessage } from '../../src/proxy/convert/codec';

export interface FuzzCase {
  kind: string;
  bytes: Buffer;
  /** Cut points: the bytes go out as separate writes split there. */
  cuts: number[];
  delayMs: number;
}

const withDelivery = (kind: string, bytes: fc.Arbitrary<Uint8Array | Buffer>): fc.Arbitrary<FuzzCase> =>
  fc.record({
    bytes: bytes.map((b) => Buffer.from(b)),
    cuts: fc.oneof(fc.constant([] as number[]), fc.array(fc.nat(700), { maxLength: 12 })),
    delayMs: fc.constantFrom(0, 0, 1, 3, 10),
  }).map((c) => ({ kind, ...c }));

export const randomBytesCase = withDelivery('random', fc.uint8Array({ minLength: 1, maxLength: 600 }));

/** Nothing here may name a reachable host: unrouted test-net addresses and .invalid names only. */
const HOSTS = ['192.0.2.7', 'example.invalid', '[2001:db8::7]', '198.51.100.1', 'a'.repeat(300), '', '%00', '[::1', 'host:99999'];
const junk = (max: number): fc.Arbitrary<string> => fc.string({ unit: 'binary', maxLength: max });
const token = fc.stringMatching(/^[A-Za-z0-9!#$%&'*+.^_`|~-]{0,12}$/);
const eol = fc.constantFrom('\r\n', '\r\n', '\r\n', '\n', '\r', '\r\r\n', '');

const httpLike = fc
  .record({
    method: fc.oneof(fc.constantFrom('GET', 'POST', 'CONNECT', 'HEAD', 'PUT', 'OPTIONS', 'PRI', 'G\u0000T', 'get'), token),
    target: fc.oneof(
      fc.constantFrom(...HOSTS).chain((h) => fc.constantFrom(`http://${h}/`, `http://${h}:81/x?y`, `${h}:443`, `https://${h}/`, `ftp://${h}/`)),
      fc.constantFrom('*', '/', '', ' ', 'http://', 'http:///', '//x'),
      junk(40),
    ),
    version: fc.constantFrom('HTTP/1.1', 'HTTP/1.0', 'HTTP/2.0', 'HTTP/1.1 ', 'HTTP/1.10', 'HTTX/1.1', '', 'HTTP/0.9'),
    headers: fc.array(
      fc.tuple(
        fc.oneof(fc.constantFrom('Host', 'Content-Length', 'Transfer-Encoding', 'Connection', 'Proxy-Authorization', 'Expect', 'Upgrade'), token, junk(10)),
        fc.oneof(fc.constantFrom('0', '5', '-1', 'chunked', 'close', '100-continue', 'Basic !!!', '99999999999999999999'), junk(30)),
        fc.constantFrom(': ', ':', ' : ', ':\t'),
        eol,
      ),
      { maxLength: 8 },
    ),
    lineEnd: eol,
    body: junk(80),
  })
  .map((r) => Buffer.from(`${r.method} ${r.target} ${r.version}${r.lineEnd}${r.headers.map(([n, v, sep, e]) => `${n}${sep}${v}${e}`).join('')}${r.lineEnd}${r.body}`, 'latin1'));

export const httpCase = withDelivery('http', httpLike);

const u8 = fc.integer({ min: 0, max: 255 });
const socksLike = fc.oneof(
  // SOCKS5: greeting, then a request with any command and address type, truncated or padded.
  fc
    .record({
      methods: fc.array(u8, { maxLength: 6 }),
      nmethodsLie: fc.option(u8, { nil: undefined }),
      cmd: fc.oneof(fc.constantFrom(1, 2, 3), u8),
      rsv: fc.constantFrom(0, 0, 0, 1),
      atyp: fc.oneof(fc.constantFrom(1, 3, 4), u8),
      addr: fc.uint8Array({ maxLength: 20 }),
      name: fc.constantFrom('example.invalid', '', 'a'.repeat(255), '\u0000', 'x'),
      port: fc.uint8Array({ minLength: 2, maxLength: 2 }),
      auth: fc.option(fc.tuple(fc.constantFrom(1, 0, 5), junk(20), junk(20)), { nil: undefined }),
      truncate: fc.option(fc.nat(60), { nil: undefined }),
      tail: fc.uint8Array({ maxLength: 20 }),
    })
    .map((r) => {
      const greet = Buffer.from([5, r.nmethodsLie ?? r.methods.length, ...r.methods]);
      const auth = r.auth ? Buffer.concat([Buffer.from([r.auth[0], r.auth[1].length]), Buffer.from(r.auth[1], 'latin1'), Buffer.from([r.auth[2].length]), Buffer.from(r.auth[2], 'latin1')]) : Buffer.alloc(0);
      const addr = r.atyp === 3 ? Buffer.concat([Buffer.from([Buffer.byteLength(r.name, 'latin1') & 255]), Buffer.from(r.name, 'latin1')]) : Buffer.from(r.addr);
      const all = Buffer.concat([greet, auth, Buffer.from([5, r.cmd, r.rsv, r.atyp]), addr, Buffer.from(r.port), Buffer.from(r.tail)]);
      return r.truncate === undefined ? all : all.subarray(0, r.truncate);
    }),
  // SOCKS4/4a: command, port, address (0.0.0.x = 4a name follows), user id, name.
  fc
    .record({
      cmd: fc.oneof(fc.constantFrom(1, 2), u8),
      port: fc.uint8Array({ minLength: 2, maxLength: 2 }),
      ip: fc.oneof(fc.constant(Uint8Array.from([0, 0, 0, 1])), fc.uint8Array({ minLength: 4, maxLength: 4 })),
      user: junk(20),
      userNul: fc.boolean(),
      name: fc.constantFrom('example.invalid', '', 'a'.repeat(300)),
      nameNul: fc.boolean(),
      truncate: fc.option(fc.nat(40), { nil: undefined }),
    })
    .map((r) => {
      const parts = [Buffer.from([4, r.cmd]), Buffer.from(r.port), Buffer.from(r.ip), Buffer.from(r.user, 'latin1'), Buffer.from(r.userNul ? [0] : [])];
      if (r.ip[0] === 0 && r.ip[1] === 0 && r.ip[2] === 0) parts.push(Buffer.from(r.name, 'latin1'), Buffer.from(r.nameNul ? [0] : []));
      const all = Buffer.concat(parts);
      return r.truncate === undefined ? all : all.subarray(0, r.truncate);
    }),
);

export const socksCase = withDelivery('socks', socksLike);

/**
 * RFC 8803 messages: version, Total Length and magic right or wrong, TLVs of every type (and
 * unknown ones) with lengths that fit, lie or are zero; Connect TLVs to unrouted test-net,
 * loopback, multicast and unspecified addresses or random bytes; truncated or with data behind.
 */
const convertAddress = fc.oneof(
  fc.constantFrom('00000000000000000000ffffc0000207', '20010db8000000000000000000000007', '00000000000000000000ffff7f000001', '00000000000000000000000000000001', '00000000000000000000ffffe0000001', '00000000000000000000000000000000').map((h) => Buffer.from(h, 'hex')),
  fc.uint8Array({ minLength: 16, maxLength: 16 }).map((b) => Buffer.from(b)),
);
const convertTlv = fc.oneof(
  fc.record({ type: fc.constant(10), port: fc.uint8Array({ minLength: 2, maxLength: 2 }), addr: convertAddress, options: fc.uint8Array({ maxLength: 12 }), lenLie: fc.option(u8, { nil: undefined }) }).map((t) => {
    const body = Buffer.concat([Buffer.from(t.port), t.addr, Buffer.from(t.options)]);
    return Buffer.concat([Buffer.from([t.type, t.lenLie ?? Math.ceil((body.length + 2) / 4)]), body, Buffer.alloc((4 - ((body.length + 2) % 4)) % 4)]);
  }),
  fc.record({ type: fc.oneof(fc.constantFrom(1, 20, 21, 22, 30), u8), body: fc.uint8Array({ maxLength: 30 }), lenLie: fc.option(u8, { nil: undefined }) }).map((t) => {
    const body = Buffer.from(t.body);
    return Buffer.concat([Buffer.from([t.type, t.lenLie ?? Math.ceil((body.length + 2) / 4)]), body, Buffer.alloc((4 - ((body.length + 2) % 4)) % 4)]);
  }),
);
const convertLike = fc
  .record({
    version: fc.constantFrom(1, 1, 1, 0, 2, 255),
    magic: fc.oneof(fc.constant(0x2263), fc.constant(0x2263), fc.integer({ min: 0, max: 0xffff })),
    tlvs: fc.array(convertTlv, { maxLength: 4 }),
    totalLie: fc.option(u8, { nil: undefined }),
    truncate: fc.option(fc.nat(120), { nil: undefined }),
    tail: fc.uint8Array({ maxLength: 20 }),
  })
  .map((r) => {
    const body = Buffer.concat(r.tlvs);
    const all = Buffer.concat([Buffer.from([r.version, r.totalLie ?? Math.min(255, (body.length + 4) / 4), r.magic >> 8, r.magic & 255]), body, Buffer.from(r.tail)]);
    return r.truncate === undefined ? all : all.subarray(0, r.truncate);
  });

export const convertCase = withDelivery('convert', convertLike);

/**
 * A Convert answer to hostile input: nothing, or one Convert message holding one Error TLV (or
 * the Supported TCP Extensions for an Info), then nothing more. An Extended TCP Header means a
 * connection was made, which no generated destination allows.
 */
export function judgeConvert(data: Buffer): string | null {
  if (data.length === 0) return null;
  const r = parseConvertMessage(data);
  if (r.kind !== 'ok') return `reply is not a Convert message: ${data.subarray(0, 16).toString('hex')}`;
  if (r.consumed !== data.length) return `${data.length - r.consumed} bytes after the Convert reply`;
  const types = r.value.map((t) => t.type).join(',');
  if (types === 'extended-tcp-header') return 'Convert success for hostile input';
  if (types !== 'error' && types !== 'supported-tcp-extensions') return `Convert reply with TLVs ${types}`;
  return null;
}

/** What a refusal may look like on each protocol; null = acceptable, else the reason. */
export function judgeHttp(data: Buffer): string | null {
  if (data.length === 0) return null;
  // An interim "100 Continue" (Expect: 100-continue) may precede the final answer.
  const text = data.toString('latin1').replace(/^HTTP\/1\.1 100 [^\r\n]*\r\n\r\n/, '');
  if (text.length === 0) return null;
  const m = /^HTTP\/1\.1 (\d{3}) [^\r\n]*\r\n/.exec(text.slice(0, 200));
  if (!m) return `reply is not an HTTP status line: ${JSON.stringify(data.subarray(0, 60).toString('latin1'))}`;
  const status = Number(m[1]);
  // Nothing generated names a reachable server, so any success is a bug.
  if (status < 400) return `success status ${status} for hostile input`;
  return null;
}

/**
 * SOCKS5 command byte of a no-auth request as sent (greeting [5, n, n methods], then
 * [5, cmd, ...]); null when the bytes do not get that far.
 */
export function socks5Command(bytes: Buffer): number | null {
  if (bytes[0] !== 5 || bytes.length < 2) return null;
  return bytes[2 + bytes[1]! + 1] ?? null;
}

/** `udpAllowed`: the request was a UDP ASSOCIATE, whose success is a legitimate answer. */
export function judgeSocks(data: Buffer, udpAllowed = false): string | null {
  if (data.length === 0) return null;
  if (data[0] === 5) {
    // Method selection [5, m], then maybe an auth status [1, s] or a reply [5, rep, 0, atyp, ...].
    if (data.length < 2) return 'truncated SOCKS5 method selection';
    const rest = data.subarray(2);
    if (rest.length === 0) return null;
    if (rest[0] === 1 && rest.length === 2 && rest[1] !== 0) return null;
    const reply = rest[0] === 1 ? rest.subarray(2) : rest;
    if (reply.length === 0) return null;
    if (reply[0] !== 5 || reply.length < 10 || reply[2] !== 0) return `malformed SOCKS5 reply ${reply.toString('hex')}`;
    if (reply[1] === 0 && !udpAllowed) return `SOCKS5 success for hostile input: ${reply.toString('hex')}`;
    return null;
  }
  if (data[0] === 0) {
    if (data.length !== 8) return `SOCKS4 reply of ${data.length} bytes`;
    if (data[1] === 0x5a) return 'SOCKS4 success for hostile input';
    if (data[1]! < 0x5b || data[1]! > 0x5d) return `SOCKS4 reply code ${data[1]}`;
    return null;
  }
  return `reply is not SOCKS: ${data.subarray(0, 16).toString('hex')}`;
}

/**
 * Request smuggling shapes (RFC 9112 §3, §3.2, §6.1, §6.3, §5.2, §2.2): each must be refused with 400 and
 * the connection closed. {T} is replaced with a reachable target's authority, so a proxy that
 * does not refuse forwards them (and answers 200/404) instead.
 */
export const SMUGGLING: readonly [name: string, request: string][] = [
  ['CL + TE', 'POST http://{T}/echo HTTP/1.1\r\nHost: {T}\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n'],
  ['TE + CL', 'POST http://{T}/echo HTTP/1.1\r\nHost: {T}\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n'],
  ['duplicate CL, different', 'POST http://{T}/echo HTTP/1.1\r\nHost: {T}\r\nContent-Length: 4\r\nContent-Length: 5\r\n\r\nabcde'],
  ['duplicate CL, same', 'POST http://{T}/echo HTTP/1.1\r\nHost: {T}\r\nContent-Length: 4\r\nContent-Length: 4\r\n\r\nabcd'],
  ['CL list', 'POST http://{T}/echo HTTP/1.1\r\nHost: {T}\r\nContent-Length: 4, 4\r\n\r\nabcd'],
  ['CL negative', 'POST http://{T}/echo HTTP/1.1\r\nHost: {T}\r\nContent-Length: -1\r\n\r\n'],
  ['CL plus sign', 'POST http://{T}/echo HTTP/1.1\r\nHost: {T}\r\nContent-Length: +4\r\n\r\nabcd'],
  ['CL hex', 'POST http://{T}/echo HTTP/1.1\r\nHost: {T}\r\nContent-Length: 0x4\r\n\r\nabcd'],
  ['CL exponent', 'POST http://{T}/echo HTTP/1.1\r\nHost: {T}\r\nContent-Length: 4e0\r\n\r\nabcd'],
  ['CL overflow', 'POST http://{T}/echo HTTP/1.1\r\nHost: {T}\r\nContent-Length: 99999999999999999999999\r\n\r\nabcd'],
  ['CL with space inside', 'POST http://{T}/echo HTTP/1.1\r\nHost: {T}\r\nContent-Length: 4 4\r\n\r\nabcd'],
  ['TE not chunked last', 'POST http://{T}/echo HTTP/1.1\r\nHost: {T}\r\nTransfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n'],
  ['TE unknown', 'POST http://{T}/echo HTTP/1.1\r\nHost: {T}\r\nTransfer-Encoding: xchunked\r\n\r\n0\r\n\r\n'],
  ['TE space before colon', 'POST http://{T}/echo HTTP/1.1\r\nHost: {T}\r\nTransfer-Encoding : chunked\r\n\r\n0\r\n\r\n'],
  ['bad chunk size', 'POST http://{T}/echo HTTP/1.1\r\nHost: {T}\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nabcd\r\n0\r\n\r\n'],
  ['negative chunk size', 'POST http://{T}/echo HTTP/1.1\r\nHost: {T}\r\nTransfer-Encoding: chunked\r\n\r\n-4\r\nabcd\r\n0\r\n\r\n'],
  ['chunk size overflow', 'POST http://{T}/echo HTTP/1.1\r\nHost: {T}\r\nTransfer-Encoding: chunked\r\n\r\nfffffffffffffffffffff\r\nabcd\r\n0\r\n\r\n'],
  ['chunk size bare LF', 'POST http://{T}/echo HTTP/1.1\r\nHost: {T}\r\nTransfer-Encoding: chunked\r\n\r\n4\nabcd\r\n0\r\n\r\n'],
  ['chunk data longer than size', 'POST http://{T}/echo HTTP/1.1\r\nHost: {T}\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nabcd\r\n0\r\n\r\n'],
  ['obs-fold', 'GET http://{T}/headers HTTP/1.1\r\nHost: {T}\r\nX-Folded: a\r\n b\r\n\r\n'],
  ['obs-fold tab', 'GET http://{T}/headers HTTP/1.1\r\nHost: {T}\r\nX-Folded: a\r\n\tb\r\n\r\n'],
  ['bare LF line ends', 'GET http://{T}/headers HTTP/1.1\nHost: {T}\n\n'],
  ['bare LF in one header', 'GET http://{T}/headers HTTP/1.1\r\nHost: {T}\nX-A: b\r\n\r\n'],
  ['bare CR', 'GET http://{T}/headers HTTP/1.1\r\nHost: {T}\rX-A: b\r\n\r\n'],
  ['NUL in header value', 'GET http://{T}/headers HTTP/1.1\r\nHost: {T}\r\nX-A: a\u0000b\r\n\r\n'],
  ['space in header name', 'GET http://{T}/headers HTTP/1.1\r\nHost: {T}\r\nX A: b\r\n\r\n'],
  ['Host space before colon', 'GET http://{T}/headers HTTP/1.1\r\nHost : {T}\r\n\r\n'],
  ['Host obs-fold', 'GET http://{T}/headers HTTP/1.1\r\nHost: {T}\r\n {T}\r\n\r\n'],
  ['two Host lines, different', 'GET http://{T}/headers HTTP/1.1\r\nHost: {T}\r\nHost: evil.invalid\r\n\r\n'],
  ['two Host lines, same', 'GET http://{T}/headers HTTP/1.1\r\nHost: {T}\r\nhost: {T}\r\n\r\n'],
  ['Host list', 'GET http://{T}/headers HTTP/1.1\r\nHost: {T}, evil.invalid\r\n\r\n'],
  ['Host with userinfo', 'GET http://{T}/headers HTTP/1.1\r\nHost: u@{T}\r\n\r\n'],
  ['HTTP/0.9 request line', 'GET http://{T}/headers\r\n\r\n'],
  ['HTTP/0.9 request line, then fields', 'GET http://{T}/headers\r\nHost: {T}\r\n\r\n'],
  ['HTTP/2.0 request line', 'GET http://{T}/headers HTTP/2.0\r\nHost: {T}\r\n\r\n'],
  ['two spaces after the method', 'GET  http://{T}/headers HTTP/1.1\r\nHost: {T}\r\n\r\n'],
  ['two spaces before the version', 'GET http://{T}/headers  HTTP/1.1\r\nHost: {T}\r\n\r\n'],
  ['TE in HTTP/1.0', 'POST http://{T}/echo HTTP/1.0\r\nHost: {T}\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n'],
  ['CONNECT with two Host lines', 'CONNECT {T} HTTP/1.1\r\nHost: {T}\r\nHost: evil.invalid:443\r\n\r\n'],
  ['CONNECT with two spaces', 'CONNECT  {T} HTTP/1.1\r\nHost: {T}\r\n\r\n'],
  ['CONNECT HTTP/0.9', 'CONNECT {T}\r\n\r\n'],
];

/** Every spelling of a local or metadata address; {P} is the tripwire port. */
export const SSRF_HOSTS: readonly string[] = [
  '127.0.0.1',
  '127.1',
  '127.0.1',
  '2130706433',
  '0x7f000001',
  '0x7f.0.0.1',
  '0177.0.0.1',
  '0177.1',
  '017700000001',
  '127.255.255.254',
  '0.0.0.0',
  '0',
  '0x0',
  '[::1]',
  '[0:0:0:0:0:0:0:1]',
  '[::]',
  '[::ffff:127.0.0.1]',
  '[::ffff:7f00:1]',
  '[0:0:0:0:0:ffff:127.0.0.1]',
  '169.254.169.254',
  '2852039166',
  '0xa9fea9fe',
  '0251.0376.0251.0376',
  '[::ffff:169.254.169.254]',
  'localhost',
  'LOCALHOST',
];
