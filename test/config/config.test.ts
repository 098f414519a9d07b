import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import { hashPassword } from '../../src/access/passwords';
import { loadConfig, parseRunFlags } from '../../src/config/load';
import { ConfigError, DEFAULTS, validateConfig } from '../../src/config/schema';

test('no input gives the embedded defaults: loopback HTTP 3128 and SOCKS 1080', () => {
  const c = validateConfig(undefined);
  assert.deepEqual(
    c.listeners.map((l) => [l.protocol, l.host, l.port]),
    [
      ['http', '127.0.0.1', 3128],
      ['socks', '127.0.0.1', 1080],
    ],
  );
  assert.deepEqual(c.access, DEFAULTS.access);
  assert.equal(c.metrics.port, 9464);
});

test('flags win over the file, the file over defaults', () => {
  const file = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'mpx-')), 'c.yaml');
  fs.writeFileSync(file, 'listeners:\n  - { protocol: socks, listen: "127.0.0.1:2080" }\nupstream: { connectTimeoutMs: 3000 }\nlog: { level: debug }\n');
  const fromFile = loadConfig(parseRunFlags(['--config', file]));
  assert.equal(fromFile.listeners[0]!.port, 2080);
  assert.equal(fromFile.upstream.connectTimeoutMs, 3000);
  const withFlags = loadConfig(parseRunFlags(['--config', file, '--http', '127.0.0.1:8080', '--log-level', 'warn']));
  assert.deepEqual(
    withFlags.listeners.map((l) => [l.protocol, l.port]),
    [['http', 8080]],
  );
  assert.equal(withFlags.log.level, 'warn');
  assert.equal(withFlags.upstream.connectTimeoutMs, 3000);
  assert.equal(withFlags.timeouts.drainMs, DEFAULTS.timeouts.drainMs);
  assert.equal(loadConfig(parseRunFlags(['--config', file, '--drain-timeout', '30000'])).timeouts.drainMs, 30_000);
});

test('limits.maxHeaderLines: 100 by default, a configured value is kept', () => {
  assert.equal(validateConfig(undefined).limits.maxHeaderLines, 100);
  assert.equal(DEFAULTS.limits.maxHeaderLines, 100);
  assert.equal(validateConfig({ limits: { maxHeaderLines: 20 } }).limits.maxHeaderLines, 20);
});

test('access.credentialsTtlMs: one hour by default, 0 turns the cache off', () => {
  assert.equal(validateConfig(undefined).access.credentialsTtlMs, 3_600_000);
  assert.equal(validateConfig({ access: { credentialsTtlMs: 0 } }).access.credentialsTtlMs, 0);
  assert.doesNotThrow(() => validateConfig({ access: { users: [{ name: 'a', password: hashPassword('pw', 1024) }] } }));
});

test('a non-loopback listener without allow-list or users is refused with an explanation', () => {
  assert.throws(() => loadConfig(parseRunFlags(['--http', '0.0.0.0:3128'])), (e: Error) => e instanceof ConfigError && /open proxy/.test(e.message));
  assert.doesNotThrow(() => loadConfig(parseRunFlags(['--http', '0.0.0.0:3128', '--allow-client', '10.0.0.0/8'])));
  assert.doesNotThrow(() => loadConfig(parseRunFlags(['--http', '0.0.0.0:3128', '--user', 'alice:plain$pw'])));
});

test('paths.rtoMaxMs: off by default, a value in the kernel range kept', () => {
  assert.equal(validateConfig({}).paths.rtoMaxMs, null);
  assert.equal(validateConfig({ paths: { rtoMaxMs: 1000 } }).paths.rtoMaxMs, 1000);
});

test('paths.pathManager kernel by default; paths.announce null by default, addresses in the kernel spelling', () => {
  assert.deepEqual(validateConfig({}).paths, { rtoMaxMs: null, pathManager: 'kernel', announce: null });
  const p = validateConfig({ paths: { pathManager: 'userspace', announce: ['10.0.2.1', '2001:DB8:0::1'] } }).paths;
  assert.equal(p.pathManager, 'userspace');
  assert.deepEqual(p.announce, ['10.0.2.1', '2001:db8::1']);
});

