/**
 * Unit and property tests for the steering engine's pure parts: config validation and rate
 * parsing, policy matching (first match wins), the HTB health counter, and the nft / tc / ip
 * command builders and output parsers.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import net from 'node:net';
import { parseRate, validateSteeringConfig, type PolicyConfig } from '../../src/config/steering';
import { ConfigError } from '../../src/config/config-error';
import { compilePolicies, domainMatches, firstMatch, type SubflowSubject } from '../../src/steering/policy';
import { HealthCounter } from '../../src/steering/health';
import { desiredSubflowLimit } from '../../src/steering/paths';
import { buildElementScript, buildTableScript } from '../../src/sys/nft';
import {
  buildClass,
  buildIfbRoot,
  buildIngressRedirect,
  buildLeaf,
  buildRootAdd,
  buildU32Add,
  buildU32Delete,
  classId,
  htbQuantum,
  leafLimitBytes,
  parseFilterPrefs,
  parseIngressDevs,
  parseRootQdiscs,
  rootOwner,
} from '../../src/sys/tc';
import { CC_TABLE, buildCcRouting, cappedClientCidrs, networkOf, pickCongestion, splitRange } from '../../src/steering/congestion';
import { parseRouteGet } from '../../src/sys/iproute';
import { buildEndpointAdd, buildEndpointBackup, buildIfbAdd, buildUplinkRouting, parseLinkNames, isOwnedPref, parseEndpoints, parseLimits, parseOwnedTables, parseRules, slotMark, slotTable } from '../../src/sys/iproute';

const subject = (o: Partial<SubflowSubject> = {}): SubflowSubject => ({
  client: '10.20.1.7',
  local: '192.0.2.1',
  interface: 'eth1',
  kind: 'initial',
  destinationHost: 'video.example.com',
  destinationAddress: '198.51.100.9',
  user: 'alice',
  listener: 'http',
  ...o,
});

describe('rates', () => {
  it('parses tc-style units into bits/s', () => {
    assert.equal(parseRate('5mbit'), 5_000_000);
    assert.equal(parseRate('500kbit'), 500_000);
    assert.equal(parseRate('1.5gbit'), 1_500_000_000);
    assert.equal(parseRate('2mbps'), 16_000_000); // tc: bps = bytes per second
    assert.equal(parseRate('1mibit'), 1_048_576);
    assert.equal(parseRate(64000), 64000);
    assert.equal(parseRate('5 MBit'), 5_000_000);
  });
  it('refuses what is not a rate', () => {
    for (const bad of ['', 'fast', '5 megs', '-5mbit', '5mbit/s', null, {}, [], Number.NaN, 0, '0mbit']) assert.equal(parseRate(bad), null, String(bad));
  });
  it('property: N<unit> is N times the unit, for every unit', () => {
    const units: [string, number][] = [['bit', 1], ['kbit', 1e3], ['mbit', 1e6], ['gbit', 1e9], ['kbps', 8e3]];
    fc.assert(fc.property(fc.integer({ min: 1, max: 100_000 }), fc.constantFrom(...units), (n, [u, f]) => parseRate(`${n}${u}`) === Math.round(n * f)));
  });
  it('property: never throws on arbitrary input', () => {
    fc.assert(fc.property(fc.anything(), (v) => {
      const r = parseRate(v);
      return r === null || (Number.isInteger(r) && r > 0);
    }));
  });
});

describe('steering config validation', () => {
  const ok = (raw: Record<string, unknown>) => validateSteeringConfig(raw);
  const bad = (raw: Record<string, unknown>, re: RegExp): void => {
    assert.throws(() => validateSteeringConfig(raw), (e: unknown) => e instanceof ConfigError && re.test(e.message) && !e.message.includes('\n'));
  };
  it('accepts the contract example and fills rate/ceil', () => {
    const c = ok({ policies: [{ name: 'slow-path1', match: { client: '10.20.1.0/24' }, rate: '5mbit' }] });
    assert.deepEqual(c.policies[0], { name: 'slow-path1', match: { client: '10.20.1.0/24' }, rate: 5e6, ceil: 5e6, direction: 'both' });
    assert.equal(ok({ policies: [{ name: 'up', rate: '1mbit', direction: 'upload' }] }).policies[0]!.direction, 'upload');
    assert.deepEqual(c.uplinks, []);
  });
  it('defaults: no sections, empty lists', () => assert.deepEqual(ok({}), { policies: [], uplinks: [] }));
  it('uplinks: probe defaults, signal follows source', () => {
    const c = ok({ uplinks: [{ name: 'a', interface: 'eth0', source: '192.0.2.1', gateway: '192.0.2.254', probe: '192.0.2.254' }, { name: 'b', interface: 'eth1' }] });
    assert.deepEqual(c.uplinks[0]!.probe, { host: '192.0.2.254', port: 7, intervalMs: 200, timeoutMs: 500, downAfter: 3, upAfter: 3 });
    assert.equal(c.uplinks[0]!.signal, true);
    assert.equal(c.uplinks[1]!.signal, false);
  });
  it('one clear line per mistake', () => {
    bad({ policies: [{ name: 'p', match: { client: '10.20.1.0/33' }, rate: '5mbit' }] }, /^policies\[0\]\.match\.client: .*bad prefix/);
    bad({ policies: [{ name: 'p', rate: '5 megs' }] }, /^policies\[0\]\.rate: "5 megs" is not a rate/);
    bad({ policies: [{ name: 'p', rate: '5mbit', ceil: '1mbit' }] }, /ceil: must not be below rate/);
    bad({ policies: [{ name: 'p', uplink: 'nope' }] }, /uplink: "nope" is not a configured uplink/);
    bad({ policies: [{ name: 'p', match: { client: '10.0.0.0/8' }, backup: true }] }, /backup: the kernel marks backup per proxy address/);
    bad({ policies: [{ name: 'p', match: { colour: 'red' } }] }, /match\.colour: unknown key/);
    bad({ policies: [{ name: 'p' }, { name: 'p' }] }, /policies\[1\]\.name: "p" is used twice/);
    bad({ policies: [{ name: 'a', rate: '1mbit', share: 's' }, { name: 'b', rate: '2mbit', share: 's' }] }, /share: "s" already has rate\/ceil/);
    bad({ uplinks: [{ name: 'a' }] }, /uplinks\[0\]\.interface: is required/);
    bad({ uplinks: [{ name: 'a', interface: 'eth0', probe: 'example.com' }] }, /probe\.target: "example.com" is not IP/);
    bad({ policies: 'x' }, /^policies: must be a list/);
    bad({ policies: [{ name: 'p', rate: '1mbit', direction: 'sideways' }] }, /direction: must be one of: both, download, upload/);
    bad({ policies: [{ name: 'p', direction: 'upload' }] }, /direction: needs a rate/);
  });
  it('property: any validation failure is a ConfigError, never another exception', () => {
    fc.assert(fc.property(fc.anything(), fc.anything(), (policies, uplinks) => {
      try {
        validateSteeringConfig({ policies, uplinks });
      } catch (e) {
        return e instanceof ConfigError;
      }
      return true;
    }));
  });
});

describe('policy matching', () => {
  const pol = (name: string, match: PolicyConfig['match']): PolicyConfig => ({ name, match, rate: 1e6, ceil: 1e6 });
  it('matches each key', () => {
    const cases: [PolicyConfig['match'], boolean][] = [
      [{ client: '10.20.1.0/24' }, true],
      [{ client: '10.20.2.0/24' }, false],
      [{ local: '192.0.2.1' }, true],
      [{ interface: 'eth1' }, true],
      [{ interface: 'eth2' }, false],
      [{ kind: 'join' }, false],
      [{ destination: 'example.com' }, true],
      [{ destination: 'ample.com' }, false],
      [{ destination: '198.51.100.0/24' }, true],
      [{ user: 'alice' }, true],
      [{ user: 'bob' }, false],
      [{ listener: 'http' }, true],
      [{ client: '10.20.1.0/24', user: 'bob' }, false],
      [{}, true],
    ];
    for (const [m, want] of cases) assert.equal(firstMatch(compilePolicies([pol('p', m)]), subject())?.config.name === 'p', want, JSON.stringify(m));
  });
  it('unknown subject fields never match', () => {
    const s = subject({ user: null, destinationHost: null, destinationAddress: null, interface: null });
    for (const m of [{ user: 'alice' }, { destination: 'example.com' }, { destination: '0.0.0.0/0' }, { interface: 'eth1' }]) assert.equal(firstMatch(compilePolicies([pol('p', m)]), s), null);
  });
  it('IPv4-mapped client addresses match IPv4 ranges', () => {
    assert.equal(firstMatch(compilePolicies([pol('p', { client: '10.20.1.0/24' })]), subject({ client: '::ffff:10.20.1.9' }))?.config.name, 'p');
  });
  it('domain suffixes match the name and its subdomains only', () => {
    assert.ok(domainMatches('example.com', 'EXAMPLE.com.'));
    assert.ok(domainMatches('example.com', 'a.b.example.com'));
    assert.ok(!domainMatches('example.com', 'badexample.com'));
  });
  it('property: first match wins, i.e. the result is the lowest-index policy that matches alone', () => {
    const octet = fc.integer({ min: 0, max: 3 });
    const match = fc.record({ client: fc.option(octet.map((o) => `10.20.${o}.0/24`), { nil: undefined }), kind: fc.option(fc.constantFrom('initial' as const, 'join' as const), { nil: undefined }) }).map((m) => Object.fromEntries(Object.entries(m).filter(([, v]) => v !== undefined)) as PolicyConfig['match']);
    fc.assert(fc.property(fc.array(match, { maxLength: 6 }), octet, fc.constantFrom('initial' as const, 'join' as const), (matches, o, kind) => {
      const policies = matches.map((m, i) => pol(`p${i}`, m));
      const s = subject({ client: `10.20.${o}.5`, kind });
      const got = firstMatch(compilePolicies(policies), s);
      const alone = policies.findIndex((p) => firstMatch(compilePolicies([p]), s) !== null);
      return alone === -1 ? got === null : got?.index === alone;
    }));
  });
});

describe('uplink health counter (BFD-like)', () => {
  it('down after N misses in a row, up after M successes in a row', () => {
    const h = new HealthCounter(3, 2);
    assert.deepEqual([false, false, true, false, false].map((ok) => h.observe(ok)), [null, null, null, null, null]);
    assert.equal(h.observe(false), 'down');
    assert.deepEqual([true, false, true].map((ok) => h.observe(ok)), [null, null, null]);
    assert.equal(h.observe(true), 'up');
  });
  it('property: state changes only after the configured streak', () => {
    fc.assert(fc.property(fc.integer({ min: 1, max: 5 }), fc.integer({ min: 1, max: 5 }), fc.array(fc.boolean(), { maxLength: 60 }), (down, up, seq) => {
      const h = new HealthCounter(down, up);
      let streak = 0;
      let state: 'up' | 'down' = 'up';
      for (const ok of seq) {
        streak = (state === 'up') === ok ? 0 : streak + 1;
        const t = h.observe(ok);
        if (streak === (state === 'up' ? down : up)) {
          state = state === 'up' ? 'down' : 'up';
          streak = 0;
          if (t !== state) return false;
        } else if (t !== null) return false;
      }
      return h.state === state;
    }));
  });
});

describe('command builders', () => {
  it('nft: one owned table, 4-tuple maps to classid and mark, idempotent create', () => {
    const t = buildTableScript();
    assert.match(t, /^table inet mptcp_proxy\ndelete table inet mptcp_proxy\ntable inet mptcp_proxy \{/);
    assert.match(t, /map sf4_class \{ type ipv4_addr \. inet_service \. ipv4_addr \. inet_service : classid; \}/);
    assert.match(t, /type route hook output priority mangle;[\s\S]*meta mark set ip saddr \. tcp sport \. ip daddr \. tcp dport map @sf4_mark/);
    assert.match(t, /meta priority set ip6 saddr \. tcp sport \. ip6 daddr \. tcp dport map @sf6_class/);
    const tuple = { localAddr: '10.0.0.1', localPort: 3128, remoteAddr: '10.20.1.2', remotePort: 40000 };
    const v6 = { localAddr: '2001:db8::1', localPort: 3128, remoteAddr: '2001:db8::2', remotePort: 5 };
    assert.equal(
      buildElementScript([
        { op: 'add', map: 'class', tuple, value: classId(26) },
        { op: 'add', map: 'mark', tuple: v6, value: slotMark(0) },
        { op: 'delete', map: 'class', tuple },
      ]),
      [
        'add element inet mptcp_proxy sf4_class { 10.0.0.1 . 3128 . 10.20.1.2 . 40000 : 4d50:1a }',
        'add element inet mptcp_proxy sf6_mark { 2001:db8::1 . 3128 . 2001:db8::2 . 5 : 0x4d500001 }',
        'delete element inet mptcp_proxy sf4_class { 10.0.0.1 . 3128 . 10.20.1.2 . 40000 }',
      ].join('\n'),
    );
    assert.throws(() => buildElementScript([{ op: 'add', map: 'class', tuple }]), TypeError);
  });
  it('tc: owned HTB root, classes with explicit quantum, short leaves', () => {
    assert.equal(buildRootAdd('eth1'), 'qdisc add dev eth1 root handle 4d50: htb default 0');
    assert.equal(buildClass('add', 'eth1', 1, 5e6, 5e6), 'class add dev eth1 parent 4d50: classid 4d50:1 htb rate 5000000bit ceil 5000000bit quantum 62500');
    assert.equal(buildLeaf('replace', 'eth1', 16, 5e6), 'qdisc replace dev eth1 parent 4d50:10 bfifo limit 31250');
    assert.equal(leafLimitBytes(500e3), 8 * 1514, 'at least 8 full-size frames at low rates');
    assert.equal(htbQuantum(1e3), 1514);
    assert.equal(htbQuantum(1e11), 200_000);
    fc.assert(fc.property(fc.integer({ min: 1000, max: 4e11 }), (r) => htbQuantum(r) >= 1514 && htbQuantum(r) <= 200_000 && leafLimitBytes(r) >= 8 * 1514 && leafLimitBytes(r) >= r / 8 / 20));
  });
  it('tc: uploads on an owned IFB, redirect marked by our filter preference, u32 on the reversed 4-tuple', () => {
    assert.deepEqual(buildIfbRoot('mpx-ifb0'), [
      'qdisc add dev mpx-ifb0 root handle 4d50: htb default 0',
      'filter add dev mpx-ifb0 parent 4d50: pref 19792 protocol ip u32',
      'filter add dev mpx-ifb0 parent 4d50: pref 19793 protocol ipv6 u32',
    ]);
    assert.equal(buildIngressRedirect('p1', 'mpx-ifb0'), 'filter add dev p1 parent ffff: pref 19792 protocol all u32 match u32 0 0 action mirred egress redirect dev mpx-ifb0');
    const t = { src: '10.20.1.2', srcPort: 40000, dst: '10.0.0.1', dstPort: 3128, ipv6: false };
    assert.equal(
      buildU32Add('mpx-ifb0', 26, t, 3),
      'filter add dev mpx-ifb0 parent 4d50: pref 19792 protocol ip handle 800::1a u32 match ip protocol 6 0xff match ip src 10.20.1.2/32 match ip dst 10.0.0.1/32 match ip sport 40000 0xffff match ip dport 3128 0xffff flowid 4d50:3',
    );
    assert.match(buildU32Add('mpx-ifb0', 1, { ...t, src: '2001:db8::2', dst: '2001:db8::1', ipv6: true }, 3), /pref 19793 protocol ipv6 handle 801::1 u32 match ip6 protocol 6 0xff match ip6 src 2001:db8::2\/128 /);
    assert.equal(buildU32Delete('mpx-ifb0', 26, false), 'filter del dev mpx-ifb0 parent 4d50: pref 19792 protocol ip handle 800::1a u32');
    assert.deepEqual(parseIngressDevs([{ kind: 'ingress', dev: 'p1', handle: 'ffff:' }, { kind: 'htb', dev: 'p2', root: true }, null]), ['p1']);
    assert.deepEqual(parseFilterPrefs([{ pref: 19792 }, { pref: 19792, options: {} }, { pref: 49152 }, 'x']), [19792, 49152]);
    assert.deepEqual(parseLinkNames([{ ifname: 'mpx-ifb0' }, { ifname: 7 }, null]), ['mpx-ifb0']);
    assert.deepEqual(buildIfbAdd('mpx-ifb1'), ['link add mpx-ifb1 type ifb', 'link set mpx-ifb1 up']);
  });
  it('tc: root ownership from `tc -j qdisc show`', () => {
    const all = parseRootQdiscs([
      { kind: 'noqueue', handle: '0:', dev: 'a', root: true },
      { kind: 'htb', handle: '4d50:', dev: 'b', root: true },
      { kind: 'htb', handle: '1:', dev: 'c', root: true },
      { kind: 'pfifo', handle: '8001:', dev: 'b', parent: '4d50:1' },
    ]);
    assert.deepEqual(all.map(rootOwner), ['default', 'ours', 'foreign']);
    assert.deepEqual(parseRootQdiscs([{ kind: 'htb', handle: '4d50:', root: true }], 'p1'), [{ dev: 'p1', kind: 'htb', handle: '4d50:' }]);
    assert.equal(rootOwner(undefined), 'default');
    assert.deepEqual(parseRootQdiscs('garbage'), []);
  });
  it('ip: uplink routing in the owned range, endpoints, limits', () => {
    assert.deepEqual(buildUplinkRouting({ slot: 1, dev: 'wan2', gateway: '192.0.2.254', source: '192.0.2.1' }), [
      `route replace default via 192.0.2.254 dev wan2 src 192.0.2.1 table ${slotTable(1)}`,
      `rule add fwmark 0x4d500002 table ${slotTable(1)} pref ${slotTable(1)}`,
    ]);
    assert.ok(isOwnedPref(slotTable(0)) && !isOwnedPref(32766) && !isOwnedPref(0x4d50));
    assert.equal(buildEndpointAdd(224, '192.0.2.1', ['signal'], 'wan1'), 'mptcp endpoint add 192.0.2.1 id 224 dev wan1 signal');
    assert.equal(buildEndpointBackup(224, false), 'mptcp endpoint change id 224 nobackup');
    assert.deepEqual(parseLimits('add_addr_accepted 0 subflows 2 \n'), { subflows: 2, addAddrAccepted: 0 });
    assert.equal(parseLimits('nonsense'), null);
    assert.deepEqual(parseEndpoints([{ address: '10.9.9.1', id: 250, signal: true, backup: true, dev: 'v1' }, { bogus: 1 }]), [{ id: 250, address: '10.9.9.1', dev: 'v1', flags: ['signal', 'backup'] }]);
    assert.deepEqual(parseRules([{ priority: 19793, src: 'all', fwmark: '0x4d500001', table: '19793' }]), [{ priority: 19793, table: '19793', fwmark: '0x4d500001' }]);
    assert.deepEqual(parseOwnedTables([{ table: '19793' }, { table: 'main' }, { table: '19793' }, { dst: 'x' }]), [19793]);
    assert.equal(desiredSubflowLimit(2), 3);
    assert.equal(desiredSubflowLimit(0), 1);
    assert.equal(desiredSubflowLimit(10), 8);
  });
  it('congestion routes: capped client ranges, network address, cubic else reno, owned slot', () => {
    const pol = (o: Record<string, unknown>): PolicyConfig => ({ name: 'p', match: {}, ...o }) as PolicyConfig;
    assert.deepEqual(
      cappedClientCidrs([
        pol({ match: { client: '10.20.1.7/24' }, rate: 5e6, direction: 'both' }),
        pol({ match: { client: '10.20.2.0/24' }, rate: 5e6, direction: 'upload' }),
        pol({ match: { client: '0.0.0.0/0' }, rate: 5e6, direction: 'download' }),
        pol({ match: { client: '10.20.3.0/24' }, uplink: 'wan1' }),
        pol({ match: { client: '2001:db8:0:1::9/64' }, rate: 1e6, direction: 'download' }),
        pol({ match: { client: '10.20.1.0/24' }, rate: 9e6, direction: 'download' }),
      ]),
      ['10.20.1.0/24', '2001:db8:0:1:0:0:0:0/64'],
    );
    // Modes: every path but the first of active-standby; every load-balance path.
    const paths = [{ name: 'a', client: '10.30.1.0/24' }, { name: 'b', client: '10.30.2.0/24' }];
    assert.deepEqual(cappedClientCidrs([pol({ mode: { name: 'active-standby', paths } })]), ['10.30.2.0/24']);
    assert.deepEqual(cappedClientCidrs([pol({ mode: { name: 'load-balance', paths, weights: { a: 3, b: 1 } } })]), ['10.30.1.0/24', '10.30.2.0/24']);
    assert.equal(networkOf('10.20.1.255/23'), '10.20.0.0/23');
    assert.equal(networkOf('192.0.2.9/32'), '192.0.2.9/32');
    fc.assert(
      fc.property(fc.ipV4(), fc.integer({ min: 0, max: 32 }), (ip, len) => {
        const n = networkOf(`${ip}/${len}`);
        const b = new net.BlockList();
        b.addSubnet(n.split('/')[0]!, len);
        // Idempotent, and the range still holds the address it came from.
        return networkOf(n) === n && b.check(ip);
      }),
    );
    assert.equal(splitRange('10.20.1.0/24', ['10.20.1.0/24']), false, 'the range\'s own route');
    assert.equal(splitRange('10.20.0.0/16', []), false, 'covered by a wider route (default)');
    assert.equal(splitRange('10.0.0.0/8', ['10.1.0.0/16', '10.2.0.0/16']), true);
    assert.equal(splitRange('10.20.1.7/32', ['10.20.1.7']), false, 'host route without a prefix');
    assert.equal(splitRange('10.20.1.0/24', ['10.20.1.0/24', '10.20.1.9']), true);
    assert.equal(pickCongestion('reno bbr cubic'), 'cubic');
    assert.equal(pickCongestion('reno bbr'), 'reno');
    assert.equal(pickCongestion(null), 'reno');
    assert.equal(CC_TABLE, slotTable(32));
    assert.ok(isOwnedPref(CC_TABLE));
    assert.deepEqual(
      buildCcRouting(
        [
          { cidr: '10.20.1.0/24', hop: { dev: 'p1', prefsrc: '10.20.1.1' }, ipv6: false },
          { cidr: '2001:db8::/64', hop: { dev: 'p2', gateway: 'fe80::1' }, ipv6: true },
        ],
        'cubic',
      ),
      [
        `route replace 10.20.1.0/24 dev p1 src 10.20.1.1 congctl lock cubic table ${CC_TABLE}`,
        `-6 route replace 2001:db8::/64 via fe80::1 dev p2 congctl lock cubic table ${CC_TABLE}`,
        `rule add to 10.20.1.0/24 table ${CC_TABLE} pref ${CC_TABLE}`,
        `-6 rule add to 2001:db8::/64 table ${CC_TABLE} pref ${CC_TABLE}`,
      ],
    );
    assert.deepEqual(parseRouteGet([{ dst: '10.20.1.0', dev: 'p1', prefsrc: '10.20.1.1', flags: [] }]), { dev: 'p1', prefsrc: '10.20.1.1' });
    assert.deepEqual(parseRouteGet([{ dst: '10.9.0.1', gateway: '10.9.0.254', dev: 'wan' }]), { dev: 'wan', gateway: '10.9.0.254' });
    assert.equal(parseRouteGet([]), null);
    assert.equal(parseRouteGet('x'), null);
  });
});
