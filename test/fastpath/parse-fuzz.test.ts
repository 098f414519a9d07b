/**
 * Differential fuzz of the native fast path's handshake parser against the TS path: the same
 * random, well-formed and mutated inputs go to fastPathParse (native/src/fastpath_parse.cc) and
 * to the TS codecs (src/proxy/socks/codec) and Node's HTTP parser (what the HTTP front end uses).
 * Native may hand anything off; what it keeps must be what TS would do: "connect" only where TS
 * connects to the same address, port and byte count, "need more" only where TS also waits.
 * The seed is printed; FASTPATH_FUZZ_SEED and FASTPATH_FUZZ_CASES repeat or widen a run
 * (scripts/asan-fuzz.sh runs this file against an AddressSanitizer build of the addon).
 */
import assert from 'node:assert/strict';
import http from 'node:http';
import { Duplex } from 'node:stream';
import { describe, it } from 'node:test';
import { ipv6ToBytes, normalizeIpLiteral } from '../../src/core/address';
import { loadFastPathAddon, LISTENER_KIND, type NativeParse } from '../../src/fastpath/addon';
import { parseAuthority } from '../../src/proxy/http/headers';
import { messageRuleBreach } from '../../src/proxy/http/message-rules';
import { parseSocks4Request, Socks4Command } from '../../src/proxy/socks/codec/socks4';
import { parseSocks5Greeting, parseSocks5Request, Socks5Command } from '../../src/proxy/socks/codec/socks5';
import { ATYP } from '../../src/proxy/socks/codec/common';

const load = loadFastPathAddon();
const MAX_HEAD = 16_384; // limits.maxHeaderBytes default / 2, as compileTables passes it
const MAX_LINES = 100;

type TsVerdict = { kind: 'more' } | { kind: 'error' } | { kind: 'other' } | { kind: 'connect'; host: string; port: number; consumed: number };

/** What the SOCKS front end does with these bytes (allowed client, no users). */
function tsSocks(b: Buffer): TsVerdict {
  if (b.length === 0) return { kind: 'more' };
  if (b[0] === 4) {
    const r = parseSocks4Request(b);
    if (r.kind !== 'ok') return { kind: r.kind === 'incomplete' ? 'more' : 'error' };
    const v = r.value;
    if (v.command !== Socks4Command.Connect || v.socks4a || v.port === 0) return { kind: 'other' };
    return { kind: 'connect', host: v.host, port: v.port, consumed: r.consumed };
  }
  if (b[0] !== 5) return { kind: 'error' };
  const g = parseSocks5Greeting(b);
  if (g.kind !== 'ok') return { kind: g.kind === 'incomplete' ? 'more' : 'error' };
  if (!g.value.methods.includes(0)) return { kind: 'error' };
  const r = parseSocks5Request(b.subarray(g.consumed));
  if (r.kind !== 'ok') return { kind: r.kind === 'incomplete' ? 'more' : 'error' };
  const { command, address } = r.value;
  if (command !== Socks5Command.Connect || address.atyp === ATYP.Domain || address.port === 0) return { kind: 'other' };
  return { kind: 'connect', host: address.host, port: address.port, consumed: g.consumed + r.consumed };
}

/** What Node's HTTP server (the HTTP front end's parser) makes of these bytes. */
async function tsHttp(b: Buffer): Promise<TsVerdict> {
  const server = http.createServer({ maxHeaderSize: MAX_HEAD * 2, requireHostHeader: false, insecureHTTPParser: false });
  server.maxHeadersCount = MAX_LINES + 1;
  let verdict: TsVerdict = { kind: 'more' };
  server.on('connect', (req: http.IncomingMessage, _s: unknown, head: Buffer) => {
    const target = parseAuthority(req.url ?? '');
    // The request line's spacing is the one rule checked on raw bytes: native takes single spaces only.
    if (messageRuleBreach(req, undefined)) verdict = { kind: 'error' };
    else if (!target || req.rawHeaders.length / 2 > MAX_LINES) verdict = { kind: 'other' };
    else verdict = { kind: 'connect', host: target.host, port: target.port, consumed: b.length - head.length };
  });
  server.on('request', () => (verdict = { kind: 'other' }));
  server.on('clientError', () => (verdict = { kind: 'error' }));
  const sock = new Duplex({ read() {}, write(_c, _e, cb) { cb(); } });
  server.emit('connection', sock);
  sock.push(b);
  for (let i = 0; i < 3; i++) await new Promise((r) => setImmediate(r));
  sock.destroy();
  return verdict;
}

