import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { tokenHex } from '../../src/core/subflow-id';
import { mptcpToken } from '../../src/mptcp/options';
import { LinkType, newTcpPacket, parseFrame } from '../../src/mptcp/packet';
import type { SniffEvent } from '../../src/sniffer/events';
import { MptcpTracker } from '../../src/sniffer/tracker';
import { F, Subflow, dssAck, tcp } from './conv';

const CLIENT_KEY = 0x1111222233334444n;
const SERVER_KEY = 0x5555666677778888n;
const CONN = tokenHex(mptcpToken(SERVER_KEY));

function setup(): { events: SniffEvent[]; feed: (ip: Buffer, iface?: string, link?: number) => void; tracker: MptcpTracker } {
  const events: SniffEvent[] = [];
  const tracker = new MptcpTracker((e) => events.push(e));
  let t = 1_000;
  const feed = (ip: Buffer, iface = 'eth0', link: number = LinkType.Raw): void => tracker.process(tcp(ip, link), iface, (t += 10));
  return { events, feed, tracker };
}

const mpc = (extra: { senderKey?: bigint; receiverKey?: bigint; dataLength?: number } = {}, len = 4) => ({
  kind: 'mp_capable' as const, version: 1, checksumRequired: false, extensibility: false, noJoinToSource: false, hmacSha256: true, length: len, ...extra,
});

/** MP_CAPABLE handshake on `sf` (client = side a). */
function handshake(feed: (ip: Buffer, iface?: string, link?: number) => void, sf: Subflow, iface = 'eth0', link: number = LinkType.Raw): void {
  feed(sf.seg(0, F.SYN, [mpc()]), iface, link);
  feed(sf.seg(1, F.SYN | F.ACK, [mpc({ senderKey: SERVER_KEY }, 12)]), iface, link);
  feed(sf.seg(0, F.ACK, [mpc({ senderKey: CLIENT_KEY, receiverKey: SERVER_KEY }, 20)]), iface, link);
}

function join(feed: (ip: Buffer, iface?: string) => void, sf: Subflow, token: number, iface: string, fourth = true): void {
  feed(sf.seg(0, F.SYN, [{ kind: 'mp_join', phase: 'syn', backup: false, addressId: 2, token, nonce: 7 }]), iface);
  feed(sf.seg(1, F.SYN | F.ACK, [{ kind: 'mp_join', phase: 'synack', backup: false, addressId: 0, truncatedHmac: 1n, nonce: 8 }]), iface);
  feed(sf.seg(0, F.ACK, [{ kind: 'mp_join', phase: 'ack', backup: false, hmac: Buffer.alloc(20, 3) }]), iface);
  if (fourth) feed(sf.seg(1, F.ACK, [dssAck(1n)]), iface);
}

const c1 = { addr: '10.0.1.2', port: 40000 };
const c2 = { addr: '10.0.2.2', port: 40001 };
const srv = { addr: '10.0.9.1', port: 443 };

