/**
 * Transparent mode's pure parts: config validation of transparent listeners and the
 * `transparent` section, the nft TPROXY script and policy-route builders, the loop guard, and
 * the PAC file leaving transparent listeners out.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import fc from 'fast-check';
import { pacDirectives } from '../../src/admin/pac';
import { loadConfig, parseRunFlags } from '../../src/config/load';
import { MAX_UPLINKS } from '../../src/config/steering';
import { ConfigError, DEFAULTS, validateConfig } from '../../src/config/schema';
import { isOwnEndpoint, tproxyTargets } from '../../src/proxy/transparent';
import { CC_SLOT } from '../../src/steering/congestion';
import { OWN_BASE, TPROXY_MARK, TPROXY_SLOT, buildTproxyRouting, isOwnedPref, slotTable } from '../../src/sys/iproute';
import { buildTproxyScript } from '../../src/sys/nft';

const CLIENTS = { allowClients: ['10.0.0.0/8'] };
const tp = (listen: string, extra: Record<string, unknown> = {}): Record<string, unknown> => ({ protocol: 'transparent', listen, ...extra });
const config = (listeners: unknown[], rest: Record<string, unknown> = {}): ReturnType<typeof validateConfig> => validateConfig({ listeners, access: CLIENTS, ...rest });
const refused = (fn: () => unknown, re: RegExp): void => assert.throws(fn, (e: Error) => e instanceof ConfigError && re.test(e.message), String(re));

test('a transparent listener takes its own port by default, or the ports listed', () => {
  const c = config([tp('127.0.0.1:443'), tp('0.0.0.0:15001', { name: 'any', ports: [15001, 8080, 8080] }), { protocol: 'http', listen: '127.0.0.1:3128' }]);
  assert.deepEqual(
    c.listeners.map((l) => [l.name, l.protocol, l.ports]),
    [
      ['transparent', 'transparent', [443]],
      ['any', 'transparent', [15001, 8080]],
      ['http', 'http', undefined],
    ],
  );
  assert.deepEqual(c.transparent, DEFAULTS.transparent);
  assert.deepEqual(DEFAULTS.transparent, { interfaces: [], rules: true });
});

test('transparent listeners: bad input is refused with the path to it', () => {
  refused(() => config([tp('localhost:443')]), /listeners\.\[0\]\.listen: .*IP address/);
  refused(() => config([tp('127.0.0.1:0')]), /fixed port/);
  refused(() => config([tp('127.0.0.1:443', { ports: [] })]), /listeners\.\[0\]\.ports/);
  refused(() => config([tp('127.0.0.1:443', { ports: [0] })]), /ports/);
  refused(() => config([tp('127.0.0.1:443', { ports: ['443'] })]), /ports/);
  refused(() => config([tp('127.0.0.1:443', { ports: 443 })]), /ports/);
  refused(() => config([{ protocol: 'http', listen: '127.0.0.1:3128', ports: [80] }]), /listeners\.\[0\]\.ports: unknown key/);
  refused(() => config([{ protocol: 'tproxy', listen: '127.0.0.1:3128' }]), /protocol: must be one of http, socks, mixed, transparent/);
});

test('one listener per redirected port and family; clients must be listed', () => {
  refused(() => config([tp('127.0.0.1:443'), tp('0.0.0.0:15001', { ports: [443] })]), /both take redirected IPv4 port 443/);
  assert.doesNotThrow(() => config([tp('127.0.0.1:443'), tp('[::1]:443')]), 'IPv4 and IPv6 each have their own');
  refused(() => validateConfig({ listeners: [tp('127.0.0.1:443')] }), /allowClients is empty/);
});

test('the transparent section: interfaces and rules, nothing else', () => {
  const c = config([tp('127.0.0.1:80')], { transparent: { interfaces: ['wlan0', 'wwan0'], rules: false } });
  assert.deepEqual(c.transparent, { interfaces: ['wlan0', 'wwan0'], rules: false });
  refused(() => config([tp('127.0.0.1:80')], { transparent: { ports: [80] } }), /transparent\.ports: unknown key/);
  refused(() => config([tp('127.0.0.1:80')], { transparent: { interfaces: ['bad name!'] } }), /transparent\.interfaces/);
  refused(() => config([tp('127.0.0.1:80')], { transparent: { rules: 'yes' } }), /transparent\.rules/);
  refused(() => config([tp('127.0.0.1:80')], { transparent: [] }), /transparent: must be a mapping/);
});

test('flags: --transparent and --transparent-interface', () => {
  const c = loadConfig(parseRunFlags(['--transparent', '127.0.0.1:80', '--transparent', '[::]:80', '--transparent-interface', 'p1', '--allow-client', '10.0.0.0/8']));
  assert.deepEqual(
    c.listeners.map((l) => [l.protocol, l.host, l.port, l.ports]),
    [
      ['transparent', '127.0.0.1', 80, [80]],
      ['transparent', '::', 80, [80]],
    ],
  );
  assert.deepEqual(c.transparent.interfaces, ['p1']);
});

test('the TPROXY script: one atomic replace, own addresses untouched, a redirect per listener', () => {
  const c = config([tp('127.0.0.1:443'), tp('0.0.0.0:15001', { ports: [15001, 8080] }), tp('[::]:443'), tp('[fd00::1]:80')]);
  const script = buildTproxyScript(tproxyTargets(c.listeners), ['p1', 'p2'], TPROXY_MARK, ['10.20.1.0/24', '10.30.0.7', 'fd00::/64']);
  assert.equal(
    script,
    [
      'table inet mptcp_proxy_tproxy',
      'delete table inet mptcp_proxy_tproxy',
      'table inet mptcp_proxy_tproxy {',
      '  comment "owned by mptcp-proxy: transparent mode (TPROXY)"',
      '  chain divert {',
      '    type filter hook prerouting priority mangle; policy accept;',
      '    fib daddr type local return',
      '    iifname { "p1", "p2" } ip saddr { 10.20.1.0/24, 10.30.0.7/32 } tcp dport 443 tproxy ip to 127.0.0.1:443 meta mark set 0x4d500040 accept',
      '    iifname { "p1", "p2" } ip saddr { 10.20.1.0/24, 10.30.0.7/32 } tcp dport { 15001, 8080 } tproxy ip to :15001 meta mark set 0x4d500040 accept',
      '    iifname { "p1", "p2" } ip6 saddr { fd00::/64 } tcp dport 443 tproxy ip6 to :443 meta mark set 0x4d500040 accept',
      '    iifname { "p1", "p2" } ip6 saddr { fd00::/64 } tcp dport 80 tproxy ip6 to [fd00::1]:80 meta mark set 0x4d500040 accept',
      '  }',
      '}',
    ].join('\n'),
  );
  assert.doesNotMatch(buildTproxyScript(tproxyTargets(c.listeners), [], TPROXY_MARK, ['10.0.0.0/8']), /iifname/, 'no interfaces = every interface');
  assert.doesNotMatch(buildTproxyScript(tproxyTargets(c.listeners), [], TPROXY_MARK, ['10.0.0.0/8']), /ip6/, 'no IPv6 client range = no IPv6 diversion');
  assert.throws(() => buildTproxyScript([], ['p1"; flush ruleset; "'], TPROXY_MARK, []), TypeError);
});

test('the policy route: the owned slot steering never uses, route before rule', () => {
  const t = slotTable(TPROXY_SLOT);
  assert.ok(isOwnedPref(t), 'cleanup finds it by ownership');
  assert.ok(TPROXY_SLOT >= MAX_UPLINKS, 'no uplink slot collides');
  assert.notEqual(TPROXY_SLOT, CC_SLOT, 'nor steering’s congestion-control route');
  assert.equal(t, OWN_BASE + 64);
  assert.deepEqual(buildTproxyRouting(false), [`route replace local 0.0.0.0/0 dev lo table ${t}`, `rule add fwmark 0x4d500040 table ${t} pref ${t}`]);
  assert.deepEqual(buildTproxyRouting(true), [`-6 route replace local ::/0 dev lo table ${t}`, `-6 rule add fwmark 0x4d500040 table ${t} pref ${t}`]);
});

test('loop guard: the proxy’s own endpoints, wildcards on every local address, any spelling', () => {
  const local = (): Set<string> => new Set(['127.0.0.1', '10.1.1.1', '::1']);
  const own = [
    { host: '0.0.0.0', port: 15001 },
    { host: '127.0.0.1', port: 9464 },
    { host: '10.1.1.1', port: 3128 },
  ];
  assert.equal(isOwnEndpoint({ host: '10.1.1.1', port: 15001 }, own, local), true, 'wildcard listener on a local address');
  assert.equal(isOwnEndpoint({ host: '::ffff:10.1.1.1', port: 15001 }, own, local), true, 'IPv4-mapped');
  assert.equal(isOwnEndpoint({ host: '10.1.1.1', port: 3128 }, own, local), true);
  assert.equal(isOwnEndpoint({ host: '127.1', port: 9464 }, own, local), true, 'inet_aton spelling');
  assert.equal(isOwnEndpoint({ host: '10.9.9.9', port: 15001 }, own, local), false, 'a foreign host on the wildcard port is a real destination');
  assert.equal(isOwnEndpoint({ host: '10.1.1.1', port: 80 }, own, local), false);
  let asked = 0;
  isOwnEndpoint({ host: '10.1.1.1', port: 443 }, own, () => (asked++, local()));
  assert.equal(asked, 0, 'local addresses are read only when a wildcard port matches');
});

test('loop guard (property): a destination port no listener uses is never the proxy', () => {
  const ep = fc.record({ host: fc.oneof(fc.ipV4(), fc.constantFrom('0.0.0.0', '::')), port: fc.integer({ min: 1, max: 65535 }) });
  fc.assert(
    fc.property(fc.array(ep, { maxLength: 6 }), fc.ipV4(), fc.integer({ min: 1, max: 65535 }), (own, host, port) => {
      fc.pre(!own.some((e) => e.port === port));
      return !isOwnEndpoint({ host, port }, own, () => new Set([host]));
    }),
  );
});

test('the PAC file never advertises a transparent listener', () => {
  const c = config([tp('127.0.0.1:80'), { protocol: 'http', listen: '127.0.0.1:3128' }]);
  assert.deepEqual(pacDirectives(c.listeners), ['PROXY 127.0.0.1:3128']);
});
