import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import { KERNEL_OVERHEAD, REGROW_FACTOR, decideBuffer, kernelBufferBytes, parseTcpMem, requiredBufferBytes, subflowRate, targetBytes, type BufferPolicy, type SubflowRate } from '../../src/tuning/buffers';

const rate = fc.record({ deliveryRateBps: fc.integer({ min: 0, max: 5e9 }), rttUs: fc.integer({ min: 0, max: 5_000_000 }) });
const rates = fc.array(rate, { minLength: 1, maxLength: 8 });
const bounds = fc.tuple(fc.integer({ min: 4096, max: 1 << 30 }), fc.integer({ min: 4096, max: 1 << 30 })).map(([a, b]) => ({ min: Math.min(a, b), max: Math.max(a, b) }));

describe('requiredBufferBytes', () => {
  test('2 × Σ bandwidth × max RTT: two 50 Mbit/s paths at 20 and 80 ms', () => {
    const bps = 50e6 / 8;
    assert.equal(requiredBufferBytes([{ deliveryRateBps: bps, rttUs: 20_000 }, { deliveryRateBps: bps, rttUs: 80_000 }]), 2 * 2 * bps * 0.08);
    assert.equal(requiredBufferBytes([]), 0);
  });

  test('garbage rates (negative, NaN, infinite) count as nothing', () => {
    assert.equal(requiredBufferBytes([{ deliveryRateBps: -5, rttUs: Infinity }, { deliveryRateBps: NaN, rttUs: NaN }, { deliveryRateBps: 1000, rttUs: -1 }]), 0);
  });

  test('property: monotone in every subflow bandwidth', () => {
    fc.assert(
      fc.property(rates, fc.nat({ max: 7 }), fc.integer({ min: 0, max: 1e9 }), (rs, i, extra) => {
        const k = i % rs.length;
        const more = rs.map((r, j) => (j === k ? { ...r, deliveryRateBps: r.deliveryRateBps + extra } : r));
        return requiredBufferBytes(more) >= requiredBufferBytes(rs);
      }),
    );
  });

  test('property: monotone in every subflow RTT and in adding a subflow', () => {
    fc.assert(
      fc.property(rates, fc.nat({ max: 7 }), fc.integer({ min: 0, max: 1e6 }), rate, (rs, i, extra, added) => {
        const k = i % rs.length;
        const slower = rs.map((r, j) => (j === k ? { ...r, rttUs: r.rttUs + extra } : r));
        return requiredBufferBytes(slower) >= requiredBufferBytes(rs) && requiredBufferBytes([...rs, added]) >= requiredBufferBytes(rs);
      }),
    );
  });

  test('property: order of subflows does not matter', () => {
    fc.assert(fc.property(rates, (rs) => requiredBufferBytes([...rs].reverse()) === requiredBufferBytes(rs)));
  });
});

describe('subflowRate', () => {
  test('a delivery-rate spike is capped at one window per RTT', () => {
    // cwnd 100 × 1448 B per 10 ms = 14.48 MB/s; the sample says 200 MB/s.
    assert.deepEqual(subflowRate({ deliveryRate: 200e6, sndCwnd: 100, sndMss: 1448, rttUs: 10_000 }), { deliveryRateBps: 14_480_000, rttUs: 10_000 });
    assert.deepEqual(subflowRate({ deliveryRate: 6e6, sndCwnd: 100, sndMss: 1448, rttUs: 10_000 }), { deliveryRateBps: 6e6, rttUs: 10_000 });
    assert.equal(subflowRate({ deliveryRate: 6e6, sndCwnd: 100, sndMss: 1448, rttUs: 0 }).deliveryRateBps, 0, 'no RTT yet: no rate');
  });

  test('property: never above either bound', () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 1e10 }), fc.integer({ min: 0, max: 1e6 }), fc.integer({ min: 0, max: 65535 }), fc.integer({ min: 0, max: 1e7 }), (rate, cwnd, mss, rtt) => {
        const r = subflowRate({ deliveryRate: rate, sndCwnd: cwnd, sndMss: mss, rttUs: rtt }).deliveryRateBps;
        return r <= rate && (rtt === 0 ? r === 0 : r <= (cwnd * mss * 1e6) / rtt + 1e-6);
      }),
    );
  });
});