test('initial + join share the server token; signalling; FIN close with exact byte counts', () => {
  const { events, feed, tracker } = setup();
  const s1 = new Subflow(c1, srv);
  handshake(feed, s1, 'p1');
  assert.deepEqual(events.map((e) => e.event), ['subflow']);
  assert.deepEqual({ ...events[0], time: 0 }, {
    event: 'subflow', time: 0, connection: CONN, kind: 'initial', src: '10.0.1.2:40000', dst: '10.0.9.1:443', interface: 'p1', backup: false,
  });

  feed(s1.seg(0, F.ACK | F.PSH, [dssAck(1n)], 1000), 'p1');
  // The join is not established at its third ACK, only at the fourth.
  const s2 = new Subflow(c2, srv, 7_000_000, 4_294_967_000); // the server's ISN wraps around 2^32
  join(feed, s2, mptcpToken(SERVER_KEY), 'p2', false);
  assert.equal(events.length, 1);
  feed(s2.seg(1, F.ACK, [dssAck(1n)]), 'p2');
  assert.equal(events.length, 2);
  assert.deepEqual({ ...events[1], time: 0 }, {
    event: 'subflow', time: 0, connection: CONN, kind: 'join', src: '10.0.2.2:40001', dst: '10.0.9.1:443', interface: 'p2', backup: false, addressId: 2,
  });

  // Announcement and its echo: one announce event.
  feed(s1.seg(1, F.ACK, [{ kind: 'add_addr', echo: false, family: 4, addressId: 5, address: '10.0.9.2', port: 8443, hmac: 9n }]), 'p1');
  feed(s1.seg(0, F.ACK, [{ kind: 'add_addr', echo: true, family: 4, addressId: 5, address: '10.0.9.2', port: 8443 }]), 'p1');
  feed(s2.seg(0, F.ACK, [dssAck(2n), { kind: 'remove_addr', addressIds: [3, 4] }]), 'p2');
  feed(s2.seg(0, F.ACK, [dssAck(2n), { kind: 'mp_prio', backup: true }]), 'p2');
  const sig = events.slice(2).map((e) => ({ ...e, time: 0 }));
  assert.deepEqual(sig, [
    { event: 'announce', time: 0, connection: CONN, by: '10.0.9.1:443', addressId: 5, address: '10.0.9.2', port: 8443, interface: 'p1' },
    { event: 'remove', time: 0, connection: CONN, by: '10.0.2.2:40001', addressIds: [3, 4] },
    { event: 'priority', time: 0, connection: CONN, by: '10.0.2.2:40001', src: '10.0.2.2:40001', dst: '10.0.9.1:443', backup: true },
  ]);

  // Data both ways on the join (the server's sequence numbers wrap), a retransmission counted once.
  feed(s2.seg(1, F.ACK, [dssAck(3n)], 700), 'p2');
  feed(s2.seg(1, F.ACK, [dssAck(3n)], 300), 'p2');
  feed(s2.seg(0, F.ACK, [dssAck(4n)], 50), 'p2');
  const before = tracker.snapshot().find((s) => s.kind === 'join')!;
  assert.equal(before.bytesReceived, 1000);
  assert.equal(before.bytesSent, 50);

  for (const [sf, iface] of [[s1, 'p1'], [s2, 'p2']] as const) {
    feed(sf.seg(0, F.FIN | F.ACK, [dssAck(5n)]), iface);
    feed(sf.seg(1, F.FIN | F.ACK, [dssAck(5n)]), iface);
    feed(sf.seg(0, F.ACK, [dssAck(5n)]), iface);
  }
  const tail = events.slice(5).map((e) => ({ ...e, time: 0 }));
  assert.deepEqual(tail, [
    { event: 'subflow-closed', time: 0, connection: CONN, kind: 'initial', src: '10.0.1.2:40000', dst: '10.0.9.1:443', interface: 'p1', reason: 'fin', bytesSent: 1000, bytesReceived: 0 },
    { event: 'subflow-closed', time: 0, connection: CONN, kind: 'join', src: '10.0.2.2:40001', dst: '10.0.9.1:443', interface: 'p2', reason: 'fin', bytesSent: 50, bytesReceived: 1000 },
    { event: 'close', time: 0, connection: CONN, reason: 'fin', subflows: 2 },
  ]);
  assert.deepEqual(tracker.size, { subflows: 0, connections: 0 });
});

test('bytes come from ack numbers when data segments were filtered out', () => {
  const { feed, tracker } = setup();
  const s1 = new Subflow(c1, srv);
  handshake(feed, s1);
  s1.seg(1, F.ACK, [dssAck(1n)], 64_000); // not fed: the BPF filter kept it in the kernel
  feed(s1.seg(0, F.ACK, [dssAck(64_001n)]));
  assert.equal(tracker.snapshot()[0]!.bytesReceived, 64_000);
});

test('a join over the limit is reset after its third ACK: join-failed, no subflow', () => {
  const { events, feed } = setup();
  const s1 = new Subflow(c1, srv);
  handshake(feed, s1);
  const s2 = new Subflow(c2, srv);
  join(feed, s2, mptcpToken(SERVER_KEY), 'p2', false);
  feed(s2.seg(1, F.RST | F.ACK, [{ kind: 'mp_tcprst', transient: false, flags: 0, reason: 3 }]), 'p2');
  assert.deepEqual(events.slice(1).map((e) => ({ ...e, time: 0 })), [
    { event: 'join-failed', time: 0, connection: CONN, src: '10.0.2.2:40001', dst: '10.0.9.1:443', interface: 'p2', resetReason: 3 },
  ]);
});

test('MP_FASTCLOSE closes every subflow and the connection at once', () => {
  const { events, feed, tracker } = setup();
  const s1 = new Subflow(c1, srv);
  handshake(feed, s1);
  const s2 = new Subflow(c2, srv);
  join(feed, s2, mptcpToken(SERVER_KEY), 'p2');
  feed(s1.seg(1, F.RST | F.ACK, [{ kind: 'mp_fastclose', receiverKey: CLIENT_KEY }, { kind: 'mp_tcprst', transient: false, flags: 0, reason: 0 }]));
  feed(s2.seg(1, F.RST | F.ACK, [{ kind: 'mp_fastclose', receiverKey: CLIENT_KEY }]), 'p2');
  assert.deepEqual(events.slice(2).map((e) => [e.event, 'reason' in e ? e.reason : null]), [
    ['fastclose', null],
    ['subflow-closed', 'fastclose'],
    ['subflow-closed', 'fastclose'],
    ['close', 'fastclose'],
  ]);
  assert.equal(tracker.size.subflows, 0);
});

