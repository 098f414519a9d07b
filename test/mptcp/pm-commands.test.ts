/**
 * The userspace PM's commands (mptcp_pm ANNOUNCE, REMOVE, SUBFLOW_CREATE/DESTROY, SET_FLAGS)
 * against vectors laid out by hand from include/uapi/linux/mptcp_pm.h (the same requests were
 * accepted by this kernel in test/e2e/userspace-pm.test.ts), and the kernel's ACK with and
 * without its extended-ACK text.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import fc from 'fast-check';
import { decodePmAck, encodePmCommand } from '../../src/mptcp/netlink-codec';

const hex = (s: string): Buffer => Buffer.from(s.replace(/\s+/g, ''), 'hex');
const FAMILY = 28;

describe('mptcp_pm commands: encoder', () => {
  it('ANNOUNCE: token, nested address (family, addr4, id, SIGNAL flag)', () => {
    const got = encodePmCommand({ cmd: 'announce', token: 0x11223344, local: { address: '10.0.2.1', id: 1 } }, FAMILY, 7);
    const want = hex(`
      40000000 1c00 0500 07000000 00000000
      08 01 0000
      0800 0400 44332211
      2400 0180
        0600 0100 0200 0000
        0800 0300 0a000201
        0500 0200 01 000000
        0800 0600 01000000`);
    assert.equal(got.toString('hex'), want.toString('hex'));
  });

  it('SET_FLAGS: local and remote address with ports (host order), BACKUP flag', () => {
    const got = encodePmCommand({ cmd: 'set-flags', token: 1, local: { address: '10.0.2.1', port: 1080 }, remote: { address: '10.0.2.2', port: 40000 }, backup: true }, FAMILY, 9);
    const want = hex(`
      5c000000 1c00 0500 09000000 00000000
      07 01 0000
      0800 0400 01000000
      2400 0180
        0600 0100 0200 0000
        0800 0300 0a000201
        0600 0500 3804 0000
        0800 0600 04000000
      1c00 0680
        0600 0100 0200 0000
        0800 0300 0a000202
        0600 0500 409c 0000`);
    assert.equal(got.toString('hex'), want.toString('hex'));
    // Backup off: the same request with flags 0.
    const off = encodePmCommand({ cmd: 'set-flags', token: 1, local: { address: '10.0.2.1', port: 1080 }, remote: { address: '10.0.2.2', port: 40000 }, backup: false }, FAMILY, 9);
    assert.equal(off.toString('hex'), want.toString('hex').replace('0800060004000000', '0800060000000000'));
  });

  it('REMOVE: token and the u8 local id', () => {
    assert.equal(encodePmCommand({ cmd: 'remove', token: 1, locId: 3 }, FAMILY, 1).toString('hex'), hex('24000000 1c00 0500 01000000 00000000 09 01 0000 0800 0400 01000000 0500 0500 03 000000').toString('hex'));
  });

  it('SUBFLOW_CREATE / DESTROY: IPv6 addresses, remote port', () => {
    const create = encodePmCommand({ cmd: 'subflow-create', token: 2, local: { address: '2001:db8::1', id: 1 }, remote: { address: '2001:db8::2', port: 443 } }, FAMILY, 3);
    const want = hex(`
      6c000000 1c00 0500 03000000 00000000
      0a 01 0000
      0800 0400 02000000
      2800 0180
        0600 0100 0a00 0000
        1400 0400 20010db8000000000000000000000001
        0500 0200 01 000000
      2800 0680
        0600 0100 0a00 0000
        1400 0400 20010db8000000000000000000000002
        0600 0500 bb01 0000`);
    assert.equal(create.toString('hex'), want.toString('hex'));
    const destroy = encodePmCommand({ cmd: 'subflow-destroy', token: 2, local: { address: '10.0.0.1', port: 1 }, remote: { address: '10.0.0.2', port: 2 } }, FAMILY, 3);
    assert.equal(destroy[16], 11, 'MPTCP_PM_CMD_SUBFLOW_DESTROY');
  });
});

describe('mptcp_pm commands: the kernel ACK', () => {
  it('errno 0 (capped ACK)', () => {
    const ack = hex('24000000 0200 0001 07000000 00000000 00000000 40000000 1c00 0500 07000000 00000000');
    assert.deepEqual(decodePmAck(ack, 7), { ok: true, value: { errno: 0 } });
  });

  it('EINVAL with the extended-ACK text', () => {
    const nack = hex('30000000 0200 0003 07000000 00000000 eaffffff 40000000 1c00 0500 07000000 00000000 0b00 0100 62616420696400 00');
    assert.deepEqual(decodePmAck(nack, 7), { ok: true, value: { errno: 22, message: 'bad id' } });
  });

  it('another seq is no answer; arbitrary bytes never throw', () => {
    const ack = hex('24000000 0200 0001 07000000 00000000 00000000 40000000 1c00 0500 07000000 00000000');
    assert.equal(decodePmAck(ack, 8).ok, false);
    fc.assert(fc.property(fc.uint8Array({ maxLength: 200 }), fc.nat(), (b, seq) => void decodePmAck(Buffer.from(b), seq)));
  });
});
