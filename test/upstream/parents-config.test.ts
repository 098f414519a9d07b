/**
 * upstream.parents / routes / probe: what the schema accepts, what it fills in, and refusals that
 * name the key at fault. fast-check: any parent list with valid URLs validates, keeps its order and
 * gives every route that names `parents` the whole list.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { ConfigError, DEFAULTS, validateConfig } from '../../src/config/schema';

const upstream = (u: Record<string, unknown>) => validateConfig({ upstream: u }).upstream;

test('defaults: no parents, no routes, the probe timing of DEFAULTS', () => {
  const u = upstream({});
  assert.deepEqual(u.parents, []);
  assert.deepEqual(u.routes, []);
  assert.deepEqual(u.probe, DEFAULTS.upstream.probe);
});

test('parents: http and socks5 URLs, names, credentials from keys or the URL, mptcp off by default', () => {
  const u = upstream({
    parents: [
      { url: 'http://10.0.0.1:3128', user: 'u', password: 'p' },
      { name: 'dante', url: 'socks5://proxy.example.net:1080', mptcp: true },
      { url: 'socks5://a%40b:p%3Aw@[2001:db8::1]:1080/' },
    ],
    routes: [
      { match: { destination: 'intranet.example' }, via: 'direct' },
      { name: 'alice', match: { user: 'alice' }, via: ['dante'] },
      { match: { listener: 'conv' }, via: 'parents' },
    ],
    probe: { intervalMs: 200, upAfter: 2 },
  });
  assert.deepEqual(u.parents, [
    { name: '10.0.0.1:3128', protocol: 'http', host: '10.0.0.1', port: 3128, user: 'u', password: 'p', mptcp: false },
    { name: 'dante', protocol: 'socks5', host: 'proxy.example.net', port: 1080, mptcp: true },
    { name: '2001:db8::1:1080', protocol: 'socks5', host: '2001:db8::1', port: 1080, user: 'a@b', password: 'p:w', mptcp: false },
  ]);
  assert.deepEqual(u.routes, [
    { name: 'route0', match: { destination: 'intranet.example' }, via: 'direct' },
    { name: 'alice', match: { user: 'alice' }, via: ['dante'] },
    { name: 'route2', match: { listener: 'conv' }, via: ['10.0.0.1:3128', 'dante', '2001:db8::1:1080'] },
  ]);
  assert.deepEqual(u.probe, { ...DEFAULTS.upstream.probe, intervalMs: 200, upAfter: 2 });
});

test('bad parents and routes name the key at fault', () => {
  const cases: [Record<string, unknown>, RegExp][] = [
    [{ parents: {} }, /^upstream\.parents: must be a list/],
    [{ parents: [{}] }, /^upstream\.parents\[0\]\.url: is required/],
    [{ parents: [{ url: 'https://10.0.0.1:3128' }] }, /^upstream\.parents\[0\]\.url: .* is not http:\/\/HOST:PORT or socks5:\/\/HOST:PORT/],
    [{ parents: [{ url: 'socks4://10.0.0.1:1080' }] }, /^upstream\.parents\[0\]\.url/],
    [{ parents: [{ url: 'http://10.0.0.1' }] }, /^upstream\.parents\[0\]\.url/],
    [{ parents: [{ url: 'http://10.0.0.1:99999' }] }, /^upstream\.parents\[0\]\.url: port 99999 out of range/],
    [{ parents: [{ url: 'http://bad_host!:3128' }] }, /^upstream\.parents\[0\]\.url: .* is neither an IP address nor a host name/],
    [{ parents: [{ url: 'http://10.0.0.1:3128', user: 'u' }] }, /^upstream\.parents\[0\]: user and password go together/],
    [{ parents: [{ url: 'http://u:p@10.0.0.1:3128', user: 'u', password: 'p' }] }, /credentials in url and in user\/password/],
    [{ parents: [{ url: 'socks5://10.0.0.1:1080', user: 'u', password: 'x'.repeat(256) }] }, /1\.\.255 bytes/],
    [{ parents: [{ url: 'http://10.0.0.1:3128', mptcp: 'yes' }] }, /^upstream\.parents\[0\]\.mptcp: must be true or false/],
    [{ parents: [{ url: 'http://10.0.0.1:3128', name: 'direct' }] }, /^upstream\.parents\[0\]\.name: must be/],
    [{ parents: [{ url: 'http://10.0.0.1:3128', port: 1 }] }, /^upstream\.parents\[0\]\.port: unknown key/],
    [{ parents: [{ url: 'http://10.0.0.1:3128', name: 'a' }, { url: 'http://10.0.0.2:3128', name: 'a' }] }, /^upstream\.parents\[1\]\.name: "a" is used twice/],
    [{ routes: [{ via: 'squid' }] }, /^upstream\.routes\[0\]\.via: "squid" is not a configured parent \(parents: none\)/],
    [{ routes: [{ via: 'parents' }] }, /^upstream\.routes\[0\]\.via: no parents are configured/],
    [{ routes: [{ via: [] }] }, /^upstream\.routes\[0\]\.via: must be/],
    [{ routes: [{ via: 'direct', match: { kind: 'join' } }] }, /^upstream\.routes\[0\]\.match\.kind: unknown key/],
    [{ routes: [{ via: 'direct', match: { destination: 'not a domain!' } }] }, /^upstream\.routes\[0\]\.match\.destination/],
    [{ probe: { intervalMs: 10 } }, /^upstream\.probe\.intervalMs: must be an integer in 50\.\./],
    [{ probe: { every: 1 } }, /^upstream\.probe\.every: unknown key/],
  ];
  for (const [u, re] of cases) {
    assert.throws(() => upstream(u), (e: Error) => e instanceof ConfigError && (re.test(e.message) || assert.fail(`${JSON.stringify(u)}: ${e.message}`)), JSON.stringify(u));
  }
});

test('property: valid parent lists validate in order, `parents` routes name all of them', () => {
  const parentArb = fc.record({
    protocol: fc.constantFrom('http', 'socks5'),
    ip: fc.ipV4(),
    port: fc.integer({ min: 1, max: 65535 }),
    mptcp: fc.boolean(),
  });
  fc.assert(
    fc.property(fc.uniqueArray(parentArb, { minLength: 1, maxLength: 6, selector: (p) => `${p.ip}:${p.port}` }), (ps) => {
      const u = upstream({ parents: ps.map((p) => ({ url: `${p.protocol}://${p.ip}:${p.port}`, mptcp: p.mptcp })), routes: [{ via: 'parents' }] });
      assert.deepEqual(
        u.parents.map((p) => [p.protocol, p.host, p.port, p.mptcp]),
        ps.map((p) => [p.protocol, p.ip, p.port, p.mptcp]),
      );
      assert.deepEqual(u.routes[0]!.via, u.parents.map((p) => p.name));
    }),
  );
});
