/**
 * The ATSSS steering modes' pure parts: config validation of mode policies, the per-mode
 * decisions (active-standby failover and hold, smallest-delay hysteresis and standby probes, priority thresholds,
 * load-balance caps from weights), mode paths in policy matching, and which addresses today's
 * per-endpoint backup marker can mark.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { validateSteeringConfig, type SteeringModeConfig } from '../../src/config/steering';
import { ConfigError } from '../../src/config/config-error';
import { decide, initialModeState, lossPercent, MIN_CAP_BPS, PROBE_MS, type ModeState, type PathMeasure } from '../../src/steering/modes';
import { compilePolicies, firstMatch, type SubflowSubject } from '../../src/steering/policy';
import { SubflowBackup, wholeAddresses } from '../../src/steering/backup';
import type { Subflow } from '../../src/registry/registry';

const paths2 = [
  { name: 'wifi', client: '10.20.1.0/24' },
  { name: 'cell', client: '10.20.2.0/24' },
];
const modeOf = (raw: Record<string, unknown>): SteeringModeConfig => validateSteeringConfig({ policies: [{ name: 'm', paths: paths2, ...raw }] }).policies[0]!.mode!;
const pm = (name: string, o: Partial<PathMeasure> = {}): PathMeasure => ({ name, up: true, rttMs: 10, lossPct: 0, rateBps: 0, ...o });
const standby = (d: { actions: Record<string, { standby: boolean }> }): string[] => Object.entries(d.actions).filter(([, a]) => a.standby).map(([n]) => n);

describe('mode policy config', () => {
  it('accepts each mode with defaults filled', () => {
    const as = modeOf({ mode: 'active-standby' });
    assert.deepEqual(as, { name: 'active-standby', paths: paths2, hysteresisMs: 10, holdMs: 1000, standbyRate: 500_000 });
    assert.equal(modeOf({ mode: 'smallest-delay' }).standbyRate, 2_000_000);
    assert.equal(modeOf({ mode: 'smallest-delay' }).probeIntervalMs, 2000);
    assert.equal(modeOf({ mode: 'smallest-delay', probeIntervalMs: 0 }).probeIntervalMs, 0);
    assert.deepEqual(modeOf({ mode: 'load-balance', weights: { wifi: 3, cell: 1 } }).weights, { wifi: 3, cell: 1 });
    const pr = modeOf({ mode: 'priority', rttThresholdMs: 80, lossThresholdPercent: 2.5, standbyRate: '1mbit', holdMs: 500 });
    assert.equal(pr.rttThresholdMs, 80);
    assert.equal(pr.lossThresholdPercent, 2.5);
    assert.equal(pr.standbyRate, 1_000_000);
    assert.equal(pr.holdMs, 500);
  });
  it('one clear line per mistake', () => {
    const bad: [Record<string, unknown>, RegExp][] = [
      [{ mode: 'fastest' }, /policies\[0\]\.mode: must be one of: active-standby, smallest-delay, load-balance, priority/],
      [{ mode: 'active-standby', paths: [paths2[0]] }, /paths: must list at least two paths/],
      [{ mode: 'active-standby', paths: [paths2[0], { name: 'wifi', client: '10.0.0.0/8' }] }, /paths\[1\]\.name: "wifi" is used twice/],
      [{ mode: 'active-standby', paths: [paths2[0], { name: 'x' }] }, /paths\[1\]: needs client, local, interface or uplink/],
      [{ mode: 'active-standby', paths: [paths2[0], { name: 'x', uplink: 'nope' }] }, /paths\[1\]\.uplink: "nope" is not a configured uplink/],
      [{ mode: 'load-balance' }, /weights: load-balance needs weights/],
      [{ mode: 'load-balance', weights: { wifi: 3 } }, /weights\.cell: is required/],
      [{ mode: 'load-balance', weights: { wifi: 3, cell: 1, dsl: 2 } }, /weights\.dsl: is not a path of this policy/],
      [{ mode: 'load-balance', weights: { wifi: 0, cell: 1 } }, /weights\.wifi: must be an integer in 1\.\.1000/],
      [{ mode: 'active-standby', weights: { wifi: 1, cell: 1 } }, /weights: only load-balance takes weights/],
      [{ mode: 'priority' }, /priority needs rttThresholdMs or lossThresholdPercent/],
      [{ mode: 'priority', lossThresholdPercent: 0 }, /lossThresholdPercent: must be a number in \(0, 100\]/],
      [{ mode: 'smallest-delay', rttThresholdMs: 50 }, /rttThresholdMs: only priority takes thresholds/],
      [{ mode: 'smallest-delay', probeIntervalMs: 500 }, /probeIntervalMs: must be 0 \(no probes\) or at least 1000/],
      [{ mode: 'active-standby', probeIntervalMs: 3000 }, /probeIntervalMs: only smallest-delay takes probeIntervalMs/],
      [{ mode: 'active-standby', rate: '5mbit' }, /mode: a mode sets rates, uplinks and backup itself/],
      [{ weights: { wifi: 1 } }, /paths: needs a mode/],
    ];
    for (const [raw, re] of bad) assert.throws(() => validateSteeringConfig({ policies: [{ name: 'm', paths: paths2, ...raw }] }), (e: unknown) => e instanceof ConfigError && re.test(e.message), JSON.stringify(raw));
  });
  it('property: any mode document either validates or fails with a ConfigError', () => {
    const val = fc.oneof(fc.constant(undefined), fc.integer({ min: -5, max: 2000 }), fc.string(), fc.double(), fc.boolean());
    fc.assert(
      fc.property(fc.constantFrom('active-standby', 'smallest-delay', 'load-balance', 'priority', 'x'), val, val, val, val, (mode, w, rtt, loss, hold) => {
        try {
          validateSteeringConfig({ policies: [{ name: 'm', mode, paths: paths2, ...(w !== undefined ? { weights: { wifi: w, cell: 1 } } : {}), ...(rtt !== undefined ? { rttThresholdMs: rtt } : {}), ...(loss !== undefined ? { lossThresholdPercent: loss } : {}), ...(hold !== undefined ? { holdMs: hold } : {}) }] });
          return true;
        } catch (e) {
          return e instanceof ConfigError;
        }
      }),
    );
  });
});

describe('mode paths in policy matching', () => {
  const subject = (client: string): SubflowSubject => ({ client, local: '192.0.2.1', interface: 'eth1', kind: 'join', destinationHost: null, destinationAddress: null, user: null, listener: null });
  it('a mode policy matches only subflows on one of its paths, and names the path', () => {
    const cfg = validateSteeringConfig({
      uplinks: [{ name: 'wan', interface: 'eth9' }],
      policies: [{ name: 'm', mode: 'active-standby', paths: [...paths2, { name: 'up', uplink: 'wan' }] }, { name: 'rest', rate: '1mbit' }],
    });
    const ps = compilePolicies(cfg.policies, new Map([['wan', 'eth9']]));
    assert.equal(firstMatch(ps, subject('10.20.2.9'))!.pathOf(subject('10.20.2.9')), 'cell');
    assert.equal(firstMatch(ps, subject('10.99.0.1'))!.config.name, 'rest', 'off every path: the next policy');
    const viaUplink = { ...subject('10.99.0.1'), interface: 'eth9' };
    assert.equal(firstMatch(ps, viaUplink)!.pathOf(viaUplink), 'up');
  });
});

describe('mode decisions', () => {
  const as = modeOf({ mode: 'active-standby', holdMs: 1000 });
  it('active-standby: the first path up is active; failover at once, failback after the hold', () => {
    let st = initialModeState();
    let d = decide(as, [pm('wifi'), pm('cell')], st, 0);
    assert.equal(d.state.active, 'wifi');
    assert.deepEqual(standby(d), ['cell']);
    st = d.state;
    d = decide(as, [pm('wifi', { up: false }), pm('cell')], st, 100);
    assert.equal(d.state.active, 'cell', 'failover does not wait');
    assert.deepEqual(standby(d), ['wifi']);
    st = d.state;
    d = decide(as, [pm('wifi'), pm('cell')], st, 200);
    assert.equal(d.state.active, 'cell', 'a returning path waits for the hold');
    d = decide(as, [pm('wifi'), pm('cell')], d.state, 1200);
    assert.equal(d.state.active, 'wifi');
    // Nothing up: nothing held back.
    assert.deepEqual(standby(decide(as, [pm('wifi', { up: false }), pm('cell', { up: false })], d.state, 1300)), []);
  });
  it('smallest-delay: the lower RTT wins, but only by more than the hysteresis for the hold', () => {
    const sd = modeOf({ mode: 'smallest-delay', hysteresisMs: 10, holdMs: 500 });
    let d = decide(sd, [pm('wifi', { rttMs: 30 }), pm('cell', { rttMs: 5 })], initialModeState(), 0);
    assert.equal(d.state.active, 'cell', 'first decision: the fastest');
    d = decide(sd, [pm('wifi', { rttMs: 30 }), pm('cell', { rttMs: 38 })], d.state, 100);
    assert.equal(d.state.active, 'cell', 'within the hysteresis: stay');
    d = decide(sd, [pm('wifi', { rttMs: 30 }), pm('cell', { rttMs: 60 })], d.state, 200);
    assert.equal(d.state.active, 'cell', 'clearly slower, but not for the hold yet');
    d = decide(sd, [pm('wifi', { rttMs: 30 }), pm('cell', { rttMs: 60 })], d.state, 700);
    assert.equal(d.state.active, 'wifi');
  });
  it('smallest-delay: a standby path is compared without the queue its own cap adds', () => {
    const sd = modeOf({ mode: 'smallest-delay', hysteresisMs: 10, holdMs: 0 });
    const st: ModeState = { ...initialModeState(), active: 'wifi' };
    assert.equal(decide(sd, [pm('wifi', { rttMs: 60 }), pm('cell', { rttMs: 45 })], st, 0, 0).state.active, 'cell');
    assert.equal(decide(sd, [pm('wifi', { rttMs: 60 }), pm('cell', { rttMs: 45 })], st, 0, 40).state.active, 'cell', '45 - 40 is far below 60');
    assert.equal(decide(sd, [pm('wifi', { rttMs: 20 }), pm('cell', { rttMs: 45 })], st, 0, 20).state.active, 'wifi', '25 is not 10 below 20');
  });
  it('smallest-delay: the standby path leaves backup for PROBE_MS every probeIntervalMs, so its RTT refreshes and the mode can switch back', () => {
    const sd = modeOf({ mode: 'smallest-delay', holdMs: 0, probeIntervalMs: 2000 });
    const probing = (d: { actions: Record<string, { probe: boolean }> }): string[] => Object.entries(d.actions).filter(([, a]) => a.probe).map(([n]) => n);
    let d = decide(sd, [pm('wifi', { rttMs: 5 }), pm('cell', { rttMs: 40 })], initialModeState(), 0);
    assert.equal(d.state.active, 'wifi');
    const seen: number[] = [];
    for (let t = 200; t <= 6000; t += 200) {
      d = decide(sd, [pm('wifi', { rttMs: 5 }), pm('cell', { rttMs: 40 })], d.state, t);
      if (probing(d).length > 0) {
        assert.deepEqual(probing(d), ['cell'], 'only the standby probes');
        assert.deepEqual(standby(d), ['cell'], 'a probing path is still the standby');
        seen.push(t);
      }
    }
    assert.deepEqual(seen, [2000, 2200, 4000, 4200, 6000], `probes of ${PROBE_MS} ms every 2 s`);
    // A switch restarts the clock: the new standby's RTT is fresh.
    d = decide(sd, [pm('wifi', { rttMs: 90 }), pm('cell', { rttMs: 40 })], d.state, 6200);
    assert.equal(d.state.active, 'cell');
    assert.deepEqual(probing(d), []);
    assert.deepEqual(probing(decide(sd, [pm('wifi', { rttMs: 90 }), pm('cell', { rttMs: 40 })], d.state, 8200)), ['wifi']);
    // A down standby is not probed; probes off with 0.
    assert.deepEqual(probing(decide(sd, [pm('wifi', { up: false }), pm('cell', { rttMs: 40 })], d.state, 8200)), []);
    const off = modeOf({ mode: 'smallest-delay', probeIntervalMs: 0 });
    let o = decide(off, [pm('wifi', { rttMs: 5 }), pm('cell', { rttMs: 40 })], initialModeState(), 0);
    for (let t = 200; t <= 6000; t += 200) {
      o = decide(off, [pm('wifi', { rttMs: 5 }), pm('cell', { rttMs: 40 })], o.state, t);
      assert.deepEqual(probing(o), []);
    }
  });
  it('priority: over a threshold the next path takes over; back only well under it, after the hold', () => {
    const pr = modeOf({ mode: 'priority', rttThresholdMs: 100, lossThresholdPercent: 4, hysteresisMs: 20, holdMs: 1000 });
    let d = decide(pr, [pm('wifi'), pm('cell')], initialModeState(), 0);
    assert.equal(d.state.active, 'wifi');
    d = decide(pr, [pm('wifi', { lossPct: 5 }), pm('cell')], d.state, 100);
    assert.equal(d.state.active, 'cell', 'loss over the threshold: switch at once');
    d = decide(pr, [pm('wifi', { lossPct: 3 }), pm('cell')], d.state, 200);
    d = decide(pr, [pm('wifi', { lossPct: 3 }), pm('cell')], d.state, 2000);
    assert.equal(d.state.active, 'cell', 'under the threshold but not under half of it');
    d = decide(pr, [pm('wifi', { lossPct: 1, rttMs: 90 }), pm('cell')], d.state, 2100);
    d = decide(pr, [pm('wifi', { lossPct: 1, rttMs: 90 }), pm('cell')], d.state, 4000);
    assert.equal(d.state.active, 'cell', 'RTT within the hysteresis of its threshold');
    d = decide(pr, [pm('wifi', { lossPct: 1, rttMs: 50 }), pm('cell')], d.state, 4100);
    assert.equal(d.state.active, 'cell', 'the hold');
    d = decide(pr, [pm('wifi', { lossPct: 1, rttMs: 50 }), pm('cell')], d.state, 5200);
    assert.equal(d.state.active, 'wifi');
    d = decide(pr, [pm('wifi', { rttMs: 150 }), pm('cell')], d.state, 5300);
    assert.equal(d.state.active, 'cell', 'RTT over the threshold');
  });
  it('load-balance: the heaviest path runs free, the others capped to their weight of its rate', () => {
    const lb = modeOf({ mode: 'load-balance', weights: { wifi: 3, cell: 1 } });
    let d = decide(lb, [pm('wifi', { rateBps: 45e6 }), pm('cell', { rateBps: 40e6 })], initialModeState(), 0);
    assert.deepEqual(d.actions, { wifi: { standby: false, rateBps: null, probe: false }, cell: { standby: false, rateBps: 15e6, probe: false } });
    d = decide(lb, [pm('wifi', { rateBps: 46e6 }), pm('cell', { rateBps: 15e6 })], d.state, 200);
    assert.equal(d.actions.cell!.rateBps, 15e6, 'a move within the dead band keeps the cap');
    d = decide(lb, [pm('wifi', { up: false }), pm('cell', { rateBps: 15e6 })], d.state, 400);
    assert.deepEqual(d.actions.cell, { standby: false, rateBps: null, probe: false }, 'the heaviest path down: the rest runs free');
  });
  it('property: exactly one path active whenever one is up, and it is up (one-active modes)', () => {
    const measure = fc.record({ up: fc.boolean(), rttMs: fc.option(fc.integer({ min: 0, max: 500 })), lossPct: fc.option(fc.integer({ min: 0, max: 100 })), rateBps: fc.integer({ min: 0, max: 1e9 }) });
    fc.assert(
      fc.property(fc.constantFrom('active-standby', 'smallest-delay', 'priority'), fc.array(fc.tuple(measure, measure), { minLength: 1, maxLength: 20 }), (name, steps) => {
        const mode = modeOf({ mode: name, ...(name === 'priority' ? { rttThresholdMs: 100, lossThresholdPercent: 5 } : {}) });
        let st = initialModeState();
        let t = 0;
        for (const [a, b] of steps) {
          const ms = [pm('wifi', a), pm('cell', b)];
          const d = decide(mode, ms, st, (t += 300));
          st = d.state;
          const active = Object.entries(d.actions).filter(([, x]) => !x.standby).map(([n]) => n);
          if (ms.some((m) => m.up)) {
            if (active.length !== 1) return false;
            // A failed active path is left at once.
            if (!ms.find((m) => m.name === active[0])!.up) return false;
          } else if (active.length !== 2) return false;
        }
        return true;
      }),
    );
  });
  it('property: load-balance caps follow the weights (within the dead band) and never fall under the floor', () => {
    fc.assert(
      fc.property(fc.integer({ min: 1, max: 1000 }), fc.integer({ min: 1, max: 1000 }), fc.integer({ min: 1e6, max: 1e9 }), (w1, w2, rate) => {
        const lb = modeOf({ mode: 'load-balance', weights: { wifi: w1, cell: w2 } });
        const d = decide(lb, [pm('wifi', { rateBps: rate }), pm('cell', { rateBps: rate })], initialModeState(), 0);
        const [top, other] = w1 >= w2 ? ['wifi', 'cell'] : ['cell', 'wifi'];
        const cap = d.actions[other!]!.rateBps!;
        return d.actions[top!]!.rateBps === null && cap >= MIN_CAP_BPS && Math.abs(cap - Math.max(MIN_CAP_BPS, (rate * Math.min(w1, w2)) / Math.max(w1, w2))) <= 1;
      }),
    );
  });
  it('loss from counters', () => {
    assert.equal(lossPercent(10, 20, 100, 300), 5);
    assert.equal(lossPercent(10, 20, 100, 100), null);
  });
});

describe('per-endpoint backup marker', () => {
  const sf = (key: string, local: string): Subflow => ({ key, local: { host: local, port: 80 } }) as Subflow;
  it('marks an address only when every subflow from it is wanted backup', () => {
    const all = [sf('a', '192.0.2.1'), sf('b', '192.0.2.1'), sf('c', '::ffff:192.0.2.2'), sf('d', '192.0.2.3')];
    assert.deepEqual([...wholeAddresses(new Set(['a', 'c']), all)], ['192.0.2.2']);
    assert.deepEqual([...wholeAddresses(new Set(['a', 'b', 'c']), all)].sort(), ['192.0.2.1', '192.0.2.2']);
    assert.deepEqual([...wholeAddresses(new Set(), all)], []);
  });
  it('the per-subflow marker (userspace PM) marks each wanted subflow, unmarks what it marked, and leaves refused ones unmarked', async () => {
    const calls: string[] = [];
    const errors: string[] = [];
    const m = new SubflowBackup(
      (sub, on) => {
        if (sub.key === 'x') throw new Error('refused');
        calls.push(`${sub.key}:${on}`);
      },
      (sub) => errors.push(sub.key),
    );
    const all = [sf('a', '192.0.2.1'), sf('b', '192.0.2.1'), sf('x', '192.0.2.1')];
    assert.deepEqual([...(await m.apply(new Set(['a', 'x']), all))], ['a']);
    assert.deepEqual(calls, ['a:true']);
    assert.deepEqual(errors, ['x']);
    assert.deepEqual([...(await m.apply(new Set(['b']), all))], ['b']);
    assert.deepEqual(calls, ['a:true', 'a:false', 'b:true'], 'only changes reach the path manager');
  });
});
