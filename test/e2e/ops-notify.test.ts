/**
 * The proxy under Type=notify, as systemd runs it: with $NOTIFY_SOCKET set, the CLI says
 * READY=1 once its listeners accept, RELOADING=1 (+ MONOTONIC_USEC) then READY=1 around a
 * SIGHUP reload, and STOPPING=1 when SIGTERM starts the drain. The proxy runs in a namespace of
 * its own; the notify socket is a file, reachable from there.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { pickPorts } from '../ops/ports';
import { createTestbed, type ProxyHandle, type Testbed } from '../../testkit/testbed';
import { startNotifyReceiver, type NotifyReceiver } from '../ops/notify-receiver';

describe('systemd notify lifecycle of the CLI', { timeout: 60_000 }, () => {
  let tb: Testbed;
  let rx: NotifyReceiver;
  let proxy: ProxyHandle;

  before(async () => {
    tb = await createTestbed({ shapeMbit: 0 });
    const sock = path.join(tb.tmpDir, 'notify');
    rx = await startNotifyReceiver(sock);
    const [port] = pickPorts(1);
    const config = path.join(tb.tmpDir, 'proxy.yaml');
    fs.writeFileSync(config, `listeners:\n  - protocol: http\n    listen: "127.0.0.1:${port}"\n`);
    proxy = await tb.startProxy(['--config', config, '--no-metrics', '--log-format', 'json'], { env: { ...process.env, NOTIFY_SOCKET: sock }, waitReady: false });
  });

  after(async () => {
    await proxy?.stop();
    rx?.close();
    await tb?.destroy();
  });

  test('READY=1, then RELOADING=1 and READY=1 around SIGHUP, then STOPPING=1 on SIGTERM', async () => {
    assert.match(await rx.next(10_000), /^READY=1$/m, 'READY=1 after start');
    const sentAt = process.hrtime.bigint() / 1000n;
    proxy.proc.kill('SIGHUP');
    const reloading = await rx.next();
    assert.match(reloading, /^RELOADING=1$/m);
    const usec = BigInt(/^MONOTONIC_USEC=(\d+)$/m.exec(reloading)?.[1] ?? '0');
    assert.ok(usec >= sentAt && usec - sentAt < 5_000_000n, `MONOTONIC_USEC ${usec} is CLOCK_MONOTONIC now (${sentAt})`);
    assert.match(await rx.next(), /^READY=1$/m, 'READY=1 after the reload');
    proxy.proc.kill('SIGTERM');
    assert.match(await rx.next(), /^STOPPING=1$/m);
    const exit = await proxy.exited;
    assert.equal(exit.code, 0);
  });
});
