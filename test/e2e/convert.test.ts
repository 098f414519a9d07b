/**
 * The RFC 8803 Transport Converter end to end: a real MPTCP client (bench/tools/convert-client.py,
 * python's socket module) puts its Convert message in the SYN with TCP Fast Open, the proxy dials
 * the legacy server over IPv4 or IPv6 and relays. Checked: the message rode in the SYN (the proxy
 * namespace's TcpExtTCPFastOpenPassive counter), 1 MB echoed byte-identical, a message after the
 * handshake, v4-mapped and IPv6 destinations, Info, cookies, every refusal with its RFC error code
 * and nothing reaching the origin (the server namespace's TcpPassiveOpens), the proxy serving on
 * after each bad input, 100 concurrent converts; upstream, the client's bytes behind the Connect
 * ride in the proxy's SYN to an origin with TCP Fast Open (the server namespace's
 * TcpExtTCPFastOpenPassive) and follow the handshake to one without.
 */
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { firstLine, useTestbed, type ProxyHandle, type ProxyLogLine } from '../../testkit/testbed';
import { metricValue } from '../../testkit/metrics';
import { startLegacyServer, type LegacyServer } from '../../testkit/legacy-server';

const PORT = 5124;
const COOKIE_PORT = 5125;
const COOKIE = '0badc0de55';
const CLIENT = 'bench/tools/convert-client.py';
/**
 * How long a condition may take on a loaded machine (a shared 2-core box runs at load 5-20):
 * every wait below is for a condition, so a generous bound costs nothing when things are quick.
 */
const PATIENCE_MS = 60_000;

interface Summary {
  reply: ({ type: string; code?: number; value?: string; kinds?: number[]; header?: string } | null)[] | null;
  received: number;
  sha256: string;
  mptcp: boolean;
  error: string | null;
}

