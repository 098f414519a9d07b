/**
 * The steering modes' per-address backup through owned MPTCP endpoints, against the kernel of the
 * test's private namespace (scripts/run-tests.sh): an address a mode no longer wants backup keeps
 * its endpoint with the flag cleared, because deleting the endpoint makes the in-kernel path
 * manager close every subflow from that address (the path the mode is returning to); the
 * endpoints go at teardown.
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { describe, it } from 'node:test';
import { validateSteeringConfig } from '../../src/config/steering';
import { KernelState } from '../../src/kstate/kernel-state';
import { PathManager } from '../../src/steering/paths';
import { isOwnedEndpointId, listEndpoints } from '../../src/sys/iproute';
import { captureLog } from '../../testkit/log-capture';

const A = '10.0.1.1';

describe('mode backup endpoints (kernel, private namespace)', () => {
  it('an address the mode stops wanting backup keeps its endpoint, flag cleared, until teardown', async () => {
    const { log } = captureLog();
    const kstate = new KernelState(log, fs.mkdtempSync(path.join(os.tmpdir(), 'paths-kstate-')));
    const { policies } = validateSteeringConfig({ policies: [{ name: 'sd', mode: 'smallest-delay', paths: [{ name: 'a', local: `${A}/32` }, { name: 'b', client: '10.0.2.0/24' }] }] });
    const pm = new PathManager(log, kstate);
    const owned = async (): Promise<{ address: string; backup: boolean }[]> =>
      (await listEndpoints()).filter((e) => isOwnedEndpointId(e.id)).map((e) => ({ address: e.address, backup: e.flags.includes('backup') }));
    await pm.provision([], policies);
    try {
      assert.deepEqual([...(await pm.setModeBackup(new Set([A]), []))], [A]);
      assert.deepEqual(await owned(), [{ address: A, backup: true }]);
      assert.deepEqual([...(await pm.setModeBackup(new Set(), []))], []);
      assert.deepEqual(await owned(), [{ address: A, backup: false }], 'the endpoint stays, unflagged');
      await pm.setModeBackup(new Set([A]), []);
      assert.deepEqual(await owned(), [{ address: A, backup: true }]);
    } finally {
      await pm.teardown([]);
    }
    assert.deepEqual(await owned(), []);
  });
});
