import { test } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';
import fc from 'fast-check';
import { LinkType, formatIp, newTcpPacket, parseFrame, srcAddress, dstAddress, type TcpPacket } from '../../src/mptcp/packet';
import { frame, ipBytes, ipPacket } from './encode';

const seg4 = ipPacket({ src: '192.0.2.1', dst: '198.51.100.7', sport: 1111, dport: 80, seq: 7, ack: 9, flags: 0x12, options: [Buffer.from([30, 4, 0x01, 0x81])], payload: 33 });
const seg6 = ipPacket({ src: '2001:db8::1', dst: 'fe80::2', sport: 2222, dport: 443, flags: 0x10, payload: 5 });

function ok(buf: Buffer, link: number): TcpPacket {
  const r = parseFrame(buf, link, newTcpPacket());
  assert.equal(r.kind, 'tcp', 'reason' in r ? r.reason : '');
  return r as TcpPacket;
}

test('every link type down to the same TCP segment', () => {
  const cases: [number, number[]][] = [
    [LinkType.Ethernet, []],
    [LinkType.Ethernet, [100]],
    [LinkType.Ethernet, [100, 200]],
    [LinkType.LinuxSll, []],
    [LinkType.LinuxSll2, []],
    [LinkType.Raw, []],
  ];
  for (const [link, vlans] of cases) {
    const p = ok(frame(seg4, link, vlans), link);
    assert.equal(srcAddress(p), '192.0.2.1');
    assert.equal(dstAddress(p), '198.51.100.7');
    assert.deepEqual([p.srcPort, p.dstPort, p.seq, p.ack, p.flags, p.payloadLength, p.optEnd - p.optStart], [1111, 80, 7, 9, 0x12, 33, 4]);
    assert.equal(p.buf[p.optStart], 30);
    const q = ok(frame(seg6, link, vlans), link);
    assert.equal(srcAddress(q), '2001:db8::1');
    assert.equal(dstAddress(q), 'fe80::2');
    assert.equal(q.payloadLength, 5);
  }
});

test('payload length comes from the IP header even when the capture is cut short', () => {
  const p = ok(seg4.subarray(0, 44), LinkType.Raw);
  assert.equal(p.payloadLength, 33);
});

test('IPv6 extension headers are walked; later fragments and non-TCP are skipped; truncation is malformed', () => {
  // Hop-by-hop (8 bytes) then destination options (16 bytes) in front of TCP.
  const base = Buffer.from(seg6);
  const tcpPart = base.subarray(40);
  const hop = Buffer.from([60, 0, 1, 4, 0, 0, 0, 0]);
  const dst = Buffer.from([6, 1, 1, 12, ...Array(12).fill(0)]);
  const head = Buffer.from(base.subarray(0, 40));
  head[6] = 0;
  head.writeUInt16BE(tcpPart.length + 24, 4);
  const withExt = Buffer.concat([head, hop, dst, tcpPart]);
  const p = ok(withExt, LinkType.Raw);
  assert.equal(p.dstPort, 443);
  assert.equal(p.payloadLength, 5);

  const frag = Buffer.concat([head, Buffer.from([6, 0, 0, 8, 0, 0, 0, 1]), tcpPart]); // offset 1
  frag[6] = 44;
  frag.writeUInt16BE(tcpPart.length + 8, 4);
  assert.deepEqual(parseFrame(frag, LinkType.Raw, newTcpPacket()), { kind: 'skip', reason: 'non-first IP fragment' });

  const udp = Buffer.from(seg4);
  udp[9] = 17;
  assert.equal(parseFrame(udp, LinkType.Raw, newTcpPacket()).kind, 'skip');
  const frag4 = Buffer.from(seg4);
  frag4.writeUInt16BE(0x0010, 6);
  assert.equal(parseFrame(frag4, LinkType.Raw, newTcpPacket()).kind, 'skip');
  const arp = frame(seg4, LinkType.Ethernet);
  arp.writeUInt16BE(0x0806, 12);
  assert.equal(parseFrame(arp, LinkType.Ethernet, newTcpPacket()).kind, 'skip');
  assert.equal(parseFrame(seg4, 999, newTcpPacket()).kind, 'skip');

  for (const cut of [0, 10, 19, 30, 39]) assert.equal(parseFrame(seg4.subarray(0, cut), LinkType.Raw, newTcpPacket()).kind, 'malformed', `cut ${cut}`);
  const badOff = Buffer.from(seg4);
  badOff[32] = 0x40; // data offset 16 bytes
  assert.equal(parseFrame(badOff, LinkType.Raw, newTcpPacket()).kind, 'malformed');
  assert.equal(parseFrame(frame(seg6, LinkType.LinuxSll2).subarray(0, 50), LinkType.LinuxSll2, newTcpPacket()).kind, 'malformed');
});

test('property: arbitrary bytes never throw, whatever the link type', () => {
  const pkt = newTcpPacket();
  fc.assert(
    fc.property(fc.uint8Array({ maxLength: 200 }), fc.constantFrom(0, 1, 12, 101, 113, 276, 5), (bytes, link) => {
      const r = parseFrame(Buffer.from(bytes), link, pkt);
      assert.ok(['tcp', 'skip', 'malformed'].includes(r.kind));
      if (r.kind === 'tcp') assert.ok(r.optStart <= r.optEnd && r.payloadLength >= 0);
    }),
    { numRuns: 5000 },
  );
  // Mutated valid frames reach deeper into the walker.
  fc.assert(
    fc.property(fc.nat(seg6.length - 1), fc.nat(255), fc.nat(seg6.length), (at, v, cut) => {
      const b = Buffer.from(seg6);
      b[at] = v;
      parseFrame(b.subarray(0, cut), LinkType.Raw, pkt);
    }),
    { numRuns: 5000 },
  );
});

test('property: IPv6 text matches Node (RFC 5952), IPv4 dotted quad', () => {
  fc.assert(
    fc.property(fc.ipV6(), (a) => {
      const bytes = ipBytes(a);
      const expected = new net.SocketAddress({ address: a, family: 'ipv6' }).address;
      assert.equal(formatIp(bytes, 0, 16), expected);
    }),
    { numRuns: 3000 },
  );
  assert.equal(formatIp(Buffer.from([0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 10, 1, 2, 3]), 0, 16), '::ffff:10.1.2.3');
  assert.equal(formatIp(Buffer.from([1, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]), 0, 16), '100:1::1');
  assert.equal(formatIp(Buffer.from([10, 0, 0, 255]), 0, 4), '10.0.0.255');
});