describe('convert (RFC 8803) listener', { timeout: 180_000 }, () => {
  const tb = useTestbed({ before, after }, { shapeMbit: 0 });
  let px: ProxyHandle;
  let v4: LegacyServer;
  let v6Echo: { host: string; port: number };
  /** An echo server with TCP Fast Open on its listener, on the v6 address (its own cookie cache entry). */
  let tfoEcho: { host: string; port: number };
  /** Prefixes the proxy namespace routes as unreachable: connects fail at once with EHOSTUNREACH. */
  let unreachable: { v4: string; v6: string };
  let dataFile: string;
  let dataSha: string;

  /** Run the client in the client namespace; its stdout is one JSON summary. */
  async function convert(args: string[], converterPort = PORT): Promise<Summary> {
    const r = await tb().exec('client', ['python3', CLIENT, `${tb().addr.proxy1}:${converterPort}`, ...args, '--summary'], { timeoutMs: PATIENCE_MS });
    assert.ok(r.stdout.trim(), `no summary from the client (exit ${r.code}): ${r.stderr}`);
    return JSON.parse(r.stdout) as Summary;
  }

  const counter = async (ns: 'proxy' | 'server', name: string): Promise<number> => {
    const r = await tb().exec(ns, ['nstat', '-asz', name]);
    const m = new RegExp(`^${name}\\s+(\\d+)`, 'm').exec(r.stdout);
    assert.ok(m, `no ${name} in nstat output: ${r.stdout}${r.stderr}`);
    return Number(m[1]);
  };

  const echoDest = (): string => `${v4.host}:${v4.echoPort}`;

  /** A small convert through the proxy still works (the proxy keeps serving). */
  async function assertServing(): Promise<void> {
    const r = await convert([echoDest(), '--data-file', dataFile.replace('.bin', '-small.bin')]);
    assert.deepEqual(r.reply?.map((t) => t?.type), ['extended-tcp-header'], `after a bad input: ${JSON.stringify(r)}`);
    assert.equal(r.received, 4096);
  }

  before(async () => {
    const t = tb();
    // Client: TFO client side with data in the SYN even without a cookie (0x1 | 0x4).
    // Proxy: TFO server side (0x2); the listener's own socket options waive the cookie.
    await t.exec('client', ['sysctl', '-qw', 'net.ipv4.tcp_fastopen=5']);
    // Proxy: also the client side (0x1) toward origins, with cookies (Linux's default).
    await t.exec('proxy', ['sysctl', '-qw', 'net.ipv4.tcp_fastopen=3']);
    // Origins: TFO only on listeners that ask for it (the python echo below, not the Node ones).
    await t.exec('server', ['sysctl', '-qw', 'net.ipv4.tcp_fastopen=3']);
    // IPv6 on the legacy side only: the destinations are v6, the client path stays v4.
    const [, o] = t.addr.server.split('.');
    const v6 = { proxy: `fd00:${o}::1`, server: `fd00:${o}::2` };
    await t.exec('proxy', ['ip', '-6', 'addr', 'add', `${v6.proxy}/64`, 'dev', t.ifaces.proxyServerSide, 'nodad']);
    await t.exec('server', ['ip', '-6', 'addr', 'add', `${v6.server}/64`, 'dev', t.ifaces.server, 'nodad']);
    v4 = await startLegacyServer(t);
    const v6Proc = t.spawnNode('server', 'dist/testkit/legacy-server.js', [v6.server]);
    v6Echo = { host: v6.server, port: (JSON.parse(await firstLine(v6Proc, PATIENCE_MS)) as { echo: number }).echo };
    const tfoProc = t.spawn('server', ['python3', '-c', TFO_ECHO, v6.server]);
    tfoEcho = { host: v6.server, port: Number(await firstLine(tfoProc, PATIENCE_MS)) };
    unreachable = { v4: '198.51.100.0/24', v6: `fd00:${o}:1::/64` };
    await t.exec('proxy', ['ip', 'route', 'add', 'unreachable', unreachable.v4]);
    await t.exec('proxy', ['ip', '-6', 'route', 'add', 'unreachable', unreachable.v6]);

    const data = randomBytes(1 << 20);
    dataFile = path.join(t.tmpDir, 'convert-data.bin');
    writeFileSync(dataFile, data);
    writeFileSync(dataFile.replace('.bin', '-small.bin'), data.subarray(0, 4096));
    dataSha = createHash('sha256').update(data).digest('hex');

    const config = path.join(t.tmpDir, 'convert.yaml');
    writeFileSync(
      config,
      [
        'listeners:',
        `  - { name: conv, protocol: convert, listen: "${t.addr.proxy1}" }`,
        `  - { name: conv-cookie, protocol: convert, listen: "${t.addr.proxy1}:${COOKIE_PORT}", cookies: ["${COOKIE}"] }`,
        'access:',
        `  allowClients: ["${t.cidr}"]`,
        // The handshake deadline is a refusal case below; short enough to wait for, long enough
        // that a proxy descheduled for a moment does not find it expired before the SYN's data.
        'timeouts: { handshakeMs: 5000 }',
        'log: { format: json }',
      ].join('\n'),
    );
    px = await t.startProxy(['--config', config], { waitReady: false });
    // Start-up under a loaded machine takes seconds: wait on the log lines, generously.
    await px.waitForLog((l) => l.message === 'listening' && l.listener === 'conv' && l.address === `${t.addr.proxy1}:${PORT}` && l.mptcp === true, PATIENCE_MS);
    await px.waitForLog((l) => l.message === 'listening' && l.listener === 'conv-cookie', PATIENCE_MS);
  });

  after(async () => {
    await px?.stop();
  });

  test('the Connect rides in the MPTCP SYN, 1 MB comes back byte-identical, the reply precedes the data', async () => {
    const before = await counter('proxy', 'TcpExtTCPFastOpenPassive');
    const r = await convert([echoDest(), '--data-file', dataFile]);
    const afterCount = await counter('proxy', 'TcpExtTCPFastOpenPassive');
    assert.equal(r.error, null);
    assert.equal(r.mptcp, true, 'the client connection is not MPTCP');
    assert.equal(afterCount - before, 1, 'the proxy namespace took no data in a SYN');
    assert.equal(r.reply?.length, 1);
    const ext = r.reply![0]!;
    assert.equal(ext.type, 'extended-tcp-header');
    // First option: the destination's MSS (kind 2, length 4).
    assert.match(ext.header!, /^0204[0-9a-f]{4}/);
    assert.equal(r.received, 1 << 20);
    assert.equal(r.sha256, dataSha);
    const line = await px.waitForLog((l) => l.message === 'connection' && l.listener === 'conv' && l.destination === echoDest(), PATIENCE_MS);
    assert.equal(line.protocol, 'convert');
    assert.equal(line.result, 'ok');
    assert.equal(line.mptcp, true);
  });

  test('a Convert message after the handshake (a client without TFO) is served the same', async () => {
    const r = await convert([echoDest(), '--data-file', dataFile.replace('.bin', '-small.bin'), '--no-tfo']);
    assert.deepEqual(r.reply?.map((t) => t?.type), ['extended-tcp-header']);
    assert.equal(r.received, 4096);
    assert.equal(r.mptcp, true);
  });

  test('IPv6 and IPv4-mapped destinations', async () => {
    const six = await convert([`[${v6Echo.host}]:${v6Echo.port}`, '--data-file', dataFile]);
    assert.equal(six.sha256, dataSha);
    const l6 = await px.waitForLog((l) => l.message === 'connection' && String(l.destination).includes(v6Echo.host), PATIENCE_MS);
    assert.equal(l6.upstream, v6Echo.host);
    // The client spells the IPv4 address as ::ffff:a.b.c.d itself.
    const mapped = await convert([`[::ffff:${v4.host}]:${v4.echoPort}`, '--data-file', dataFile.replace('.bin', '-small.bin')]);
    assert.equal(mapped.received, 4096);
  });

  test('Info is answered with the Supported TCP Extensions: SACK-permitted and Timestamps, never MSS or Window Scale (RFC 8803 §7.1, §7.2)', async () => {
    const r = await convert(['--info']);
    assert.deepEqual(r.reply, [{ type: 'supported-tcp-extensions', kinds: [4, 8] }]);
  });

  test('Connect TCP options: MSS and Window Scale are ignored (§7.1, §7.2), SACK-permitted honoured while net.ipv4.tcp_sack is on, refused (33) when off', async () => {
    const small = dataFile.replace('.bin', '-small.bin');
    const ok = await convert(['--raw', connectWithOptions(echoDest(), '020405b4 030307 0402 000000'), '--data-file', small]);
    assert.deepEqual(ok.reply?.map((t) => t?.type), ['extended-tcp-header'], JSON.stringify(ok));
    assert.equal(ok.received, 4096);
    await tb().exec('proxy', ['sysctl', '-qw', 'net.ipv4.tcp_sack=0']);
    try {
      const opens = await counter('server', 'TcpPassiveOpens');
      const info = await convert(['--info']);
      assert.deepEqual(info.reply, [{ type: 'supported-tcp-extensions', kinds: [8] }]);
      const refused = await convert(['--raw', connectWithOptions(echoDest(), '0402 0000')]);
      assert.deepEqual(refused.reply, [{ type: 'error', code: 33, value: '04' }]);
      assert.equal(await counter('server', 'TcpPassiveOpens'), opens, 'a connection reached the origin');
    } finally {
      await tb().exec('proxy', ['sysctl', '-qw', 'net.ipv4.tcp_sack=1']);
    }
  });

  test("upstream TCP Fast Open: the client's bytes behind the Connect ride in the proxy's SYN to an origin with TFO, and follow the handshake to one without", async () => {
    const small = dataFile.replace('.bin', '-small.bin');
    const tfoDest = `[${tfoEcho.host}]:${tfoEcho.port}`;
    // The first connection to an origin fetches its cookie (RFC 7413); its data follows the handshake.
    const first = await convert([tfoDest, '--data-file', small]);
    assert.equal(first.received, 4096, JSON.stringify(first));
    const before = await counter('server', 'TcpExtTCPFastOpenPassive');
    const r = await convert([tfoDest, '--data-file', small]);
    assert.deepEqual(r.reply?.map((t) => t?.type), ['extended-tcp-header']);
    assert.equal(r.received, 4096);
    assert.equal(await counter('server', 'TcpExtTCPFastOpenPassive') - before, 1, 'the origin took no data in the SYN');
    // The legacy Node origin has no TFO on its listener: the same bytes arrive after its handshake.
    const plainBefore = await counter('server', 'TcpExtTCPFastOpenPassive');
    const plain = await convert([echoDest(), '--data-file', small]);
    assert.equal(plain.received, 4096);
    assert.equal(await counter('server', 'TcpExtTCPFastOpenPassive'), plainBefore);
  });

  test('cookies: the right one passes, none is Missing Cookie (3), a wrong one Not Authorized (32)', async () => {
    const ok = await convert([echoDest(), '--cookie', COOKIE, '--data-file', dataFile.replace('.bin', '-small.bin')], COOKIE_PORT);
    assert.equal(ok.received, 4096);
    const missing = await convert([echoDest()], COOKIE_PORT);
    assert.deepEqual(missing.reply, [{ type: 'error', code: 3, value: '00' }]);
    const wrong = await convert([echoDest(), '--cookie', 'deadbeef'], COOKIE_PORT);
    assert.deepEqual(wrong.reply, [{ type: 'error', code: 32, value: '00' }]);
  });

  // [what, client args, expected Error TLV code, expected value (hex, before padding) or null = any, stable proxy code]
  const hdr = (words: number): string => `01${words.toString(16).padStart(2, '0')}2263`;
  const cases: [string, (t: { dest: string; closed: string }) => string[], number, string | null, string][] = [
    ['closed port', (t) => [t.closed], 96, '', 'MPX_CONNECT_REFUSED'],
    ['denied destination (link-local)', () => ['169.254.1.1:80'], 32, '', 'MPX_DEST_DENIED'],
    // Malformed Message echoes what was received one byte on (§6.2.8).
    ['loopback destination (§6.2.5)', () => ['127.0.0.1:80'], 1, `00${connectWithOptions('127.0.0.1:80', '')}`, 'MPX_BAD_REQUEST'],
    ['multicast destination', () => ['224.0.0.1:80'], 1, `00${connectWithOptions('224.0.0.1:80', '')}`, 'MPX_BAD_REQUEST'],
    ['unreachable IPv4 destination: 97 with ICMP host unreachable (1)', () => ['198.51.100.1:80'], 97, '01', 'MPX_HOST_UNREACHABLE'],
    ['unreachable IPv6 destination: 97 with ICMPv6 address unreachable (3)', () => [`[${unreachable.v6.replace('::/64', '::1')}]:80`], 97, '03', 'MPX_HOST_UNREACHABLE'],
    ['unsupported version', () => ['--raw', '02012263'], 0, '01', 'MPX_VERSION_UNSUPPORTED'],
    ['wrong magic number', () => ['--raw', '01011234'], 1, '0001011234', 'MPX_BAD_REQUEST'],
    ['zero Total Length', () => ['--raw', '01002263'], 1, '0001002263', 'MPX_BAD_REQUEST'],
    ['zero TLV Length', () => ['--raw', `${hdr(2)}0a000000`], 1, `00${hdr(2)}0a000000`, 'MPX_BAD_REQUEST'],
    ['oversized TLV Length', () => ['--raw', `${hdr(2)}0aff0000`], 1, `00${hdr(2)}0aff0000`, 'MPX_BAD_REQUEST'],
    ['Connect TLV too short for an address', () => ['--raw', `${hdr(3)}0a020050 00000000`], 1, null, 'MPX_BAD_REQUEST'],
    ['truncated message (client closes)', () => ['--raw', `${hdr(6)}0a050050`], 1, `00${hdr(6)}0a050050`, 'MPX_BAD_REQUEST'],
    ['truncated message (client waits): the handshake deadline', () => ['--raw', `${hdr(6)}0a050050`, '--keep-open'], 1, `00${hdr(6)}0a050050`, 'MPX_HANDSHAKE_TIMEOUT'],
    ['unknown TLV type', () => ['--raw', `${hdr(2)}63010000`], 2, `00${hdr(2)}63010000`, 'MPX_COMMAND_UNSUPPORTED'],
    ['unsupported TCP option (TFO, kind 34)', (t) => ['--raw', connectWithOptions(t.dest, '22020000')], 33, '22', 'MPX_TCP_OPTION_UNSUPPORTED'],
    ['unsupported TCP options listed once each (MPTCP without upstream MPTCP, UTO; MSS ignored)', (t) => ['--raw', connectWithOptions(t.dest, '1e040100 1c048001 1e040100 02040578')], 33, '1e1c', 'MPX_TCP_OPTION_UNSUPPORTED'],
  ];

  for (const [what, args, code, value, mpx] of cases) {
    test(`refusal: ${what} → Error TLV ${code}, nothing reaches the origin, the proxy serves on`, async () => {
      const opens = await counter('server', 'TcpPassiveOpens');
      const r = await convert(args({ dest: echoDest(), closed: `${v4.host}:1` }));
      assert.equal(r.reply?.length, 1, JSON.stringify(r));
      const e = r.reply![0]!;
      assert.equal(e.type, 'error');
      assert.equal(e.code, code);
      // The value is padded with zeros to a word boundary.
      if (value !== null) assert.equal(e.value!.replace(/(00)+$/, ''), value.replace(/\s/g, '').replace(/(00)+$/, ''));
      assert.equal(r.received, 0, 'bytes after the Error TLV');
      assert.equal(await counter('server', 'TcpPassiveOpens'), opens, 'a connection reached the origin');
      // Limit codes (the handshake deadline) are logged as 'limit hit', once per client and code.
      const line = await px.waitForLog((l: ProxyLogLine) => l.code === mpx && l.listener === 'conv' && ((l.message === 'refused' && l.protocol === 'convert') || l.message === 'limit hit'), PATIENCE_MS);
      px.logs.splice(px.logs.indexOf(line), 1);
      await assertServing();
    });
  }

  test('/connections shows a live convert connection with its subflows (one per client path); metrics count by listener and code', async () => {
    const held = tb().spawn('client', ['python3', CLIENT, `${tb().addr.proxy1}:${PORT}`, echoDest(), '--summary', '--keep-open']);
    try {
      type Live = { protocol: string; listener: string; mptcp: boolean; destination: string; subflows: unknown[] };
      let live: Live | undefined;
      // Until the connection shows with both subflows (the join follows the handshake).
      for (const deadline = Date.now() + PATIENCE_MS; !(live && live.subflows.length >= 2) && Date.now() < deadline; ) {
        await new Promise((r) => setTimeout(r, 100));
        const body = await tb().exec('proxy', ['curl', '-sS', '--noproxy', '*', 'http://127.0.0.1:9464/connections']);
        live = (JSON.parse(body.stdout) as { connections: Live[] }).connections.find((c) => c.protocol === 'convert') ?? live;
      }
      assert.ok(live, 'no convert connection in /connections');
      assert.deepEqual([live.listener, live.mptcp, live.destination], ['conv', true, echoDest()]);
      assert.equal(live.subflows.length, 2, `subflows: ${JSON.stringify(live.subflows)}`);
    } finally {
      held.kill('SIGKILL');
    }
    await convert(['--raw', connectWithOptions(echoDest(), '22020000')]);
    const metrics = (await tb().exec('proxy', ['curl', '-sS', '--noproxy', '*', 'http://127.0.0.1:9464/metrics'])).stdout;
    assert.ok(metricValue(metrics, 'mptcp_proxy_connections_total', 'listener="conv"', 'mptcp="true"', 'result="ok"') >= 1, 'finished convert connections by listener');
    assert.ok(metricValue(metrics, 'mptcp_proxy_errors_total', 'code="MPX_TCP_OPTION_UNSUPPORTED"') >= 1, 'the Convert-only code is counted');
  });

  test('100 concurrent converts', async () => {
    // One client process holding 100 converts in flight at once (100 python processes would
    // measure the machine's load instead): each checked for its reply and its echoed ID line.
    const r = await tb().exec('client', ['python3', CLIENT, `${tb().addr.proxy1}:${PORT}`, echoDest(), '--burst', '100', '--rate', '1000000'], { timeoutMs: PATIENCE_MS + 30_000 });
    const tally = JSON.parse(r.stdout) as { ok: number; errors: number; firstError: string | null };
    assert.deepEqual(tally, { ok: 100, errors: 0, firstError: null }, r.stderr);
  });
});

