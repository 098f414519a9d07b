import assert from 'node:assert/strict';
import { test } from 'node:test';
import { AccessControl } from '../../src/access/access';
import { hashPassword, verifyPassword } from '../../src/access/passwords';
import { validateConfig } from '../../src/config/schema';
import { ERROR_TABLE, ErrorCode, ProxyError, toProxyError } from '../../src/core/errors';
import { interleaveFamilies } from '../../src/upstream/connector';

test('default destination policy denies loopback, link-local/metadata, multicast, unspecified', () => {
  const a = new AccessControl(validateConfig({}).access);
  for (const ip of ['127.0.0.1', '127.9.9.9', '169.254.169.254', '0.0.0.0', '224.0.0.1', '::1', '::', 'fe80::1', 'ff02::1', '::ffff:127.0.0.1']) assert.equal(a.destinationAllowed(ip), false, ip);
  for (const ip of ['93.184.215.14', '10.1.2.3', '2001:db8::1']) assert.equal(a.destinationAllowed(ip), true, ip);
  const opened = new AccessControl(validateConfig({ access: { allowDest: ['127.0.0.0/8'], denyPrivate: true } }).access);
  assert.equal(opened.destinationAllowed('127.0.0.1'), true);
  assert.equal(opened.destinationAllowed('10.1.2.3'), false);
});

test('client allow-list defaults to loopback', () => {
  const a = new AccessControl(validateConfig({}).access);
  assert.ok(a.clientAllowed('127.0.0.1') && a.clientAllowed('::1') && !a.clientAllowed('10.0.0.1'));
});

test('ports outside the allowed list are refused with MPX_PORT_DENIED', () => {
  const a = new AccessControl(validateConfig({ access: { connectPorts: [443] } }).access);
  assert.doesNotThrow(() => a.checkPort(443));
  assert.throws(() => a.checkPort(25), (e: ProxyError) => e.code === ErrorCode.PortDenied);
});

test('passwords: scrypt hashes verify, wrong ones and unknown users fail', async () => {
  const h = hashPassword('s3cret', 1024);
  assert.ok(await verifyPassword(h, 's3cret'));
  assert.ok(!(await verifyPassword(h, 's3cret!')));
  const a = new AccessControl(validateConfig({ access: { users: [{ name: 'u', password: h }] } }).access);
  assert.ok(a.authRequired);
  assert.equal(await a.authenticate('u', 's3cret', '127.0.0.1'), null);
  assert.equal((await a.authenticate('v', 's3cret', '127.0.0.2'))?.code, ErrorCode.AuthFailed);
});

test('every error code maps to an HTTP status, SOCKS replies and a log level', () => {
  for (const code of Object.values(ErrorCode)) {
    const m = ERROR_TABLE[code];
    assert.ok(m.http >= 400 && m.http < 600 && m.socks5 > 0 && m.socks5 <= 8 && m.socks4 === 0x5b, code);
  }
  assert.equal(toProxyError(Object.assign(new Error('x'), { code: 'ECONNREFUSED' })).code, ErrorCode.ConnectRefused);
  assert.equal(toProxyError(new Error('weird')).code, ErrorCode.Internal);
});

test('happy eyeballs interleaves families starting with the first', () => {
  const out = interleaveFamilies([
    { address: 'a6', family: 6 },
    { address: 'b6', family: 6 },
    { address: 'a4', family: 4 },
  ]);
  assert.deepEqual(out.map((x) => x.address), ['a6', 'a4', 'b6']);
});
