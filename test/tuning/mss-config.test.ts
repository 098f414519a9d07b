import assert from 'node:assert/strict';
import { once } from 'node:events';
import net from 'node:net';
import { describe, test } from 'node:test';
import fc from 'fast-check';
import { isInterfaceName } from '../../src/core/address';
import { ConfigError, DEFAULTS, validateConfig } from '../../src/config/schema';
import { setSocketBufferSize, socketBufferSize, socketFd } from '../../src/sys/socket';
import { MSS_TABLE, buildMssClampScript } from '../../src/tuning/mss';

describe('MSS clamp script', () => {
  test('one owned table, replaced atomically, SYN and SYN/ACK clamped to the route MTU on the given interfaces', () => {
    const s = buildMssClampScript(['p1', 'eth0.100']);
    const lines = s.split('\n');
    assert.deepEqual(lines.slice(0, 3), [`table inet ${MSS_TABLE}`, `delete table inet ${MSS_TABLE}`, `table inet ${MSS_TABLE} {`]);
    assert.ok(lines.some((l) => l.includes('type filter hook postrouting priority mangle; policy accept;')));
    assert.ok(lines.some((l) => l.trim() === 'oifname { "p1", "eth0.100" } tcp flags & (syn | rst) == syn counter tcp option maxseg size set rt mtu'), s);
  });

  test('no interfaces: every interface', () => {
    assert.match(buildMssClampScript([]), /^\s+tcp flags & \(syn \| rst\) == syn counter tcp option maxseg size set rt mtu$/m);
  });

  test('property: nothing but an interface name reaches the script', () => {
    fc.assert(
      fc.property(fc.string({ maxLength: 20 }), (name) => {
        try {
          const s = buildMssClampScript([name]);
          return isInterfaceName(name) && s.includes(`"${name.replace(/\*$/, '\\*')}"`);
        } catch (e) {
          return e instanceof TypeError;
        }
      }),
    );
  });
});

describe('tuning config', () => {
  test('defaults: auto buffers within 1 MiB..32 MiB, clamp auto on all interfaces', () => {
    assert.deepEqual(validateConfig({}).tuning, DEFAULTS.tuning);
    assert.deepEqual(DEFAULTS.tuning, { buffers: { mode: 'auto', min: 1 << 20, max: 32 << 20, intervalMs: 5000 }, mssClamp: 'auto', mssInterfaces: [] });
  });

  test('fixed needs only max (a small fixed size such as 0.18 MB); auto refuses min > max', () => {
    const c = validateConfig({ tuning: { buffers: { mode: 'fixed', max: 180_000 }, mssClamp: false, mssInterfaces: ['p1'] } });
    assert.deepEqual(c.tuning, { buffers: { mode: 'fixed', min: 1 << 20, max: 180_000, intervalMs: 5000 }, mssClamp: false, mssInterfaces: ['p1'] });
    assert.throws(() => validateConfig({ tuning: { buffers: { min: 2_000_000, max: 1_000_000 } } }), /tuning\.buffers: min/);
  });

  test('bad values are refused with the key path', () => {
    const cases: [unknown, RegExp][] = [
      [{ buffers: { mode: 'big' } }, /tuning\.buffers\.mode/],
      [{ buffers: { max: 100 } }, /tuning\.buffers\.max/],
      [{ buffers: { intervalMs: -1 } }, /tuning\.buffers\.intervalMs/],
      [{ mssClamp: 'yes' }, /tuning\.mssClamp/],
      [{ mssInterfaces: ['bad name'] }, /tuning\.mssInterfaces/],
      [{ buffer: {} }, /tuning\.buffer: unknown key/],
      ['x', /tuning: must be a mapping/],
    ];
    for (const [t, re] of cases) assert.throws(() => validateConfig({ tuning: t }), (e: Error) => e instanceof ConfigError && re.test(e.message), JSON.stringify(t));
  });

  test('property: any tuning input is a valid config or a ConfigError, never a crash', () => {
    fc.assert(
      fc.property(fc.anything(), (t) => {
        try {
          const c = validateConfig({ tuning: t }).tuning;
          return c.buffers.mode !== 'auto' || c.buffers.min <= c.buffers.max;
        } catch (e) {
          return e instanceof ConfigError;
        }
      }),
    );
  });
});

describe('socket buffer options on a real socket', () => {
  test('setSocketBufferSize locks rcv/snd at the kernel size asked for, beyond net.core.rmem_max as root', async () => {
    const server = net.createServer();
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    const accepted = once(server, 'connection');
    const c = net.connect((server.address() as net.AddressInfo).port, '127.0.0.1');
    await once(c, 'connect');
    const [s] = (await accepted) as [net.Socket];
    try {
      const fd = socketFd(s);
      assert.ok(fd >= 0);
      assert.equal(setSocketBufferSize(fd, 'rcv', 180_000), 180_000);
      assert.equal(socketBufferSize(fd, 'rcv'), 180_000);
      assert.equal(setSocketBufferSize(fd, 'snd', 720_000), 720_000);
      // 64 MiB is above this machine's net.core.rmem_max (4 MiB): only SO_RCVBUFFORCE gets there.
      const big = 64 << 20;
      const got = setSocketBufferSize(fd, 'rcv', big);
      if (process.getuid?.() === 0) assert.equal(got, big);
      else assert.ok(got > 0 && got <= big);
    } finally {
      c.destroy();
      s.destroy();
      server.close();
    }
  });
});
