/**
 * sd_notify over a real AF_UNIX datagram socket: a python3 receiver stands in for systemd
 * (Node cannot receive unix datagrams), for a path socket and an abstract one.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { startNotifyReceiver } from './notify-receiver';
import { notifyReady, notifyReloading, notifyStopping, notifySockaddr, sdNotify, systemdListenFds } from '../../src/sys/sdnotify';

async function withReceiver(address: string, fn: (next: () => Promise<string>) => Promise<void>): Promise<void> {
  const rx = await startNotifyReceiver(address);
  try {
    await fn(() => rx.next());
  } finally {
    rx.close();
  }
}

describe('sd_notify', () => {
  test('without NOTIFY_SOCKET nothing is sent and it is not an error', () => {
    assert.deepEqual(sdNotify('READY=1', {}), { ok: true, sent: false });
  });

  test('READY, RELOADING with MONOTONIC_USEC, STOPPING reach a path socket in order', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'mpx-notify-'));
    const sock = path.join(dir, 'notify');
    try {
      await withReceiver(sock, async (next) => {
        const env = { NOTIFY_SOCKET: sock };
        assert.deepEqual(notifyReady(env), { ok: true, sent: true });
        assert.match(await next(), /^READY=1\n/);
        const before = process.hrtime.bigint() / 1000n;
        assert.deepEqual(notifyReloading(env), { ok: true, sent: true });
        const reloading = await next();
        assert.match(reloading, /^RELOADING=1\nMONOTONIC_USEC=\d+\n/);
        const usec = BigInt(/MONOTONIC_USEC=(\d+)/.exec(reloading)![1]);
        // CLOCK_MONOTONIC, taken within this second: catches a wall-clock or ms mix-up.
        assert.ok(usec >= before && usec - before < 1_000_000n, `MONOTONIC_USEC ${usec} vs ${before}`);
        assert.deepEqual(notifyStopping(env), { ok: true, sent: true });
        assert.match(await next(), /^STOPPING=1\n/);
      });
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  test('abstract-namespace socket ("@name")', async () => {
    const name = `@mpx-notify-${randomBytes(4).toString('hex')}`;
    await withReceiver(name, async (next) => {
      assert.deepEqual(sdNotify('READY=1', { NOTIFY_SOCKET: name }), { ok: true, sent: true });
      assert.equal(await next(), 'READY=1');
    });
  });

  test('a socket nobody listens on is a typed failure, not a throw', () => {
    const r = sdNotify('READY=1', { NOTIFY_SOCKET: path.join(os.tmpdir(), `mpx-none-${randomBytes(4).toString('hex')}`) });
    assert.equal(r.ok, false);
    assert.ok(!r.ok && 'code' in r.error && r.error.code === 'ENOENT', String(!r.ok && r.error.message));
  });

  test('an over-long address is refused before any syscall', () => {
    assert.equal(notifySockaddr('/x'.repeat(60)), null);
    const r = sdNotify('READY=1', { NOTIFY_SOCKET: '/x'.repeat(60) });
    assert.equal(r.ok, false);
  });
});

describe('socket activation fds', () => {
  test('LISTEN_PID must be this process', () => {
    assert.deepEqual(systemdListenFds({ LISTEN_PID: '1', LISTEN_FDS: '2' }, 42), []);
  });
  test('fds start at 3 and carry their names', () => {
    assert.deepEqual(systemdListenFds({ LISTEN_PID: '42', LISTEN_FDS: '2', LISTEN_FDNAMES: 'http:socks' }, 42), [
      { fd: 3, name: 'http' },
      { fd: 4, name: 'socks' },
    ]);
    assert.deepEqual(systemdListenFds({ LISTEN_PID: '42', LISTEN_FDS: '1' }, 42), [{ fd: 3, name: 'unknown' }]);
    assert.deepEqual(systemdListenFds({ LISTEN_PID: '42', LISTEN_FDS: 'x' }, 42), []);
  });
});
