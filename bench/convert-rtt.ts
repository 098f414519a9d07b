/**
 * Round trips a client waits from its SYN to the first byte of the destination's response,
 * counted from a capture, for the three ways into the proxy: RFC 8803 Convert with the message in
 * the SYN (TCP Fast Open), Convert after the handshake, HTTP CONNECT and SOCKS5 (curl under
 * mptcpize, as a real client does them). Netem is absent here, so path delay cannot be added: the
 * round-trip count is the figure (each costs one client-path RTT on a real network); the time on
 * these veths is printed beside it.
 *
 *   node dist/bench/convert-rtt.js [--repeats N]
 *
 * Needs root (namespaces, tcpdump), python3, curl, mptcpize.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { TcpFlag } from '../src/mptcp/packet';
import { readPcap, type CapturedSegment } from './lib/capture';
import { startLegacyServer } from '../testkit/legacy-server';
import { createTestbed } from '../testkit/testbed';

const PORTS = { connect: 3128, socks5: 1080, convert: 5124 } as const;
/** The legacy server's answer starts so; the proxy's own replies never contain it. */
const MARKER = 'HTTP/1.1 200 OK';

export interface Flights {
  /** Client flights (SYN or data, each after hearing from the proxy) up to the first response byte. */
  roundTrips: number;
  /** Client SYN → the segment carrying the first response byte, ms. */
  ttfbMs: number;
}

/**
 * One client connection's segments (client port `cport` ↔ proxy port `pport`), in capture
 * order: a new round trip starts whenever the client sends a SYN or data after the proxy last
 * sent one. Null when the response never came back in the capture.
 */
export function countFlights(segs: readonly CapturedSegment[], cport: number, pport: number): Flights | null {
  let trips = 0;
  let waiting = false;
  let synNs: number | null = null;
  let back = '';
  for (const s of segs) {
    const up = s.srcPort === cport && s.dstPort === pport;
    const down = s.srcPort === pport && s.dstPort === cport;
    const speaks = s.flags & TcpFlag.SYN || s.payload.length > 0;
    if (!speaks || !(up || down)) continue;
    if (up) {
      synNs ??= s.ns;
      if (!waiting) trips++;
      waiting = true;
    } else {
      waiting = false;
      back += s.payload.toString('latin1');
      if (back.includes(MARKER)) return { roundTrips: trips, ttfbMs: (s.ns - (synNs ?? s.ns)) / 1e6 };
    }
  }
  return null;
}

async function main(): Promise<void> {
  const { values } = parseArgs({ options: { repeats: { type: 'string', default: '3' } } });
  const repeats = Number(values.repeats);
  const tb = await createTestbed({ shapeMbit: 0 });
  try {
    const a = tb.addr;
    // One path only: every segment of a connection crosses the captured interface.
    await tb.exec('client', ['ip', 'mptcp', 'limits', 'set', 'subflows', '0', 'add_addr_accepted', '0']);
    await tb.exec('client', ['sysctl', '-qw', 'net.ipv4.tcp_fastopen=5']);
    await tb.exec('proxy', ['sysctl', '-qw', 'net.ipv4.tcp_fastopen=3']);
    const server = await startLegacyServer(tb);
    const px = await tb.startProxy(['--http', `${a.proxy1}:${PORTS.connect}`, '--socks', `${a.proxy1}:${PORTS.socks5}`, '--convert', `${a.proxy1}:${PORTS.convert}`, '--allow-client', tb.cidr, '--log-format', 'json', '--no-metrics']);
    const request = path.join(tb.tmpDir, 'get.txt');
    fs.writeFileSync(request, `GET /bytes/100 HTTP/1.1\r\nHost: ${server.host}\r\nConnection: close\r\n\r\n`);
    const pcap = path.join(tb.tmpDir, 'rtt.pcap');
    const dump = tb.spawn('client', ['tcpdump', '-U', '-s', '256', '-i', tb.ifaces.client1, '-w', pcap, 'tcp']);
    await new Promise((r) => setTimeout(r, 1000));
    const dest = `${server.host}:${server.httpPort}`;
    const clients: Record<string, string[]> = {
      'convert (in the SYN)': ['python3', 'bench/tools/convert-client.py', `${a.proxy1}:${PORTS.convert}`, dest, '--data-file', request],
      'convert (after the handshake)': ['python3', 'bench/tools/convert-client.py', `${a.proxy1}:${PORTS.convert}`, dest, '--data-file', request, '--no-tfo'],
      'HTTP CONNECT': ['mptcpize', 'run', 'curl', '-s', '-o', '/dev/null', '-p', '-x', `http://${a.proxy1}:${PORTS.connect}`, server.url('/bytes/100')],
      SOCKS5: ['mptcpize', 'run', 'curl', '-s', '-o', '/dev/null', '--socks5', `${a.proxy1}:${PORTS.socks5}`, server.url('/bytes/100')],
    };
    const order: string[] = [];
    for (let i = 0; i < repeats; i++) {
      for (const [name, argv] of Object.entries(clients)) {
        const r = await tb.exec('client', argv, { timeoutMs: 20_000 });
        assert.equal(r.code, 0, `${name}: ${r.stderr}`);
        order.push(name);
      }
    }
    // tcpdump -U writes each packet as it comes, but the kernel hands them over in batches.
    await new Promise((r) => setTimeout(r, 2000));
    dump.kill('SIGINT');
    await new Promise((r) => dump.once('exit', r));
    await px.stop();
    const { segments } = readPcap(fs.readFileSync(pcap));
    // Client connections in the order their SYNs were captured, i.e. the order they ran.
    const conns = segments.filter((s) => s.flags & TcpFlag.SYN && !(s.flags & TcpFlag.ACK) && Object.values(PORTS).includes(s.dstPort as never));
    assert.equal(conns.length, order.length, `captured ${conns.length} client connections (${conns.map((c) => c.dstPort).join(",")}), ran ${order.length}`);
    const results = new Map<string, Flights[]>();
    conns.forEach((syn, i) => {
      const f = countFlights(segments, syn.srcPort, syn.dstPort);
      assert.ok(f, `${order[i]}: no response in the capture`);
      results.set(order[i]!, [...(results.get(order[i]!) ?? []), f]);
    });
    process.stdout.write('| way in | round trips, SYN → first response byte | time on these veths (ms, median) |\n| --- | --- | --- |\n');
    for (const [name, fs_] of results) {
      const trips = [...new Set(fs_.map((f) => f.roundTrips))].join(' / ');
      const ms = fs_.map((f) => f.ttfbMs).sort((x, y) => x - y)[Math.floor(fs_.length / 2)]!;
      process.stdout.write(`| ${name} | ${trips} | ${ms.toFixed(2)} |\n`);
    }
  } finally {
    await tb.destroy();
  }
}

if (require.main === module) {
  main().catch((e: unknown) => {
    process.stderr.write(`convert-rtt: ${(e as Error).stack ?? String(e)}\n`);
    process.exit(1);
  });
}
