import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ConfigError, validateConfig } from '../../src/config/schema';
import { ClusterAnnounceError, checkAnnounce, listenerCovers, servedListeners } from '../../src/proxy/announce';

const cfg = (listeners: string[], announce: string | null): ReturnType<typeof validateConfig> =>
  validateConfig({ listeners: listeners.map((listen, i) => ({ name: `l${i}`, protocol: i % 2 ? 'socks' : 'http', listen })), access: { allowClients: ['10.0.0.0/8'] }, ...(announce ? { cluster: { announce } } : {}) });

test('cluster.announce: a unicast IP, IPv6 in the kernel spelling; off by default; instance defaults to the host name', () => {
  assert.equal(validateConfig({}).cluster.announce, null);
  assert.equal(validateConfig({ cluster: { announce: '192.0.2.7' } }).cluster.announce, '192.0.2.7');
  assert.equal(validateConfig({ cluster: { announce: '2001:db8:0:0::7' } }).cluster.announce, '2001:db8::7');
  assert.equal(validateConfig({ cluster: { announce: '::ffff:192.0.2.7' } }).cluster.announce, '192.0.2.7');
  for (const bad of ['127.0.0.1', '0.0.0.0', '::', '::1', 'fe80::1', '224.0.0.1', '169.254.1.1', 'proxy.example', 7]) {
    assert.throws(() => validateConfig({ cluster: { announce: bad } }), ConfigError, String(bad));
  }
  assert.throws(() => validateConfig({ cluster: { vip: '192.0.2.1' } }), /unknown key/);
  assert.throws(() => validateConfig({ cluster: { announce: '192.0.2.7' }, listeners: [{ protocol: 'http', listen: '127.0.0.1:0' }] }), /no fixed port/);
  assert.throws(
    () => validateConfig({ cluster: { announce: '192.0.2.7' }, uplinks: [{ name: 'wan1', interface: 'eth1', source: '192.0.2.7' }] }),
    /uplink wan1's source/,
  );
  assert.ok(validateConfig({}).instance.length > 0);
  assert.equal(validateConfig({ instance: 'edge-2' }).instance, 'edge-2');
  assert.throws(() => validateConfig({ instance: 'a b' }), /instance/);
});

test('joins to the announced address reach a listener: the wildcard covers it, a specific address gets a twin', () => {
  assert.ok(listenerCovers('0.0.0.0', '192.0.2.7'));
  assert.ok(!listenerCovers('0.0.0.0', '2001:db8::7'));
  assert.ok(listenerCovers('::', '192.0.2.7'));
  assert.ok(!listenerCovers('10.1.1.1', '192.0.2.7'));
  const off = cfg(['10.1.1.1:3128'], null);
  assert.deepEqual(servedListeners(off), off.listeners);
  const on = cfg(['10.1.1.1:3128', '10.1.1.2:3128', '0.0.0.0:1080', '10.1.1.1:8080'], '192.0.2.7');
  const twins = servedListeners(on).slice(on.listeners.length);
  // One twin per port not already covered; same name and protocol as the listener it stands for.
  assert.deepEqual(twins.map((l) => [l.name, l.protocol, l.host, l.port]), [
    ['l0', 'http', '192.0.2.7', 3128],
    ['l3', 'socks', '192.0.2.7', 8080],
  ]);
});

test('start check: the announced address must be local and not a listener address', () => {
  const local = new Set(['10.1.1.1', '192.0.2.7']);
  assert.doesNotThrow(() => checkAnnounce(cfg(['10.1.1.1:3128'], '192.0.2.7'), local));
  assert.throws(() => checkAnnounce(cfg(['10.1.1.1:3128'], '192.0.2.8'), local), (e: unknown) => e instanceof ClusterAnnounceError && e.code === 'MPX_CLUSTER_ANNOUNCE' && /not an address of this host/.test(e.message));
  assert.throws(() => checkAnnounce(cfg(['192.0.2.7:3128'], '192.0.2.7'), local), /listener l0's own address/);
});
