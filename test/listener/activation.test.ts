/**
 * The activated-socket pool with real sockets made here (the supervisor's FD=NAME hand-over, so
 * any fd number works): the matching rule (name, then protocol), one listener per socket,
 * release and re-take, duplicates that leave the original open, the checks on what was passed.
 */
import assert from 'node:assert/strict';
import dgram from 'node:dgram';
import { after, describe, test } from 'node:test';
import type { ListenerConfig } from '../../src/config/schema';
import { ActivatedSockets, WORKER_LISTEN_FDS_ENV } from '../../src/listener/activation';
import { ListenerError } from '../../src/listener/listener-error';
import { closeFd, createListenSocket, socketName } from '../../src/sys/socket';

const listener = (name: string, protocol: ListenerConfig['protocol']): ListenerConfig => ({ name, protocol, host: '127.0.0.1', port: 1, mptcp: true }) as ListenerConfig;

describe('activated sockets', () => {
  const a = createListenSocket('127.0.0.1', 0, { mptcp: true, backlog: 8, options: {} });
  const b = createListenSocket('127.0.0.1', 0, { mptcp: false, backlog: 8, options: {} });
  after(() => {
    closeFd(a.fd);
    closeFd(b.fd);
  });

  test('claimed from the environment, which is cleared; protocols read with SO_PROTOCOL', () => {
    const env: NodeJS.ProcessEnv = { [WORKER_LISTEN_FDS_ENV]: `${a.fd}=front:${b.fd}=socks`, LISTEN_FDS: '1', LISTEN_PID: '1' };
    const pool = ActivatedSockets.claim(env);
    assert.equal(env[WORKER_LISTEN_FDS_ENV], undefined);
    assert.equal(env.LISTEN_FDS, undefined);
    assert.equal(env.LISTEN_PID, undefined);
    assert.deepEqual(
      pool.all.map((s) => [s.name, s.protocol, s.port]),
      [
        ['front', a.mptcp ? 'mptcp' : 'tcp', socketName(a.fd).port],
        ['socks', 'tcp', socketName(b.fd).port],
      ],
    );
  });

  test('name first, then protocol; one listener per socket; release gives it back', () => {
    const pool = ActivatedSockets.claim({ [WORKER_LISTEN_FDS_ENV]: `${a.fd}=front:${b.fd}=socks` });
    assert.deepEqual(
      pool.unmatched([listener('front', 'http')]).map((s) => s.name),
      ['socks'],
    );
    const byName = pool.take(listener('front', 'http'));
    assert.equal(byName?.name, 'front');
    assert.notEqual(byName?.fd, a.fd, 'a duplicate, not the original');
    assert.equal(pool.take(listener('front', 'http')), null, 'taken already');
    const byProtocol = pool.take(listener('proxy5', 'socks'));
    assert.equal(byProtocol?.name, 'socks');
    assert.equal(pool.take(listener('other', 'mixed')), null);
    closeFd(byName!.fd);
    byName!.release();
    // The original is still open and can be taken again.
    const again = pool.take(listener('front', 'http'));
    assert.equal(socketName(again!.fd).port, socketName(a.fd).port);
    closeFd(again!.fd);
    closeFd(byProtocol!.fd);
  });

  test('a passed fd that is no listening stream socket is refused', async () => {
    const udp = dgram.createSocket('udp4');
    await new Promise<void>((r) => udp.bind(0, '127.0.0.1', r));
    const fd = (udp as unknown as { _handle: { fd: number } })._handle.fd;
    try {
      assert.throws(() => ActivatedSockets.claim({ [WORKER_LISTEN_FDS_ENV]: `${fd}=http` }), (e: unknown) => e instanceof ListenerError && /not SOCK_STREAM/.test((e as Error).message));
      assert.throws(() => ActivatedSockets.claim({ [WORKER_LISTEN_FDS_ENV]: '987=http' }), /fd 987 \(http\) cannot serve a listener: not a socket/);
    } finally {
      udp.close();
    }
  });
});
