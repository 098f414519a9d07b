/**
 * The native netlink watcher's batches (native/src/netlink_watch.cc) as decodeWatchBatch reads
 * them: datagrams, losses, the error that ended a watch, and truncated batches.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { decodeWatchBatch } from '../../src/sys/netlink';

/** One entry as the addon writes it: u32 length, i32 errno, u64 receive time, data. */
function entry(data: Buffer, errno: number, at: bigint): Buffer {
  const h = Buffer.alloc(16);
  h.writeUInt32LE(data.length, 0);
  h.writeInt32LE(errno, 4);
  h.writeBigUInt64LE(at, 8);
  return Buffer.concat([h, data]);
}

describe('decodeWatchBatch', () => {
  it('splits datagrams in order, with their receive times, as views of the batch', () => {
    const a = Buffer.from('1c0000001c0000000000000000000000030100000800010059772c5e', 'hex');
    const b = Buffer.from('abc');
    const batch = Buffer.concat([entry(a, 0, 5n), entry(b, 0, 7n), entry(Buffer.alloc(0), 0, 9n)]);
    const out = decodeWatchBatch(batch);
    assert.deepEqual(
      out.map((e) => (e.kind === 'data' ? [e.kind, e.data.toString('hex'), e.at] : [e.kind])),
      [
        ['data', a.toString('hex'), 5n],
        ['data', '616263', 7n],
        ['data', '', 9n],
      ],
    );
    const first = out[0]!;
    assert.ok(first.kind === 'data' && first.data.buffer === batch.buffer, 'no copy per datagram');
  });

  it('reports a loss (ENOBUFS) in place and the error that ended the watch', () => {
    const batch = Buffer.concat([entry(Buffer.from('x'), 0, 1n), entry(Buffer.alloc(0), 105, 2n), entry(Buffer.from('y'), 0, 3n), entry(Buffer.alloc(0), 9, 4n)]);
    assert.deepEqual(
      decodeWatchBatch(batch).map((e) => e.kind + (e.kind === 'error' ? e.errno : '')),
      ['data', 'lost', 'data', 'error9'],
    );
  });

  it('a truncated header or datagram ends the batch with an EPROTO error, keeping what came before', () => {
    const whole = entry(Buffer.from('abcd'), 0, 1n);
    for (const cut of [whole.length + 8, whole.length * 2 - 2]) {
      const out = decodeWatchBatch(Buffer.concat([whole, whole]).subarray(0, cut));
      assert.deepEqual(
        out.map((e) => e.kind + (e.kind === 'error' ? e.errno : '')),
        ['data', 'error71'],
        `cut at ${cut}`,
      );
    }
    assert.deepEqual(decodeWatchBatch(Buffer.alloc(0)), []);
  });
});
