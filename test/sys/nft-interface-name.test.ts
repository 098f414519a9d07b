/**
 * Interface names in nft scripts: every name the config accepts builds a rule (one rule for both),
 * and the rule nft makes of it matches that name byte for byte (a final '*' is not a wildcard).
 * The live part loads the script with the real nft in a namespace of its own.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { test } from 'node:test';
import fc from 'fast-check';
import { isInterfaceName } from '../../src/core/address';
import { validateConfig } from '../../src/config/schema';
import { buildTproxyScript } from '../../src/sys/nft';
import { buildMssClampScript } from '../../src/tuning/mss';

test('a name the config accepts builds nft rules, one the config refuses does not', () => {
  fc.assert(
    fc.property(fc.oneof(fc.string({ maxLength: 17 }), fc.constantFrom('wwan+0', 'eth*', 'a"b', 'a\\b', 'p1"; flush ruleset; "')), (name) => {
      let configOk = true;
      try {
        validateConfig({ tuning: { mssInterfaces: [name] } });
      } catch {
        configOk = false;
      }
      let nftOk = true;
      try {
        buildMssClampScript([name]);
        buildTproxyScript([], [name], 1, []);
      } catch (e) {
        assert.ok(e instanceof TypeError);
        nftOk = false;
      }
      return configOk === nftOk && nftOk === isInterfaceName(name);
    }),
    { numRuns: 2000 },
  );
});

test('names are quoted, and a final * is escaped', () => {
  assert.match(buildMssClampScript(['wwan+0', 'eth*', 'a*b']), /oifname \{ "wwan\+0", "eth\\\*", "a\*b" \} /);
});

/** The set elements nft sends to the kernel for `oifname { ... }`: each a 16-byte name. */
function loadedNames(script: string): string[] {
  const ns = `mpx-nftname-${process.pid}`;
  execFileSync('ip', ['netns', 'add', ns]);
  try {
    const out = execFileSync('ip', ['netns', 'exec', ns, 'nft', '--debug=netlink', '-f', '-'], { input: script, encoding: 'utf8' });
    // "element 6e617777 0000302b 00000000 00000000  : 0 [end]": 32-bit words, little-endian.
    return [...out.matchAll(/element((?: [0-9a-f]{8}){4})/g)].map((m) => {
      const words = m[1]!.trim().split(' ');
      const bytes = Buffer.concat(words.map((w) => Buffer.from(w, 'hex').reverse()));
      return bytes.subarray(0, bytes.indexOf(0) < 0 ? 16 : bytes.indexOf(0)).toString('latin1');
    });
  } finally {
    execFileSync('ip', ['netns', 'del', ns]);
  }
}

test('nft loads the names as they are: + kept, a final * literal', () => {
  const names = ['wwan+0', 'eth*', 'veth@if3', 'x'.repeat(15)];
  assert.deepEqual(loadedNames(buildMssClampScript(names)).sort(), [...names].sort());
});