/**
 * Same address: native reports the dialled address (IPv4-mapped IPv6 unmapped, inet_ntop text),
 * TS normalises the host it was given; IPv6 spellings differ ("001:db8::1"), their bytes do not.
 */
function sameAddress(native: NativeParse, host: string): boolean {
  const ts = normalizeIpLiteral(host);
  const n = normalizeIpLiteral(native.address!);
  if (ts === null || n === null || ts.includes(':') !== n.includes(':')) return false;
  return ts.includes(':') ? ipv6ToBytes(ts).equals(ipv6ToBytes(n)) : ts === n;
}

/** Native's verdict agrees with TS's (throws if not); true when both connect. */
function agree(n: NativeParse, t: TsVerdict, at: string): boolean {
  if (n.verdict === 'more') assert.equal(t.kind, 'more', at);
  if (n.verdict !== 'connect') return false;
  assert.equal(t.kind, 'connect', at);
  if (t.kind !== 'connect') return false;
  assert.equal(n.host, t.host, at);
  assert.equal(n.port, t.port, at);
  assert.equal(n.consumed, t.consumed, at);
  assert.ok(sameAddress(n, t.host), at);
  return true;
}

// xorshift32: reproducible from the printed seed.
function rng(seed: number): () => number {
  let x = seed >>> 0 || 1;
  return () => {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    return (x >>> 0) / 0x100000000;
  };
}

