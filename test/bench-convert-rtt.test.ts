/**
 * The round-trip counter of bench/convert-rtt.ts on hand-made segment sequences: a new round trip
 * whenever the client speaks (SYN or data) after the proxy last did, up to the segment carrying
 * the destination's first response byte.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { countFlights } from '../bench/convert-rtt';
import type { CapturedSegment } from '../bench/lib/capture';
import { TcpFlag } from '../src/mptcp/packet';

const C = 40000;
const P = 5124;
let ns = 0;
const up = (flags: number, data = ''): CapturedSegment => ({ ns: (ns += 1e6), srcPort: C, dstPort: P, flags, payload: Buffer.from(data) });
const down = (flags: number, data = ''): CapturedSegment => ({ ns: (ns += 1e6), srcPort: P, dstPort: C, flags, payload: Buffer.from(data) });
const { SYN, ACK } = TcpFlag;

test('Convert in the SYN is one round trip; SOCKS5 four; no response is null', () => {
  ns = 0;
  const tfo = [up(SYN, 'convert+GET'), down(SYN | ACK), up(ACK), down(ACK, 'reply'), down(ACK, 'HTTP/1.1 200 OK\r\n')];
  assert.deepEqual(countFlights(tfo, C, P), { roundTrips: 1, ttfbMs: 4 });
  const socks = [up(SYN), down(SYN | ACK), up(ACK), up(ACK, 'greet'), down(ACK, 'm'), up(ACK, 'req'), down(ACK, 'rep'), up(ACK, 'GET'), up(ACK, 'more of it'), down(ACK, 'HTTP/1.1 200 OK')];
  assert.equal(countFlights(socks, C, P)?.roundTrips, 4);
  // Other connections' segments are ignored.
  assert.equal(countFlights([up(SYN), { ...down(SYN | ACK, 'HTTP/1.1 200 OK'), dstPort: C + 1 }], C, P), null);
});
