import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { CidrSet, normalizeIPv4Literal, normalizeIpLiteral, parseCidr, parseHostPort, unmapIPv6 } from '../../src/core/address';

test('IPv4 literals in every inet_aton spelling normalise to dotted quad', () => {
  const loopback = ['127.0.0.1', '127.1', '127.0.1', '2130706433', '0x7f000001', '0x7f.0.0.1', '0177.0.0.1', '0177.1', '0x7f.1'];
  for (const s of loopback) assert.equal(normalizeIPv4Literal(s), '127.0.0.1', s);
  assert.equal(normalizeIPv4Literal('0'), '0.0.0.0');
  assert.equal(normalizeIPv4Literal('169.254.43518'), '169.254.169.254');
  for (const bad of ['256.0.0.1', '1.2.3.4.5', '08.0.0.1', '4294967296', '1..2', '', 'a.b.c.d', '0x1g']) assert.equal(normalizeIPv4Literal(bad), null, bad);
});

test('IP literals: IPv6 brackets and IPv4-mapped addresses', () => {
  assert.equal(normalizeIpLiteral('[::1]'), '::1');
  assert.equal(normalizeIpLiteral('::ffff:127.0.0.1'), '127.0.0.1');
  assert.equal(normalizeIpLiteral('[::ffff:7f00:1]'), '127.0.0.1');
  assert.equal(normalizeIpLiteral('example.com'), null);
  assert.equal(unmapIPv6('2001:db8::1'), '2001:db8::1');
});

test('every 32-bit number as a decimal literal normalises to its dotted quad', () => {
  fc.assert(
    fc.property(fc.integer({ min: 0, max: 0xffffffff }), (n) => {
      const quad = [n >>> 24, (n >>> 16) & 255, (n >>> 8) & 255, n & 255].join('.');
      assert.equal(normalizeIPv4Literal(String(n)), quad);
      assert.equal(normalizeIPv4Literal(`0x${n.toString(16)}`), quad);
      assert.equal(normalizeIPv4Literal(quad), quad);
    }),
  );
});

test('arbitrary strings never throw in the literal parsers', () => {
  fc.assert(fc.property(fc.string(), (s) => void normalizeIpLiteral(s)));
});

test('CidrSet matches both families and mapped addresses', () => {
  const set = new CidrSet(['10.0.0.0/8', '::1/128']);
  assert.ok(set.has('10.1.2.3'));
  assert.ok(set.has('::ffff:10.1.2.3'));
  assert.ok(set.has('::1'));
  assert.ok(!set.has('11.0.0.1'));
  assert.throws(() => parseCidr('10.0.0.0/33'));
  assert.throws(() => parseCidr('nope/8'));
});

test('endpoints parse with IPv6 brackets and reject bad ports', () => {
  assert.deepEqual(parseHostPort('[::1]:3128'), { host: '::1', port: 3128 });
  assert.deepEqual(parseHostPort(':1080'), { host: '127.0.0.1', port: 1080 });
  assert.throws(() => parseHostPort('127.0.0.1:70000'));
  assert.throws(() => parseHostPort('127.0.0.1'));
});
