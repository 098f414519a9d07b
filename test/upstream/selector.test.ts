/**
 * The parent selector: health from probes (down after downAfter misses, up after upAfter answers),
 * a failed real connect marking a parent down at once, and the order connections try parents in:
 * healthy only, lowest smoothed latency first, unmeasured after measured, config order on ties.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { DEFAULTS } from '../../src/config/schema';
import { afterConnect, afterProbe, INITIAL_HEALTH, selectOrder, type ParentHealth } from '../../src/upstream/selector';

const probe = { ...DEFAULTS.upstream.probe, downAfter: 3, upAfter: 2 };

test('probes: down after downAfter misses in a row, up after upAfter answers; a miss in between resets', () => {
  let h: ParentHealth = INITIAL_HEALTH;
  h = afterProbe(h, null, probe);
  h = afterProbe(h, null, probe);
  assert.equal(h.up, true);
  h = afterProbe(h, 1, probe);
  assert.equal(h.streak, 0);
  for (let i = 0; i < 3; i++) h = afterProbe(h, null, probe);
  assert.equal(h.up, false);
  h = afterProbe(h, 2, probe);
  assert.equal(h.up, false);
  h = afterProbe(h, 2, probe);
  assert.equal(h.up, true);
});

test('a failed connect marks the parent down at once; a good one smooths its latency', () => {
  assert.equal(afterConnect(INITIAL_HEALTH, null).up, false);
  const h = afterConnect(afterConnect(INITIAL_HEALTH, 10), 20);
  assert.equal(h.up, true);
  assert.ok(h.latencyMs! > 10 && h.latencyMs! < 20, String(h.latencyMs));
});

test('order: healthy only, by latency, unmeasured last, ties in config order', () => {
  const p = (name: string, up: boolean, latencyMs: number | null) => ({ name, health: { up, latencyMs, streak: 0 } });
  assert.deepEqual(selectOrder([p('a', true, null), p('b', true, 5), p('c', false, 1), p('d', true, 2), p('e', true, null)]), ['d', 'b', 'a', 'e']);
  assert.deepEqual(selectOrder([p('a', false, 1), p('b', false, null)]), []);
});

test('property: the order is the up parents, sorted by latency, each once', () => {
  const arb = fc.array(fc.record({ up: fc.boolean(), latencyMs: fc.option(fc.double({ min: 0, max: 1e4, noNaN: true })) }), { maxLength: 12 });
  fc.assert(
    fc.property(arb, (hs) => {
      const ps = hs.map((h, i) => ({ name: `p${i}`, health: { ...h, streak: 0 } }));
      const order = selectOrder(ps);
      const byName = new Map(ps.map((p) => [p.name, p.health]));
      assert.deepEqual([...order].sort(), ps.filter((p) => p.health.up).map((p) => p.name).sort());
      const lat = order.map((n) => byName.get(n)!.latencyMs ?? Infinity);
      for (let i = 1; i < lat.length; i++) assert.ok(lat[i - 1]! <= lat[i]!);
    }),
  );
});

test('property: any probe sequence keeps the state machine in bounds', () => {
  fc.assert(
    fc.property(fc.array(fc.option(fc.integer({ min: 0, max: 100 })), { maxLength: 50 }), (results) => {
      let h = INITIAL_HEALTH;
      let misses = 0;
      let answers = 0;
      for (const r of results) {
        h = afterProbe(h, r, probe);
        misses = r === null ? misses + 1 : 0;
        answers = r === null ? 0 : answers + 1;
        // downAfter misses in a row always leave it down; upAfter answers always up.
        if (misses >= probe.downAfter) assert.equal(h.up, false);
        if (answers >= probe.upAfter) assert.equal(h.up, true);
        assert.ok(h.streak < Math.max(probe.downAfter, probe.upAfter));
      }
    }),
  );
});