function generators(r: () => number) {
  const int = (n: number): number => Math.floor(r() * n);
  const bytes = (n: number): number[] => Array.from({ length: n }, () => int(256));
  const pick = <T>(xs: readonly T[]): T => xs[int(xs.length)]!;
  const port = (): number[] => pick([[0, 80], [1, 187], [0, 0], [255, 255], bytes(2)]);
  const v4 = (): number[] => pick([[127, 0, 0, 1], [10, 1, 2, 3], [0, 0, 0, 1], [0, 0, 0, 0], bytes(4)]);
  const v6 = (): number[] => pick([[...Array(15).fill(0), 1], [...Array(10).fill(0), 255, 255, ...v4()], [0x20, 1, 0xd, 0xb8, ...bytes(12)], bytes(16)]);
  const socks5 = (): Buffer => {
    const methods = pick([[0], [0, 2], [2], [1, 0, 2], bytes(int(4))]);
    const atyp = pick([1, 4, 3, int(256)]);
    const addr = atyp === 1 ? v4() : atyp === 4 ? v6() : atyp === 3 ? [9, ...Buffer.from('localhost')] : bytes(int(20));
    return Buffer.from([5, methods.length, ...methods, pick([5, 5, 5, 4]), pick([1, 1, 1, 2, 3, int(256)]), int(2) ? 0 : int(256), atyp, ...addr, ...port(), ...(int(3) ? [] : bytes(int(8)))]);
  };
  const socks4 = (): Buffer => {
    const user = pick([[], [...Buffer.from('alice')], bytes(int(300)).map((x) => x || 1)]);
    const tail = pick([[], [...Buffer.from('example.com'), 0], bytes(int(6))]);
    return Buffer.from([4, pick([1, 1, 2, int(256)]), ...port(), ...v4(), ...user, 0, ...tail]);
  };
  const target = (): string =>
    int(2) ? pick(['127.0.0.1:443', '10.9.8.7:80', '[2001:db8::1]:443']) : pick(['[001:db8::1]:443', '[::fff:10.0.0.1]:80', '[::ffff:a001]:22', '127.0.0.1:443', '10.0.0.1:0443', '[::1]:80', '[::ffff:10.0.0.1]:8080', '[::ffff:a00:1]:22', '1.2.3.4:65535', '1.2.3.4:65536', '1.2.3.4:0', '127.1:443', '0x7f.0.0.1:80', '010.0.0.1:80', '256.1.1.1:80', '[1::2::3]:80', 'example.com:443', '1.2.3.4', '[::1]', '1.2.3.4:80:80', '[fe80::1%25lo]:80', '::1:80', '[1.2.3.4]:80', '1.2.3.4.:80', '01.2.3.4:80']);
  const header = (): string =>
    int(4) ? pick(['Host: x', 'User-Agent: curl/8.0', 'Proxy-Connection: Keep-Alive']) : pick(['Host: a b', 'Host: [::1]:80', 'Host: %41:', 'Host: %4', 'Host: [x]', 'Host:  h:1  ', 'Host: h:p','Host: x', 'Host: 1.2.3.4:443', 'User-Agent: curl/8.0', 'Proxy-Connection: Keep-Alive', 'X: a\tb', 'Content-Length: 0', 'Transfer-Encoding: chunked', ' folded', 'Bad Name: x', 'X:', 'X:  spaced  ', 'X: \x01', 'Ünï: x', 'X: ü']);
  const connect = (): Buffer => {
    const lines = Array.from({ length: pick([0, 1, 2, 3, 101]) }, header);
    const version = pick(['HTTP/1.1', 'HTTP/1.1', 'HTTP/1.0', 'HTTP/2.0', 'HTTP/1.10', 'http/1.1']);
    const eol = pick(['\r\n', '\r\n', '\r\n', '\n']);
    const method = pick(['CONNECT', 'CONNECT', 'CONNECT', 'connect', 'GET', 'CONNECT  ']);
    const body = pick(['', '', 'payload', '\x16\x03\x01']);
    return Buffer.from(`${method} ${target()} ${version}${eol}${lines.map((l) => l + eol).join('')}${eol}${body}`, 'latin1');
  };
  const mutate = (b: Buffer): Buffer => {
    const out = [...b];
    for (let k = 0, n = 1 + int(3); k < n && out.length > 0; k++) {
      const at = int(out.length);
      const op = int(4);
      if (op === 0) out[at] = int(256);
      else if (op === 1) out.splice(at, 1);
      else if (op === 2) out.splice(at, 0, int(256));
      else out.length = at;
    }
    return Buffer.from(out);
  };
  return { socks5, socks4, connect, mutate, random: () => Buffer.from([pick([4, 5, 0x43]), ...bytes(int(40))]), int };
}

