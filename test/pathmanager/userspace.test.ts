/**
 * The userspace path manager's decisions, against a scripted event stream and a recorded command
 * socket (the kernel's side of both is tested live in test/e2e/userspace-pm.test.ts). It writes
 * net.mptcp.pm_type: run it in a private network namespace, as scripts/run-tests.sh does.
 */
import assert from 'node:assert/strict';
import { EventEmitter } from 'node:events';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, describe, it } from 'node:test';
import { DEFAULTS, type Config } from '../../src/config/schema';
import { KernelState } from '../../src/kstate/kernel-state';
import type { KernelView, KernelViewEventMap } from '../../src/mptcp/kernel-view';
import type { PmCommand } from '../../src/mptcp/netlink-codec';
import { KernelPathManager, PathManagerError } from '../../src/pathmanager/path-manager';
import { HEAL_INTERVAL_MS, UserspacePathManager } from '../../src/pathmanager/userspace';
import { readSysctl } from '../../src/sys/sysctl';
import { captureLog } from '../../testkit/log-capture';
import { sleep } from '../../testkit/sleep';

const P1 = '10.0.1.1';
const P2 = '10.0.2.1';
const C1 = '10.0.1.2';
const C2 = '10.0.2.2';
const PORT = 1080;
const TOKEN = 0xabc;

class FakeView extends EventEmitter<KernelViewEventMap> {
  running = true;
}
const timing = { receivedAt: 0n, emittedAt: 0n };
const end = (address: string, port: number): { address: string; port: number } => ({ address, port });

function setup(over: Partial<Pick<Config, 'listeners' | 'steering' | 'paths'>> = {}) {
  const view = new FakeView();
  const sent: PmCommand[] = [];
  const up = new Set([P1, P2]);
  const { log, lines } = captureLog();
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'upm-kstate-'));
  const kstate = new KernelState(log, dir);
  const config = { listeners: [{ ...DEFAULTS.listeners[1]!, host: '0.0.0.0', port: PORT }], steering: DEFAULTS.steering, paths: DEFAULTS.paths, ...over };
  const pm = new UserspacePathManager(config, view as unknown as KernelView, kstate, log, {
    commands: () => ({ send: (c) => void sent.push(c), close: async () => {} }),
    upAddresses: () => up,
    signalEndpoints: async () => [{ id: 1, address: P2 }, { id: 7, address: '2001:db8::1' }],
  });
  const sub = (type: 'sub-established' | 'sub-closed', local: [string, number], remote: [string, number]) =>
    ({ type, token: TOKEN, family: 4 as const, locId: 0, remId: 0, local: end(...local), remote: end(...remote), backup: false, ifName: null, ...timing });
  const established = (port = PORT) =>
    view.emit('connection-established', { type: 'established', token: TOKEN, family: 4, local: end(P1, port), remote: end(C1, 40000), serverSide: true, denyJoinId0: false, flags: 2, ...timing });
  return { view, sent, up, lines, pm, sub, established, dir };
}

describe('userspace path manager', () => {
  const dirs: string[] = [];
  after(() => dirs.forEach((d) => fs.rmSync(d, { recursive: true, force: true })));

  it('sets pm_type 1 while it runs and restores it; announces the signal addresses of the family, not the initial one, on its own connections only', async () => {
    const s = setup();
    dirs.push(s.dir);
    const before = readSysctl('net.mptcp.pm_type');
    await s.pm.start();
    assert.equal(readSysctl('net.mptcp.pm_type'), '1');
    s.established(9999); // another program's connection in this namespace
    assert.deepEqual(s.sent, []);
    s.established();
    assert.deepEqual(s.sent, [{ cmd: 'announce', token: TOKEN, local: { id: 1, address: P2 } }]);
    await s.pm.stop();
    assert.equal(readSysctl('net.mptcp.pm_type'), before);
  });

  it('paths.announce replaces the signal endpoints: ids by position', async () => {
    const s = setup({ paths: { ...DEFAULTS.paths, pathManager: 'userspace', announce: [P1, '10.0.3.1', P2] } });
    dirs.push(s.dir);
    await s.pm.start();
    s.established();
    assert.deepEqual(s.sent, [
      { cmd: 'announce', token: TOKEN, local: { id: 2, address: '10.0.3.1' } },
      { cmd: 'announce', token: TOKEN, local: { id: 3, address: P2 } },
    ]);
    await s.pm.stop();
  });

  it('a backup policy on an address: MP_PRIO on each subflow there as it is established', async () => {
    const s = setup({ steering: { ...DEFAULTS.steering, policies: [{ name: 'standby', match: { local: `${P2}/32` }, backup: true }] } });
    dirs.push(s.dir);
    await s.pm.start();
    s.established();
    s.view.emit('subflow-established', s.sub('sub-established', [P2, PORT], [C2, 50000]));
    assert.deepEqual(s.sent.at(-1), { cmd: 'set-flags', token: TOKEN, local: end(P2, PORT), remote: end(C2, 50000), backup: true });
    s.pm.setBackup(TOKEN, { local: end(P1, PORT), remote: end(C1, 40000) }, false);
    assert.deepEqual(s.sent.at(-1), { cmd: 'set-flags', token: TOKEN, local: end(P1, PORT), remote: end(C1, 40000), backup: false });
    await s.pm.stop();
  });

  it('a lost client path: announced addresses withdrawn, then announced every interval while up, until the client joins from it again', async () => {
    const s = setup();
    dirs.push(s.dir);
    await s.pm.start();
    s.established();
    s.view.emit('subflow-established', s.sub('sub-established', [P2, PORT], [C2, 50000]));
    s.sent.length = 0;
    // A join that never established is no lost path.
    s.view.emit('subflow-closed', s.sub('sub-closed', [P2, PORT], [C2, 50001]));
    assert.equal(s.sent.length, 0);
    s.up.delete(P2); // the proxy's own path-2 interface is down too
    s.view.emit('subflow-closed', s.sub('sub-closed', [P2, PORT], [C2, 50000]));
    assert.deepEqual(s.sent, [{ cmd: 'remove', token: TOKEN, locId: 1 }]);
    await sleep(2.5 * HEAL_INTERVAL_MS);
    assert.equal(s.sent.length, 1, 'nothing announced while the address is down');
    s.up.add(P2);
    await sleep(2.5 * HEAL_INTERVAL_MS);
    const announces = s.sent.filter((c) => c.cmd === 'announce');
    assert.ok(announces.length >= 2, `announced again each interval: ${announces.length}`);
    s.view.emit('subflow-established', s.sub('sub-established', [P2, PORT], [C2, 50002]));
    assert.ok(s.lines.some((l) => l.message === 'path healed'));
    const n = s.sent.length;
    await sleep(2.5 * HEAL_INTERVAL_MS);
    assert.equal(s.sent.length, n, 'no more announcements once healed');
    await s.pm.stop();
  });

  it('the last subflow closing is the connection ending, not a lost path', async () => {
    const s = setup();
    dirs.push(s.dir);
    await s.pm.start();
    s.established();
    s.sent.length = 0;
    s.view.emit('subflow-closed', s.sub('sub-closed', [P1, PORT], [C1, 40000]));
    assert.deepEqual(s.sent, []);
    await s.pm.stop();
  });

  it('kernel mode: per-subflow backup is refused with a typed error', () => {
    assert.throws(() => new KernelPathManager().setBackup(), (e: unknown) => e instanceof PathManagerError && e.code === 'MPX_PM_UNSUPPORTED');
  });
});
