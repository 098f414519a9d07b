/**
 * Signals that arrive while the proxy is still starting are acted on once it has started:
 * SIGHUP reloads then (the config may have been edited during a slow start), SIGTERM stops.
 * Signals are delivered with process.emit, to this process's own handlers.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { Config } from '../../src/config/schema';
import { runUntilStopped, type Lifecycle } from '../../src/process/lifecycle';
import { captureLog } from '../../testkit/log-capture';
import { sleep } from '../../testkit/sleep';

test('a SIGHUP during start reloads once the proxy has started; SIGTERM then stops it', async () => {
  const { log } = captureLog();
  const events: string[] = [];
  let started!: () => void;
  const life = (config: Config | null): Lifecycle => ({
    reload: async () => void events.push('reload'),
    stop: async () => void events.push('stop'),
    config: () => config ?? ({ timeouts: { drainMs: 0 } } as Config),
    emergencyCleanup: async () => {},
  });
  const exited = runUntilStopped({}, log, () => new Promise<Lifecycle>((resolve) => (started = () => resolve(life(null)))));
  process.emit('SIGHUP');
  await sleep(20);
  assert.equal(events.length, 0, 'nothing reloads before the start has finished');
  events.push('started');
  started();
  for (let i = 0; i < 100 && !events.includes('reload'); i++) await sleep(10);
  assert.deepEqual(events, ['started', 'reload']);
  process.emit('SIGTERM');
  assert.equal(await exited, 0);
  assert.deepEqual(events, ['started', 'reload', 'stop']);
});