describe('fast path parser: differential against the TS path', { skip: !load.ok && `addon: ${load.ok ? '' : load.reason}` }, () => {
  const addon = load.ok ? load.addon : null!;
  const seed = Number(process.env.FASTPATH_FUZZ_SEED ?? Date.now() % 0x7fffffff);
  const cases = Number(process.env.FASTPATH_FUZZ_CASES ?? 3000);

  it(`same verdicts on ${cases} SOCKS inputs and their prefixes (seed ${seed})`, () => {
    const g = generators(rng(seed));
    let connects = 0;
    for (let i = 0; i < cases; i++) {
      const whole = i % 4 === 3 ? g.mutate(i % 2 ? g.socks5() : g.socks4()) : i % 8 === 1 ? g.random() : i % 2 ? g.socks5() : g.socks4();
      for (let cut = 0; cut <= whole.length; cut++) {
        const b = whole.subarray(0, cut);
        // The mixed port sends other first bytes to the HTTP front end (the next test).
        const socksByte = b.length === 0 || b[0] === 4 || b[0] === 5;
        for (const kind of socksByte ? [LISTENER_KIND.socks, LISTENER_KIND.mixed] : [LISTENER_KIND.socks]) {
          const n = addon.fastPathParse(b, kind, MAX_HEAD, MAX_LINES);
          const t = tsSocks(b);
          const at = `seed ${seed} case ${i} bytes ${b.toString('hex')}: native ${JSON.stringify(n)} ts ${JSON.stringify(t)}`;
          if (agree(n, t, at) && cut === whole.length) connects++;
        }
      }
    }
    // Native must keep the plain cases, not hand everything off.
    assert.ok(connects > cases / 10, `only ${connects} of ${cases} kept natively`);
  });

  it(`same verdicts on ${Math.ceil(cases / 3)} HTTP CONNECT heads and prefixes (seed ${seed})`, async () => {
    const g = generators(rng(seed ^ 0x5bd1e995));
    let connects = 0;
    const n = Math.ceil(cases / 3);
    for (let i = 0; i < n; i++) {
      const whole = i % 3 === 2 ? g.mutate(g.connect()) : g.connect();
      const cuts = new Set([whole.length, g.int(whole.length + 1), whole.indexOf('\n') + 1, whole.length - 1]);
      for (const cut of cuts) {
        if (cut < 0) continue;
        const b = whole.subarray(0, cut);
        const t = await tsHttp(b);
        const socksByte = b.length > 0 && (b[0] === 4 || b[0] === 5);
        for (const kind of socksByte ? [LISTENER_KIND.http] : [LISTENER_KIND.http, LISTENER_KIND.mixed]) {
          const v = addon.fastPathParse(b, kind, MAX_HEAD, MAX_LINES);
          const at = `seed ${seed} case ${i} bytes ${JSON.stringify(b.toString('latin1'))}: native ${JSON.stringify(v)} ts ${JSON.stringify(t)}`;
          if (agree(v, t, at) && cut === whole.length && kind === LISTENER_KIND.http) connects++;
        }
      }
    }
    assert.ok(connects > n / 50, `only ${connects} of ${n} kept natively`);
  });

  it('keeps the ordinary handshakes of curl and the socks package natively', () => {
    const keep = (bytes: Buffer, kind: number): NativeParse => addon.fastPathParse(bytes, kind, MAX_HEAD, MAX_LINES);
    assert.equal(keep(Buffer.from([5, 1, 0, 5, 1, 0, 1, 10, 0, 0, 1, 0, 80]), LISTENER_KIND.socks).verdict, 'connect');
    assert.equal(keep(Buffer.from([4, 1, 0, 80, 10, 0, 0, 1, 0]), LISTENER_KIND.socks).verdict, 'connect');
    const c = keep(Buffer.from('CONNECT 10.0.0.1:443 HTTP/1.1\r\nHost: 10.0.0.1:443\r\nUser-Agent: curl/7.88.1\r\nProxy-Connection: Keep-Alive\r\n\r\n'), LISTENER_KIND.http);
    assert.deepEqual([c.verdict, c.host, c.port], ['connect', '10.0.0.1', 443]);
    // Names need DNS, auth needs the TS path: handed off at once, not waited on.
    assert.equal(keep(Buffer.from([5, 1, 0, 5, 1, 0, 3, 1, 0x61, 0, 80]), LISTENER_KIND.socks).verdict, 'handoff');
    assert.equal(keep(Buffer.from([5, 1, 2]), LISTENER_KIND.socks).verdict, 'handoff');
    assert.equal(keep(Buffer.from('CONNECT exa'), LISTENER_KIND.http).verdict, 'handoff');
    assert.equal(keep(Buffer.from('GET http://10.0.0.1/ HTTP/1.1\r\n'), LISTENER_KIND.http).verdict, 'handoff');
  });
});
