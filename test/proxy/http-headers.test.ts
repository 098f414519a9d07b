import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { forwardHeaders, parseAuthority, parseBasicCredentials, VIA_TOKEN } from '../../src/proxy/http/headers';

test('hop-by-hop fields and those named in Connection are dropped; Via is appended', () => {
  const out = forwardHeaders([
    'Host', 'a.example', 'Connection', 'keep-alive, X-Secret', 'Keep-Alive', 'timeout=5', 'X-Secret', '1',
    'Proxy-Authorization', 'Basic eA==', 'Transfer-Encoding', 'chunked', 'TE', 'trailers', 'Via', '1.0 other', 'Accept', '*/*',
  ]);
  assert.deepEqual(out, ['Host', 'a.example', 'Accept', '*/*', 'Via', `1.0 other, ${VIA_TOKEN}`]);
});

test('a request gets the given authority as its one Host, first', () => {
  assert.deepEqual(forwardHeaders(['Accept', '*/*', 'host', 'evil.example', 'HOST', 'x'], 'a.example:8080'), ['Host', 'a.example:8080', 'Accept', '*/*', 'Via', VIA_TOKEN]);
  assert.deepEqual(forwardHeaders(['Accept', '*/*'], 'a.example'), ['Host', 'a.example', 'Accept', '*/*', 'Via', VIA_TOKEN]);
});

test('no header list ever keeps a hop-by-hop field', () => {
  const name = fc.constantFrom('Connection', 'Keep-Alive', 'Upgrade', 'TE', 'Trailer', 'Proxy-Connection', 'X-A', 'X-B', 'Accept');
  fc.assert(
    fc.property(fc.array(fc.tuple(name, fc.constantFrom('x', 'X-A', 'close', 'X-B, X-A'))), (pairs) => {
      const out = forwardHeaders(pairs.flat());
      const names = out.filter((_, i) => i % 2 === 0).map((n) => n.toLowerCase());
      for (const hop of ['connection', 'keep-alive', 'upgrade', 'te', 'trailer', 'proxy-connection']) assert.ok(!names.includes(hop));
      assert.equal(names.at(-1), 'via');
    }),
  );
});

test('CONNECT authority and Basic credentials', () => {
  assert.deepEqual(parseAuthority('example.com:443'), { host: 'example.com', port: 443 });
  assert.deepEqual(parseAuthority('[2001:db8::1]:8443'), { host: '2001:db8::1', port: 8443 });
  for (const bad of ['example.com', 'example.com:0', 'a:99999', 'http://a:1', 'a b:1', 'user@a:1']) assert.equal(parseAuthority(bad), null, bad);
  assert.deepEqual(parseBasicCredentials(`Basic ${Buffer.from('al:ice:pw').toString('base64')}`), { user: 'al', password: 'ice:pw' });
  assert.equal(parseBasicCredentials('Bearer x'), null);
});