/** A TCP echo server with TFO on its listener (RFC 7413 server side): prints its port, echoes. */
const TFO_ECHO = `
import socket, sys, threading
s = socket.socket(socket.AF_INET6 if ':' in sys.argv[1] else socket.AF_INET)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.setsockopt(socket.IPPROTO_TCP, socket.TCP_FASTOPEN, 64)
s.bind((sys.argv[1], 0))
s.listen(128)
print(s.getsockname()[1], flush=True)
def echo(c):
    with c:
        while d := c.recv(65536):
            c.sendall(d)
while True:
    threading.Thread(target=echo, args=(s.accept()[0],), daemon=True).start()
`;

/** A whole Convert message: header and a Connect TLV to `dest` (IPv4) with raw TCP options (hex, spaces allowed). */
function connectWithOptions(dest: string, optionsHex: string): string {
  const [host, port] = dest.split(':');
  const opts = Buffer.from(optionsHex.replace(/\s/g, ''), 'hex');
  const tlv = Buffer.alloc(20 + opts.length);
  tlv[0] = 10;
  tlv[1] = tlv.length / 4;
  tlv.writeUInt16BE(Number(port), 2);
  tlv.writeUInt16BE(0xffff, 14);
  host!.split('.').forEach((o, i) => (tlv[16 + i] = Number(o)));
  opts.copy(tlv, 20);
  return Buffer.concat([Buffer.of(1, 1 + tlv.length / 4, 0x22, 0x63), tlv]).toString('hex');
}