test('bad values name the key that is wrong', () => {
  const cases: [unknown, RegExp][] = [
    [{ nope: 1 }, /^nope: unknown key/],
    [{ upstream: { connectTimeoutMs: -1 } }, /^upstream\.connectTimeoutMs: must be an integer/],
    [{ access: { allowDest: ['10.0.0.0/99'] } }, /^access\.allowDest\[0\]: .*prefix/],
    [{ listeners: [{ protocol: 'ftp', listen: '127.0.0.1:1' }] }, /^listeners\.\[0\]\.protocol/],
    [{ listeners: [{ protocol: 'http', listen: 'nope' }] }, /^listeners\.\[0\]\.listen/],
    [{ relay: { engine: 'magic' } }, /^relay\.engine/],
    [{ timeouts: { drainMs: -5 } }, /^timeouts\.drainMs: must be an integer/],
    [{ limits: { maxHeaderLines: 0 } }, /^limits\.maxHeaderLines: must be an integer in 1\.\.10000/],
    [{ limits: { maxHeaderLines: 10_001 } }, /^limits\.maxHeaderLines: must be an integer in 1\.\.10000/],
    [{ limits: { maxHeaderLines: 2.5 } }, /^limits\.maxHeaderLines: must be an integer/],
    [{ access: { users: [{ name: 'a', password: 'secret' }] } }, /password/],
    [{ access: { credentialsTtlMs: -1 } }, /^access\.credentialsTtlMs: must be an integer/],
    [{ access: { credentialsTtlMs: 86_400_001 } }, /^access\.credentialsTtlMs: must be an integer/],
    // scrypt hashes the check could not run are caught at load, not at a client's first login
    [{ access: { users: [{ name: 'a', password: 'scrypt$1000$8$1$c2FsdA==$aGFzaA==' }] } }, /^access\.users\.\[0\]\.password/],
    [{ access: { users: [{ name: 'a', password: 'scrypt$65536$1$1$c2FsdA==$aGFzaA==' }] } }, /^access\.users\.\[0\]\.password/],
    [{ access: { users: [{ name: 'a', password: 'scrypt$16384$8$1$c2FsdA==' }] } }, /^access\.users\.\[0\]\.password/],
    // The kernel's own range for net.ipv4.tcp_rto_max_ms.
    [{ paths: { rtoMaxMs: 500 } }, /^paths\.rtoMaxMs: must be an integer in 1000\.\.120000/],
    [{ paths: { bogus: 1 } }, /^paths\.bogus: unknown key/],
    [{ paths: { pathManager: 'mptcpd' } }, /^paths\.pathManager/],
    [{ paths: { announce: '10.0.2.1' } }, /^paths\.announce: must be a list/],
    [{ paths: { announce: ['10.0.2.1', 'nope'] } }, /^paths\.announce\[1\]: "nope" is not an IP address/],
    [{ paths: { announce: ['127.0.0.1'] } }, /^paths\.announce\[0\]: .*not a unicast address/],
    [{ paths: { announce: ['10.0.2.1', '10.0.2.1'] } }, /^paths\.announce: lists an address twice/],
  ];
  for (const [raw, re] of cases) assert.throws(() => validateConfig(raw), (e: Error) => e instanceof ConfigError && re.test(e.message), JSON.stringify(raw));
});

test('unknown flags and unreadable files are ConfigErrors, not crashes', () => {
  assert.throws(() => parseRunFlags(['--bogus']), ConfigError);
  assert.throws(() => loadConfig(parseRunFlags(['--config', '/nonexistent/x.yaml'])), ConfigError);
});

test('convert listeners: --convert HOST takes port 5124, cookies and the TFO queue validated, other protocols refuse them', () => {
  const c = loadConfig(parseRunFlags(['--convert', '127.0.0.1', '--convert', '[::1]', '--convert', '127.0.0.1:6000']));
  assert.deepEqual(
    c.listeners.map((l) => [l.protocol, l.host, l.port, l.fastOpenQueue, l.cookies]),
    [
      ['convert', '127.0.0.1', 5124, 1024, []],
      ['convert', '::1', 5124, 1024, []],
      ['convert', '127.0.0.1', 6000, 1024, []],
    ],
  );
  const y = validateConfig({ listeners: [{ protocol: 'convert', listen: '127.0.0.1', cookies: ['0a1B'], fastOpenQueue: 16 }] });
  assert.deepEqual([y.listeners[0]!.cookies, y.listeners[0]!.fastOpenQueue], [['0a1B'], 16]);
  const bad: [unknown, RegExp][] = [
    [{ listeners: [{ protocol: 'convert', listen: '127.0.0.1', cookies: ['xyz'] }] }, /listeners\.\[0\]\.cookies/],
    [{ listeners: [{ protocol: 'convert', listen: '127.0.0.1', cookies: 'ab' }] }, /cookies/],
    [{ listeners: [{ protocol: 'convert', listen: '127.0.0.1', fastOpenQueue: 0 }] }, /fastOpenQueue/],
    [{ listeners: [{ protocol: 'http', listen: '127.0.0.1:1', cookies: ['ab'] }] }, /cookies: unknown key/],
    [{ listeners: [{ protocol: 'socks', listen: '127.0.0.1' }] }, /HOST:PORT/],
  ];
  for (const [raw, re] of bad) assert.throws(() => validateConfig(raw), (e: Error) => e instanceof ConfigError && re.test(e.message), JSON.stringify(raw));
});