describe('targetBytes and decideBuffer', () => {
  test('property: the auto target is clamped to [min, max] and monotone in the need', () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 1e12 }), fc.integer({ min: 0, max: 1e12 }), bounds, (a, b, bd) => {
        const [lo, hi] = a <= b ? [a, b] : [b, a];
        const t = targetBytes(lo, bd);
        return t >= bd.min && t <= bd.max && targetBytes(hi, bd) >= t;
      }),
    );
  });

  test('property: auto never sets a size autotuning could reach, and any size it sets is within bounds', () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 1e11 }), bounds, fc.option(fc.integer({ min: 4096, max: 1 << 30 }), { nil: null }), (need, bd, sysMax) => {
        const d = decideBuffer(need, { mode: 'auto', ...bd }, sysMax, null);
        if (d.action === 'keep') return sysMax === null || targetBytes(need, bd) <= sysMax;
        return sysMax !== null && d.bytes > sysMax && d.bytes >= bd.min && d.bytes <= bd.max;
      }),
    );
  });

  test('property: a locked buffer is never shrunk, and only regrown by REGROW_FACTOR', () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 1e11 }), bounds, fc.integer({ min: 4096, max: 1 << 30 }), (need, bd, current) => {
        const d = decideBuffer(need, { mode: 'auto', ...bd }, 4096, current);
        return d.action === 'keep' || (d.bytes >= current * REGROW_FACTOR && d.bytes <= bd.max);
      }),
    );
  });

  test('auto: acts only when the system maximum is below the need', () => {
    const policy: BufferPolicy = { mode: 'auto', min: 1 << 20, max: 32 << 20 };
    const need = 3_000_000; // payload bytes: 6 MB of kernel buffer
    assert.deepEqual(decideBuffer(need, policy, 33_554_432, null), { action: 'keep', reason: 'autotuning' });
    assert.deepEqual(decideBuffer(need, policy, 4_194_304, null), { action: 'set', bytes: need * KERNEL_OVERHEAD, reason: 'system max too small' });
    // Below the floor: min wins when the system max is smaller still.
    assert.deepEqual(decideBuffer(1000, policy, 500_000, null), { action: 'set', bytes: 1 << 20, reason: 'system max too small' });
    assert.deepEqual(decideBuffer(need, policy, null, null), { action: 'keep', reason: 'autotuning' });
  });

  test('fixed sets max once whatever the need; off never acts', () => {
    const fixed: BufferPolicy = { mode: 'fixed', min: 1 << 20, max: 180_000 };
    assert.deepEqual(decideBuffer(0, fixed, 33_554_432, null), { action: 'set', bytes: 180_000, reason: 'fixed' });
    assert.equal(decideBuffer(1e9, fixed, 33_554_432, 180_000).action, 'keep');
    assert.equal(decideBuffer(1e9, { mode: 'off', min: 4096, max: 8192 }, 4096, null).action, 'keep');
  });

  test('kernel bytes are payload × overhead', () => {
    assert.equal(kernelBufferBytes(240_000), 480_000);
  });
});

describe('parseTcpMem', () => {
  test('reads the sysctl as /proc shows it (tabs) and as readSysctl collapses it', () => {
    assert.deepEqual(parseTcpMem('4096\t131072\t33554432\n'), { min: 4096, def: 131072, max: 33554432 });
    assert.deepEqual(parseTcpMem('4096 16384 4194304'), { min: 4096, def: 16384, max: 4194304 });
  });

  test('property: anything that is not three integers is null, never a throw', () => {
    fc.assert(
      fc.property(fc.oneof(fc.string(), fc.constant(null), fc.constant(undefined)), (s) => {
        const r = parseTcpMem(s);
        return r === null || (typeof s === 'string' && s.trim().split(/\s+/).length === 3);
      }),
    );
    for (const bad of ['', '1 2', '1 2 3 4', '1 -2 3', '1 2 x', '1.5 2 3']) assert.equal(parseTcpMem(bad), null, bad);
  });
});

// Keep the exported type in use so a rename breaks this file, not only the tuner.
const _typecheck: SubflowRate = { deliveryRateBps: 0, rttUs: 0 };
void _typecheck;
