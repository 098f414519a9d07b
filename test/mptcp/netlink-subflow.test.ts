/**
 * MPTCP_SUBFLOW_ADDRS / MPTCP_TCPINFO array decoding: hand-built kernel layouts (element slots of
 * size_user bytes, num_subflows possibly larger than what fits) and arbitrary bytes.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { decodeSubflowAddrs, decodeSubflowTcpInfos, pairSubflows, type SubflowArray } from '../../src/mptcp/subflow-info';
import { SUBFLOW_ADDRS_SIZE, TCP_INFO_SIZE, encodeSockaddr } from '../../src/sys/socket';

function addrsElem(local: [string, number], remote: [string, number]): Buffer {
  const b = Buffer.alloc(SUBFLOW_ADDRS_SIZE);
  encodeSockaddr(...local).copy(b, 0);
  encodeSockaddr(...remote).copy(b, 128);
  return b;
}

/** A tcp_info with the fields the snapshot shows: state, mss, rtt, bytes_acked/sent. */
function tcpInfoElem(acked: bigint, sent: bigint, rttUs: number, size = TCP_INFO_SIZE): Buffer {
  const b = Buffer.alloc(TCP_INFO_SIZE);
  b.writeUInt8(1, 0); // TCP_ESTABLISHED
  b.writeUInt32LE(1448, 16);
  b.writeUInt32LE(rttUs, 68);
  b.writeBigUInt64LE(acked, 120);
  b.writeBigUInt64LE(sent, 200);
  return b.subarray(0, size);
}

const arr = (elems: Buffer[], num = elems.length, sizeKernel?: number): SubflowArray => ({ num, sizeKernel: sizeKernel ?? elems[0]?.length ?? 0, data: Buffer.concat(elems) });

describe('subflow arrays', () => {
  const p1 = addrsElem(['10.93.1.1', 8080], ['10.93.1.2', 40000]);
  const p2 = addrsElem(['10.93.1.1', 8080], ['10.93.2.2', 40001]);

  it('decodes both address pairs in kernel order', () => {
    assert.deepEqual(decodeSubflowAddrs(arr([p1, p2]), SUBFLOW_ADDRS_SIZE), [
      { local: { address: '10.93.1.1', port: 8080 }, remote: { address: '10.93.1.2', port: 40000 } },
      { local: { address: '10.93.1.1', port: 8080 }, remote: { address: '10.93.2.2', port: 40001 } },
    ]);
  });

  it('decodes IPv6 subflows', () => {
    const e = addrsElem(['2001:db8::1', 443], ['2001:db8::2', 5000]);
    assert.deepEqual(decodeSubflowAddrs(arr([e]), SUBFLOW_ADDRS_SIZE)[0]?.remote, { address: '2001:db8::2', port: 5000 });
  });

  it('stops at the slots that fit when the kernel has more subflows', () => {
    assert.equal(decodeSubflowAddrs(arr([p1], 3), SUBFLOW_ADDRS_SIZE).length, 1);
  });

  it('reads only the bytes the kernel filled when its tcp_info is shorter', () => {
    // An older kernel's 232-byte tcp_info in a 280-byte slot: bytes_sent (offset 200) still
    // fits, anything past 232 is ignored even if the slot's tail holds garbage.
    const slot = Buffer.alloc(TCP_INFO_SIZE, 0xff);
    tcpInfoElem(5n, 7n, 300, 232).copy(slot);
    const [t] = decodeSubflowTcpInfos({ num: 1, sizeKernel: 232, data: slot }, TCP_INFO_SIZE);
    assert.equal(t?.bytesAcked, 5n);
    assert.equal(t?.bytesSent, 7n);
    assert.equal(t?.rttUs, 300);
  });

  it('pairs addresses with tcp_info by position', () => {
    const s = pairSubflows(arr([p1, p2]), SUBFLOW_ADDRS_SIZE, arr([tcpInfoElem(233601n, 233601n, 50), tcpInfoElem(66400n, 66400n, 70)]), TCP_INFO_SIZE);
    assert.ok(s);
    assert.deepEqual(
      s.map((x) => [x.index, x.remote?.address, x.tcp?.bytesAcked, x.tcp?.rttUs]),
      [
        [0, '10.93.1.2', 233601n, 50],
        [1, '10.93.2.2', 66400n, 70],
      ],
    );
  });

  it('refuses to pair arrays from different subflow sets', () => {
    assert.equal(pairSubflows(arr([p1, p2]), SUBFLOW_ADDRS_SIZE, arr([tcpInfoElem(1n, 1n, 1)]), TCP_INFO_SIZE), null);
  });

  it('never throws on arbitrary arrays', () => {
    fc.assert(
      fc.property(fc.nat(10), fc.nat(600), fc.uint8Array({ maxLength: 1200 }), fc.integer({ min: 0, max: 400 }), (num, sizeKernel, data, sizeUser) => {
        const a: SubflowArray = { num, sizeKernel, data: Buffer.from(data) };
        const addrs = decodeSubflowAddrs(a, sizeUser);
        const infos = decodeSubflowTcpInfos(a, sizeUser);
        assert.ok(addrs.length <= num && infos.length <= num);
        pairSubflows(a, sizeUser, a, sizeUser);
      }),
      { numRuns: 2000 },
    );
  });
});
