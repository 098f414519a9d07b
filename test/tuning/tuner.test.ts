/**
 * The tuner's scheduling and decisions over a scripted kernel (the socket calls are the only
 * stand-in: the real ones are exercised in test/tuning/sockbuf.test.ts and the e2e test).
 */
import assert from 'node:assert/strict';
import { afterEach, beforeEach, describe, mock, test } from 'node:test';
import client from 'prom-client';
import type { ClientConnection } from '../../src/core/connection';
import { ProxyEvents } from '../../src/core/events';
import { createLogger } from '../../src/log/logger';
import { tokenHex } from '../../src/core/subflow-id';
import type { SubflowSnapshot } from '../../src/mptcp/kernel-view';
import type { TcpInfo } from '../../src/mptcp/info';
import type { BufferDirection } from '../../src/sys/socket';
import { BULK_BYTES, BufferTuner, MAX_WATCHED, SETTLE_MS, type TunerPolicy, type TunerPorts } from '../../src/tuning/tuner';

const log = createLogger({ level: 'error', format: 'json' });

function tcp(rateBps: number, rttUs: number, bytes: number): TcpInfo {
  return { state: 1, backoff: 0, unacked: 0, lastAckRecvMs: 0, segsOut: 0, rttUs, rttVarUs: 0, minRttUs: rttUs, sndMss: 1448, advMss: 1448, pmtu: 1500, sndCwnd: 1_000_000, totalRetrans: 0, bytesAcked: BigInt(bytes), bytesReceived: 0n, bytesSent: BigInt(bytes), deliveryRate: BigInt(rateBps) };
}

class ScriptedKernel implements TunerPorts {
  subflows = new Map<number, SubflowSnapshot[]>();
  buffers = new Map<string, number>();
  sets: { fd: number; dir: BufferDirection; bytes: number }[] = [];
  snapshots = 0;
  max: Record<BufferDirection, number | null> = { rcv: 33_554_432, snd: 4_194_304 };
  private up: ((token: string) => void)[] = [];
  snapshot(fd: number): SubflowSnapshot[] {
    this.snapshots++;
    return this.subflows.get(fd) ?? [];
  }
  setBuffer(fd: number, dir: BufferDirection, bytes: number): number {
    this.sets.push({ fd, dir, bytes });
    this.buffers.set(`${fd}${dir}`, bytes);
    return bytes;
  }
  getBuffer(fd: number, dir: BufferDirection): number | null {
    return this.buffers.get(`${fd}${dir}`) ?? 131_072;
  }
  systemMax(dir: BufferDirection): number | null {
    return this.max[dir];
  }
  onSubflowUp(fn: (token: string) => void): void {
    this.up.push(fn);
  }
  subflowUp(token: number): void {
    for (const f of this.up) f(tokenHex(token));
  }
  setPaths(fd: number, paths: [rateBps: number, rttUs: number, bytes: number][]): void {
    this.subflows.set(
      fd,
      paths.map(([r, rtt, b], index) => ({ index, local: null, remote: null, tcp: tcp(r, rtt, b), locId: null, remId: null, backup: null, ifName: null })),
    );
  }
}

let nextId = 1_000_000;
function conn(fd: number, token: number | null = fd * 7): ClientConnection {
  return { id: nextId++, fd, token, mptcp: true, closed: false, subflows: 1 } as unknown as ClientConnection;
}

const AUTO: TunerPolicy = { mode: 'auto', min: 1 << 20, max: 32 << 20, intervalMs: 5_000 };