test('a join the server opens names the client token and still reports the server token', () => {
  const { events, feed } = setup();
  handshake(feed, new Subflow(c1, srv));
  const rev = new Subflow({ addr: '10.0.9.1', port: 5555 }, { addr: '10.0.2.2', port: 6666 });
  join(feed, rev, mptcpToken(CLIENT_KEY), 'p2');
  const j = events[1];
  assert.ok(j?.event === 'subflow' && j.kind === 'join' && j.connection === CONN && j.src === '10.0.9.1:5555');
});

test('fallback to TCP and plain TCP leave nothing behind; stale handshakes expire', () => {
  const { events, feed, tracker } = setup();
  const s1 = new Subflow(c1, srv);
  feed(s1.seg(0, F.SYN, [mpc()]));
  feed(s1.seg(1, F.SYN | F.ACK)); // the server answered without MP_CAPABLE
  feed(s1.seg(0, F.ACK, [], 100));
  const plain = new Subflow(c2, srv);
  feed(plain.seg(0, F.SYN));
  feed(plain.seg(1, F.SYN | F.ACK));
  assert.deepEqual(events, []);
  assert.deepEqual(tracker.size, { subflows: 0, connections: 0 });
  feed(new Subflow({ addr: '10.0.3.3', port: 1 }, srv).seg(0, F.SYN, [mpc()]));
  assert.equal(tracker.size.subflows, 1);
  tracker.expire(10_000_000);
  assert.deepEqual(tracker.size, { subflows: 0, connections: 0 });
  assert.deepEqual(events, []);
});

test('IPv6 subflows in SLL2, SLL and VLAN-tagged Ethernet frames', () => {
  for (const link of [LinkType.LinuxSll2, LinkType.LinuxSll, LinkType.Ethernet]) {
    const { events, feed } = setup();
    const s = new Subflow({ addr: '2001:db8::2', port: 1234 }, { addr: '2001:db8:0:1::1', port: 80 });
    handshake(feed, s, 'any', link);
    assert.equal(events.length, 1, `link ${link}`);
    const e = events[0]!;
    assert.ok(e.event === 'subflow' && e.src === '[2001:db8::2]:1234' && e.dst === '[2001:db8:0:1::1]:80', JSON.stringify(e));
  }
});

test('property: any packet sequence never throws and never grows past what it was fed', () => {
  const arbPkt = fc.record({
    dir: fc.constantFrom<0 | 1>(0, 1),
    flags: fc.nat(63),
    opts: fc.uint8Array({ maxLength: 40 }),
    pay: fc.nat(3000),
    seq: fc.nat({ max: 0xffffffff }),
  });
  fc.assert(
    fc.property(fc.array(arbPkt, { maxLength: 40 }), (pkts) => {
      const tracker = new MptcpTracker(() => undefined);
      const pkt = newTcpPacket();
      for (const p of pkts) {
        // Random option bytes behind a valid header, some of them MPTCP-looking.
        const opts = Buffer.from(p.opts.length >= 4 ? [30, Math.min(p.opts.length, 40), ...p.opts.subarray(2)] : p.opts);
        const padded = Buffer.concat([opts, Buffer.alloc((4 - (opts.length % 4)) % 4)]);
        const ip = Buffer.alloc(20 + 20 + padded.length + p.pay);
        ip[0] = 0x45;
        ip.writeUInt16BE(ip.length, 2);
        ip[9] = 6;
        Buffer.from(p.dir ? [10, 0, 0, 2] : [10, 0, 0, 1]).copy(ip, 12);
        Buffer.from(p.dir ? [10, 0, 0, 1] : [10, 0, 0, 2]).copy(ip, 16);
        ip.writeUInt16BE(p.dir ? 80 : 5000, 20);
        ip.writeUInt16BE(p.dir ? 5000 : 80, 22);
        ip.writeUInt32BE(p.seq, 24);
        ip[32] = ((20 + padded.length) / 4) << 4;
        ip[33] = p.flags;
        padded.copy(ip, 40);
        const r = parseFrame(ip, LinkType.Raw, pkt);
        if (r.kind === 'tcp') tracker.process(r, 'x', 0);
      }
      assert.ok(tracker.size.subflows <= 1);
    }),
    { numRuns: 2000 },
  );
});
