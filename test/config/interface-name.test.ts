/**
 * One interface-name rule for every config section that names interfaces (transparent,
 * tuning, steering uplinks and policy matches): what the Linux kernel accepts as a device name.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ConfigError, validateConfig } from '../../src/config/schema';

const GOOD = ['eth0', 'wlan0', 'eth0.100', 'br-lan', 'veth@if3', 'wwan+0', 'x'.repeat(15), '.eth'];
// '"' and the backslash are names Linux accepts that an nft script cannot carry (core/address.ts).
const BAD = ['', '.', '..', 'x'.repeat(16), 'a/b', 'a b', 'a\tb', 'eth0:1', 'é'.repeat(8), 'a"b', 'a\\b'];

/** The same name put in each place the config takes an interface name. */
const places: [string, (name: string) => unknown][] = [
  ['transparent.interfaces', (name) => ({ transparent: { interfaces: [name] } })],
  ['tuning.mssInterfaces', (name) => ({ tuning: { mssInterfaces: [name] } })],
  ['uplinks[0].interface', (name) => ({ uplinks: [{ name: 'u', interface: name }] })],
  ['policies[0].match.interface', (name) => ({ policies: [{ name: 'p', match: { interface: name } }] })],
];

test('every section accepts what Linux accepts as an interface name (less what nft cannot quote)', () => {
  for (const [where, doc] of places) for (const name of GOOD) assert.doesNotThrow(() => validateConfig(doc(name)), `${where}: ${JSON.stringify(name)}`);
});

test('every section refuses what Linux refuses, naming the key', () => {
  for (const [where, doc] of places) {
    for (const name of BAD) {
      // An empty name in a single-name key reads as "must be a non-empty string", in a list as not an interface name.
      const key = where.replace(/[.[\]]/g, (c) => `\\${c}`);
      assert.throws(() => validateConfig(doc(name)), (e: unknown) => e instanceof ConfigError && new RegExp(key).test(e.message), `${where}: ${JSON.stringify(name)}`);
    }
  }
});