describe('BufferTuner', () => {
  let events: ProxyEvents;
  let kernel: ScriptedKernel;
  let tuner: BufferTuner | null = null;
  const make = (policy: TunerPolicy): BufferTuner => (tuner = new BufferTuner(policy, kernel, events, log, new client.Registry()));

  beforeEach(() => {
    mock.timers.enable({ apis: ['setTimeout'] });
    events = new ProxyEvents();
    kernel = new ScriptedKernel();
  });
  afterEach(() => {
    tuner?.stop();
    mock.timers.reset();
  });

  test('fixed: both buffers of every client socket set to max at accept, once', () => {
    make({ ...AUTO, mode: 'fixed', max: 180_000 });
    const c = conn(10);
    events.emit('connection-open', c);
    assert.deepEqual(kernel.sets, [
      { fd: 10, dir: 'rcv', bytes: 180_000 },
      { fd: 10, dir: 'snd', bytes: 180_000 },
    ]);
    events.emit('connection-sample', c);
    mock.timers.tick(60_000);
    assert.equal(kernel.sets.length, 2, 'fixed never touches a socket twice');
    assert.equal(kernel.snapshots, 0, 'fixed needs no measurements');
    const st = tuner!.status(c.id)!;
    assert.equal(st.rcvBytes, 180_000);
    assert.equal(st.rcvLocked, true);
  });

  test('auto: sampled once after the settle time; leaves autotuning alone when the system max suffices', () => {
    make(AUTO);
    const c = conn(11);
    kernel.setPaths(11, [[6_250_000, 20_000, 0], [6_250_000, 80_000, 0]]); // 2 × 50 Mbit/s, 80 ms: need 2 MB payload, 4 MB kernel
    kernel.max = { rcv: 33_554_432, snd: 33_554_432 };
    events.emit('connection-sample', c);
    events.emit('connection-open', c);
    assert.equal(kernel.snapshots, 0);
    mock.timers.tick(SETTLE_MS);
    assert.equal(kernel.snapshots, 1);
    assert.deepEqual(kernel.sets, []);
    const st = tuner!.status(c.id)!;
    assert.equal(st.needBytes, 2_000_000);
    assert.equal(st.rcvLocked, false);
    assert.match(st.reason, /autotuning/);
  });

  test('auto: an MPTCP connection is measured after the settle time from accept alone; the sample counts its subflows', () => {
    make(AUTO);
    const c = conn(16);
    kernel.setPaths(16, [[6_250_000, 20_000, 0], [6_250_000, 30_000, 0]]);
    events.emit('connection-open', c);
    mock.timers.tick(SETTLE_MS - 1);
    assert.equal(kernel.snapshots, 0);
    mock.timers.tick(1);
    assert.equal(kernel.snapshots, 1, 'no status read or close needed for the first measurement');
    assert.equal(c.subflows, 2);
    const plain = { ...conn(17), mptcp: false } as unknown as ClientConnection;
    events.emit('connection-open', plain);
    mock.timers.tick(SETTLE_MS);
    assert.equal(kernel.snapshots, 1, 'plain TCP connections are left to autotuning');
  });

  test('auto: locks the send buffer above a too-small tcp_wmem max, regrows only on real growth', () => {
    make(AUTO);
    const c = conn(12);
    // 2 × 50 Mbit/s, 160 ms: 4 MB payload, 8 MB of kernel buffer.
    kernel.setPaths(12, [[6_250_000, 20_000, 5_000_000], [6_250_000, 160_000, 5_000_000]]);
    events.emit('connection-sample', c);
    mock.timers.tick(SETTLE_MS);
    assert.deepEqual(
      kernel.sets.map((s) => [s.dir, s.bytes]),
      [['snd', 8_000_000]],
      'only snd: tcp_wmem max 4 MiB < 8 MB needed, tcp_rmem max 32 MiB is enough',
    );
    // Bulk: sampled again after intervalMs; a 10% larger need does not churn the option.
    kernel.setPaths(12, [[6_900_000, 20_000, 20_000_000], [6_900_000, 160_000, 20_000_000]]);
    mock.timers.tick(AUTO.intervalMs);
    assert.equal(kernel.snapshots, 2);
    assert.equal(kernel.sets.length, 1);
    // Twice the RTT: twice the need, set again.
    kernel.setPaths(12, [[6_900_000, 20_000, 40_000_000], [6_900_000, 320_000, 40_000_000]]);
    mock.timers.tick(AUTO.intervalMs);
    assert.deepEqual(kernel.sets.at(-1), { fd: 12, dir: 'snd', bytes: 2 * 2 * 13_800_000 * 0.32 });
    assert.equal(tuner!.status(c.id)!.sndBytes, 2 * 2 * 13_800_000 * 0.32);
  });

  test('auto: a quiet connection is not re-sampled; a subflow coming up samples it again', () => {
    make(AUTO);
    const c = conn(13);
    kernel.setPaths(13, [[1000, 1000, 10]]);
    events.emit('connection-sample', c);
    mock.timers.tick(SETTLE_MS);
    // One follow-up (it gained its first subflow), then nothing while it stays idle.
    for (let i = 0; i < 10; i++) mock.timers.tick(AUTO.intervalMs);
    assert.equal(kernel.snapshots, 2, 'idle: no periodic sampling');
    kernel.subflowUp(c.token!);
    kernel.subflowUp(c.token!);
    mock.timers.tick(SETTLE_MS);
    assert.equal(kernel.snapshots, 3, 'two subflow events within the settle time: one sample');
    kernel.subflowUp(999_999); // not ours
    mock.timers.tick(SETTLE_MS);
    assert.equal(kernel.snapshots, 3);
  });

  test('auto: closing a connection cancels its pending sample and forgets it', () => {
    make(AUTO);
    const c = conn(14);
    events.emit('connection-sample', c);
    (c as { closed: boolean }).closed = true;
    events.emit('connection-close', c);
    mock.timers.tick(SETTLE_MS * 2);
    assert.equal(kernel.snapshots, 0);
    assert.equal(tuner!.status(c.id), null);
  });

  test(`auto: at most ${MAX_WATCHED} bulk connections are re-sampled periodically`, () => {
    make(AUTO);
    const n = MAX_WATCHED + 50;
    for (let i = 0; i < n; i++) {
      const fd = 100 + i;
      kernel.setPaths(fd, [[1000, 1000, BULK_BYTES * 2]]);
      events.emit('connection-sample', conn(fd));
    }
    mock.timers.tick(SETTLE_MS);
    assert.equal(kernel.snapshots, n);
    for (let i = 0; i < n; i++) kernel.setPaths(100 + i, [[1000, 1000, BULK_BYTES * 4]]);
    mock.timers.tick(AUTO.intervalMs);
    assert.equal(kernel.snapshots, n + MAX_WATCHED);
  });

  test('off: never samples or sets anything', () => {
    make({ ...AUTO, mode: 'off' });
    const c = conn(15);
    events.emit('connection-open', c);
    events.emit('connection-sample', c);
    kernel.subflowUp(c.token!);
    mock.timers.tick(60_000);
    assert.equal(kernel.snapshots + kernel.sets.length, 0);
    assert.equal(tuner!.status(c.id), null);
  });
});
