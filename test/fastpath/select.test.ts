/**
 * Choosing the fast path: auto (the default) takes it when the addon loads, and without the
 * addon (or with the stream engine) falls back to the TS path; off never loads it; on without
 * it refuses to start; its tables carry the access
 * ranges and the refusal bytes of the one error table.
 */
import assert from 'node:assert/strict';
import os from 'node:os';
import path from 'node:path';
import { describe, it } from 'node:test';
import { validateConfig } from '../../src/config/schema';
import { ConfigError } from '../../src/config/config-error';
import { ErrorCode } from '../../src/core/errors';
import { ProxyEvents } from '../../src/core/events';
import { FastPath } from '../../src/fastpath/fastpath';
import { CODES, compileTables } from '../../src/fastpath/tables';
import { silentLogger } from '../../src/log/logger';
import { ProxyMetrics } from '../../src/metrics/metrics';
import { refusalBytes } from '../../src/proxy/refusal';
import { SPLICE_ADDON_ENV } from '../../src/relay/native';

function withAddon<T>(file: string, fn: () => T): T {
  const saved = process.env[SPLICE_ADDON_ENV];
  process.env[SPLICE_ADDON_ENV] = file;
  try {
    return fn();
  } finally {
    if (saved === undefined) delete process.env[SPLICE_ADDON_ENV];
    else process.env[SPLICE_ADDON_ENV] = saved;
  }
}

describe('fast path selection and tables', () => {
  const missing = path.join(os.tmpdir(), `no-fast-path-${process.pid}.node`);
  const create = (relay: object): FastPath | null => FastPath.create(validateConfig({ relay }), new ProxyEvents(), silentLogger(), new ProxyMetrics().fastPathServed);

  it('auto is the default and takes the fast path when the addon loads; off never loads the addon', () => {
    assert.equal(validateConfig({}).relay.fastPath, 'auto');
    assert.ok(create({}) instanceof FastPath);
    assert.equal(withAddon(missing, () => create({ fastPath: 'off' })), null);
  });

  it('auto without the addon, or with the stream engine, takes the TS path', () => {
    assert.equal(withAddon(missing, () => create({ fastPath: 'auto' })), null);
    assert.equal(create({ fastPath: 'auto', engine: 'stream' }), null);
  });

  it('on without the addon refuses to start, naming why', () => {
    assert.throws(() => withAddon(missing, () => create({ fastPath: 'on' })), (e: unknown) => e instanceof ConfigError && /not built/.test(e.message));
    assert.throws(() => create({ fastPath: 'on', engine: 'stream' }), /relay\.engine is stream/);
  });

  it('users or parent proxies send every connection to the TS path (a reload may add them while native runs)', () => {
    assert.equal(compileTables(validateConfig({})).handOffAll, false);
    assert.equal(compileTables(validateConfig({ access: { users: [{ name: 'u', password: 'plain$p' }] } })).handOffAll, true);
    assert.equal(compileTables(validateConfig({ upstream: { parents: [{ url: 'http://192.0.2.1:3128' }] } })).handOffAll, true);
  });

  it('rejects unknown settings', () => {
    assert.throws(() => validateConfig({ relay: { fastPath: 'yes' } }), /relay\.fastPath/);
    assert.throws(() => validateConfig({ relay: { fastPathThreads: -1 } }), /relay\.fastPathThreads/);
  });

  it('compiles the policy ranges and every code refusal from the error table', () => {
    const t = compileTables(validateConfig({ access: { allowClients: ['10.1.0.0/16', '2001:db8::/32'], denyDest: ['192.0.2.0/24'], connectPorts: [443] } }));
    assert.equal(t.clients.length, 2 * 18);
    assert.deepEqual([...t.clients.subarray(0, 4)], [4, 16, 10, 1]);
    assert.deepEqual([...t.clients.subarray(18, 22)], [6, 32, 0x20, 0x01]);
    assert.ok(t.denied.length >= 18 * 11, 'the dangerous ranges and the extra one');
    assert.deepEqual(t.ports, [443]);
    assert.equal(t.refusals.length, CODES.length);
    const denied = CODES.indexOf(ErrorCode.DestDenied);
    assert.equal(t.codes.destDenied, denied);
    assert.deepEqual(t.refusals[denied]!.http, refusalBytes('http', ErrorCode.DestDenied));
    assert.equal(t.refusals[denied]!.socks5, 0x02);
    assert.equal(t.errnos.ECONNREFUSED, CODES.indexOf(ErrorCode.ConnectRefused));
  });
});
