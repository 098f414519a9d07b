/**
 * The doctor's checks over synthetic facts: each misconfiguration yields ✗ with the right fix,
 * a healthy system yields ✓, and unreadable facts never throw.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { DEFAULTS, type Config } from '../../src/config/schema';
import {
  bufferNeed,
  CAP_NET_ADMIN,
  CAP_NET_BIND_SERVICE,
  CAP_NET_RAW,
  MPTCP_BUFFER_FLOOR,
  multipathInterfaces,
  runChecks,
  sysctlKeys,
  transparentFamilies,
  type CheckResult,
  type ClusterFacts,
  type DoctorFacts,
  type DoctorInput,
  type TransparentFacts,
} from '../../src/doctor/checks';
import { formatResults } from '../../src/doctor/doctor-command';
import { slotTable, TPROXY_MARK, TPROXY_SLOT, type Endpoint } from '../../src/sys/iproute';
import { buildTproxyProbeScript, TPROXY_PROBE_TABLE } from '../../src/sys/nft';
import { sysctlPath } from '../../src/sys/sysctl';
import { parseKernelConfig, kernelFeature } from '../../src/sys/kernel-features';

const ALL_CAPS = (1n << BigInt(CAP_NET_ADMIN)) | (1n << BigInt(CAP_NET_RAW)) | (1n << BigInt(CAP_NET_BIND_SERVICE));

function healthy(over: Partial<DoctorFacts> = {}, sysctl: Record<string, string | null> = {}): DoctorFacts {
  return {
    sysctl: {
      'net.mptcp.enabled': '1',
      'net.mptcp.path_manager': 'kernel',
      'net.mptcp.pm_type': '0',
      'net.ipv4.tcp_rmem': '4096 131072 33554432',
      'net.ipv4.tcp_wmem': '4096 16384 4194304',
      'net.ipv4.conf.all.rp_filter': '0',
      'net.ipv4.conf.eth0.rp_filter': '2',
      'net.ipv4.conf.eth1.rp_filter': '2',
      ...sysctl,
    },
    limits: { subflows: 4, addAddrAccepted: 0 },
    endpoints: [{ id: 2, address: '192.0.2.2', dev: 'eth1', flags: ['signal'] }],
    features: { htb: 'builtin', ingress: 'builtin', ifb: 'module', u32: 'builtin', mirred: 'builtin' },
    tools: { nft: true },
    mptcpSocket: { ok: true },
    transparent: null,
    cluster: null,
    capEff: ALL_CAPS,
    errors: {},
    ...over,
  };
}

function input(over: Partial<Config['steering']> = {}, extra: Partial<DoctorInput> = {}): DoctorInput {
  return {
    config: {
      listeners: DEFAULTS.listeners,
      transparent: DEFAULTS.transparent,
      cluster: DEFAULTS.cluster,
      paths: DEFAULTS.paths,
      steering: {
        policies: [],
        uplinks: [
          { name: 'dsl', interface: 'eth0', source: '192.0.2.1' },
          { name: 'lte', interface: 'eth1', source: '192.0.2.2' },
        ],
        ...over,
      },
    },
    pathMbit: [],
    maxRttMs: null,
    ...extra,
  };
}

const TPROXY_PREF = slotTable(TPROXY_SLOT);
const OUR_RULE = { priority: TPROXY_PREF, table: String(TPROXY_PREF), fwmark: `0x${TPROXY_MARK.toString(16)}` };

/** Transparent listeners on both families, and facts where everything they need works. */
function transparentSetup(over: Partial<TransparentFacts> = {}, rules = true): { facts: Partial<DoctorFacts>; input: DoctorInput } {
  const base = input();
  const listeners = [
    ...DEFAULTS.listeners,
    { name: 't4', protocol: 'transparent' as const, host: '0.0.0.0', port: 8443, mptcp: true, ports: [443] },
    { name: 't6', protocol: 'transparent' as const, host: '::', port: 8443, mptcp: true, ports: [443] },
  ];
  const transparent: TransparentFacts = {
    families: [4, 6],
    tproxy: { ok: true },
    ipTransparent: { ok: true },
    routing: [
      { family: 4, atSlot: [], trial: { ok: true } },
      { family: 6, atSlot: [OUR_RULE], trial: null },
    ],
    ...over,
  };
  return { facts: { transparent }, input: { ...base, config: { ...base.config, listeners, transparent: { interfaces: [], rules } } } };
}

const TRANSPARENT_IDS = ['tproxy', 'ip-transparent', 'tproxy-routing'];

const byId = (rs: CheckResult[], id: string): CheckResult => {
  const r = rs.find((x) => x.id === id);
  assert.ok(r, `no check ${id}`);
  return r;
};

describe('doctor checks', () => {
  test('a healthy two-uplink proxy passes everything; the transparent checks skip without a transparent listener', () => {
    const rs = runChecks(healthy(), input());
    assert.deepEqual(
      rs.filter((r) => r.status !== 'pass').map((r) => `${r.id}: ${r.status}: ${r.detail}`),
      [...TRANSPARENT_IDS.map((id) => `${id}: skip: no transparent listener configured`), 'cluster: skip: cluster.announce not configured'],
    );
    assert.match(formatResults(rs), /^✓ MPTCP enabled/m);
  });

  test('cluster mode: ✓ when ready, ✗ with the fix for each missing piece', () => {
    const inp = input({}, {});
    inp.config = { ...inp.config, cluster: { announce: '198.51.100.7' } };
    const ready: ClusterFacts = { device: 'eth1', cFlag: '1', cFlagWritable: { ok: true }, rpFilter: 2 };
    const ok = byId(runChecks(healthy({ cluster: ready }), inp), 'cluster');
    assert.equal(ok.status, 'pass', ok.detail);
    assert.match(ok.detail, /C flag: the proxy sets it at start.*endpoint id 223 signal added at start.*subflows 4.*rp_filter on eth1 loose or off/);
    const bad = byId(
      runChecks(
        healthy(
          {
            cluster: { device: 'eth1', cFlag: '1', cFlagWritable: { ok: false, error: 'EROFS' }, rpFilter: 1 },
            limits: { subflows: 0, addAddrAccepted: 0 },
            endpoints: [{ id: 9, address: '198.51.100.7', dev: 'eth1', flags: ['subflow'] }],
          },
          { 'net.ipv4.conf.all.rp_filter': '1' },
        ),
        inp,
      ),
      'cluster',
    );
    assert.equal(bad.status, 'fail');
    assert.match(bad.detail, /cannot change it \(EROFS\).*endpoint id 9 holds 198\.51\.100\.7 without "signal".*subflows limit 0.*strict rp_filter on eth1/);
    assert.deepEqual(bad.sysctls, { 'net.mptcp.allow_join_initial_addr_port': '0', 'net.ipv4.conf.eth1.rp_filter': '2', 'net.ipv4.conf.all.rp_filter': '2' });
    assert.ok(bad.fix.includes('ip mptcp endpoint delete id 9'), bad.fix.join('\n'));
    assert.ok(bad.fix.includes('ip mptcp limits set subflows 2 add_addr_accepted 0'), bad.fix.join('\n'));
    const missing = byId(runChecks(healthy({ cluster: { ...ready, device: null } }), inp), 'cluster');
    assert.equal(missing.status, 'fail');
    assert.match(missing.fix.join('\n'), /ip addr add 198\.51\.100\.7\/32/);
    // Set beforehand (or the proxy runs): nothing to change, and an operator's signal endpoint counts.
    const set = byId(runChecks(healthy({ cluster: { ...ready, cFlag: '0', cFlagWritable: { ok: false, error: 'EROFS' } }, endpoints: [{ id: 5, address: '198.51.100.7', flags: ['signal'] }] }), inp), 'cluster');
    assert.equal(set.status, 'pass', set.detail);
    assert.match(set.detail, /C flag set.*announced by endpoint id 5/);
  });

  test('transparent mode, all in order: ✓ for TPROXY, IP_TRANSPARENT and the routing slot', () => {
    const t = transparentSetup();
    const rs = runChecks(healthy(t.facts), t.input);
    assert.deepEqual(
      rs.filter((r) => r.status !== 'pass' && r.id !== 'cluster').map((r) => `${r.id}: ${r.detail}`),
      [],
    );
    assert.match(byId(rs, 'tproxy-routing').detail, /IPv4 installed and removed again, IPv6 in place/);
    assert.match(formatResults(rs), /^✓ TPROXY rules in nftables \(transparent mode\): a tproxy rule for IPv4 and IPv6 loads/m);
  });

  test('transparent mode: a refused tproxy rule fails with the fix that matches the cause', () => {
    const refused = transparentSetup({ tproxy: { ok: false, error: 'Could not process rule: No such file or directory' } });
    const rs = runChecks(healthy(refused.facts), refused.input);
    const r = byId(rs, 'tproxy');
    assert.equal(r.status, 'fail');
    assert.equal(r.fix[0], 'modprobe -a nft_tproxy nf_tproxy_ipv4 nf_tproxy_ipv6');
    assert.match(formatResults(rs), /^✗ TPROXY rules in nftables \(transparent mode\): a tproxy rule for IPv4 and IPv6 does not load: Could not process rule.*\n {4}fix: modprobe -a nft_tproxy/m);
    assert.deepEqual(byId(runChecks(healthy({ ...refused.facts, tools: { nft: false } }), refused.input), 'tproxy').fix, ['apt-get install -y nftables']);
    const noAdmin = byId(runChecks(healthy({ ...refused.facts, capEff: ALL_CAPS & ~(1n << BigInt(CAP_NET_ADMIN)) }), refused.input), 'tproxy');
    assert.match(noAdmin.detail, /needs CAP_NET_ADMIN/);
    assert.match(noAdmin.fix.join('\n'), /setcap cap_net_admin/);
  });

  test('transparent mode: IP_TRANSPARENT refused fails with the capability fix', () => {
    const t = transparentSetup({ ipTransparent: { ok: false, error: 'EPERM: setsockopt(IP_TRANSPARENT): Operation not permitted' } });
    const r = byId(runChecks(healthy(t.facts), t.input), 'ip-transparent');
    assert.equal(r.status, 'fail');
    assert.match(r.detail, /EPERM.*CAP_NET_ADMIN or CAP_NET_RAW/);
    assert.match(r.fix.join('\n'), /setcap cap_net_admin,cap_net_raw/);
  });

  test('transparent mode: the owned routing slot taken by another rule, or not installable', () => {
    const foreign = { priority: TPROXY_PREF, table: '100', fwmark: '0x1' };
    const taken = transparentSetup({ routing: [{ family: 4, atSlot: [foreign], trial: null }, { family: 6, atSlot: [OUR_RULE], trial: null }] });
    const r = byId(runChecks(healthy(taken.facts), taken.input), 'tproxy-routing');
    assert.equal(r.status, 'fail');
    assert.match(r.detail, new RegExp(`priority ${TPROXY_PREF} is taken by another rule \\(ip rule pref ${TPROXY_PREF}: fwmark 0x1 table 100\\)`));
    assert.deepEqual(r.fix, [`ip rule del pref ${TPROXY_PREF}   # and add it back at a free priority`]);

    const failing = transparentSetup({ routing: [{ family: 6, atSlot: [], trial: { ok: false, error: 'RTNETLINK answers: Operation not supported' } }] });
    const unsupported = byId(runChecks(healthy(failing.facts), failing.input), 'tproxy-routing');
    assert.equal(unsupported.status, 'fail');
    assert.match(unsupported.detail, /IPv6: RTNETLINK answers: Operation not supported/);
    assert.match(unsupported.fix[0]!, /CONFIG_IPV6_MULTIPLE_TABLES/);
    const denied = byId(runChecks(healthy({ ...failing.facts, capEff: 0n }), failing.input), 'tproxy-routing');
    assert.match(denied.fix.join('\n'), /setcap/);

    const own = transparentSetup({ routing: null }, false);
    assert.equal(byId(runChecks(healthy(own.facts), own.input), 'tproxy-routing').status, 'skip');
  });

  test('transparent families and the throwaway TPROXY probe script', () => {
    const t = transparentSetup();
    assert.deepEqual(transparentFamilies(t.input.config), [4, 6]);
    assert.deepEqual(transparentFamilies(input().config), []);
    const script = buildTproxyProbeScript([4, 6]);
    assert.match(script, /tproxy ip to 127\.0\.0\.1:9\n.*tproxy ip6 to \[::1\]:9/);
    // Created and deleted in one transaction; a chain without a hook diverts nothing meanwhile.
    assert.ok(script.trimEnd().endsWith(`delete table inet ${TPROXY_PROBE_TABLE}`), script);
    assert.doesNotMatch(script, /hook/);
    assert.doesNotMatch(buildTproxyProbeScript([4]), /ip6/);
  });

  test('MPTCP disabled: ✗ with the sysctl fix', () => {
    const r = byId(runChecks(healthy({}, { 'net.mptcp.enabled': '0' }), input()), 'mptcp-enabled');
    assert.equal(r.status, 'fail');
    assert.deepEqual(r.sysctls, { 'net.mptcp.enabled': '1' });
    assert.deepEqual(r.fix, ['sysctl -w net.mptcp.enabled=1']);
  });

  test('no MPTCP in the kernel: ✗ without an automatic fix', () => {
    const r = byId(runChecks(healthy({}, { 'net.mptcp.enabled': null }), input()), 'mptcp-enabled');
    assert.equal(r.status, 'fail');
    assert.deepEqual(r.sysctls, {});
    assert.match(r.detail, /CONFIG_MPTCP/);
  });

  test('an MPTCP socket that cannot be opened fails, naming the likely cause', () => {
    const off = byId(runChecks(healthy({ mptcpSocket: { ok: false, error: 'ENOPROTOOPT: Protocol not available' } }, { 'net.mptcp.enabled': '0' }), input()), 'mptcp-socket');
    assert.equal(off.status, 'fail');
    assert.match(off.fix[0]!, /net\.mptcp\.enabled=1/);
    const seccomp = byId(runChecks(healthy({ mptcpSocket: { ok: false, error: 'EPERM: Operation not permitted' } }), input()), 'mptcp-socket');
    assert.match(seccomp.fix[0]!, /seccomp/);
  });

  test('userspace path manager: fixed through path_manager, or pm_type on older kernels', () => {
    const r = byId(runChecks(healthy({}, { 'net.mptcp.path_manager': 'userspace', 'net.mptcp.pm_type': '1' }), input()), 'path-manager');
    assert.equal(r.status, 'fail');
    assert.deepEqual(r.sysctls, { 'net.mptcp.path_manager': 'kernel' });
    const old = byId(runChecks(healthy({}, { 'net.mptcp.path_manager': null, 'net.mptcp.pm_type': '1' }), input()), 'path-manager');
    assert.deepEqual(old.sysctls, { 'net.mptcp.pm_type': '0' });
    assert.equal(byId(runChecks(healthy({}, { 'net.mptcp.path_manager': null, 'net.mptcp.pm_type': '0' }), input()), 'path-manager').status, 'pass');
  });

  test('userspace path manager: supported per the list (6.15+) or pm_type; a config that needs it fails without it', () => {
    const yes = byId(runChecks(healthy({}, { 'net.mptcp.available_path_managers': 'kernel userspace' }), input()), 'userspace-pm');
    assert.equal(yes.status, 'pass');
    assert.match(yes.detail, /kernel userspace/);
    assert.equal(byId(runChecks(healthy({}, { 'net.mptcp.available_path_managers': null }), input()), 'userspace-pm').status, 'pass', 'pm_type exists');
    const wanted = input({}, {});
    wanted.config = { ...wanted.config, paths: { ...DEFAULTS.paths, pathManager: 'userspace' } };
    const no = byId(runChecks(healthy({}, { 'net.mptcp.available_path_managers': 'kernel' }), wanted), 'userspace-pm');
    assert.equal(no.status, 'fail');
    assert.equal(byId(runChecks(healthy({}, { 'net.mptcp.available_path_managers': 'kernel' }), input()), 'userspace-pm').status, 'skip');
    // The proxy sets pm_type 1 itself in that mode: not a failure of the path-manager check.
    assert.equal(byId(runChecks(healthy({}, { 'net.mptcp.path_manager': 'userspace', 'net.mptcp.pm_type': '1' }), wanted), 'path-manager').status, 'skip');
  });

  test('limits below the configured uplinks', () => {
    const three = input({ uplinks: [0, 1, 2].map((i) => ({ name: `u${i}`, interface: `eth${i}` })) });
    const r = byId(runChecks(healthy({ limits: { subflows: 2, addAddrAccepted: 1 }, endpoints: [] }), three), 'limits');
    assert.equal(r.status, 'fail');
    assert.deepEqual(r.fix, ['ip mptcp limits set subflows 3 add_addr_accepted 1']);
    assert.equal(byId(runChecks(healthy({ limits: { subflows: 0, addAddrAccepted: 0 } }), input({ uplinks: [] })), 'limits').status, 'fail');
    assert.equal(byId(runChecks(healthy({ limits: null, errors: { limits: 'ip: not installed' } }), input()), 'limits').status, 'skip');
  });

  test('the "two subflows, one path" trap: subflow endpoint with add_addr_accepted > 0', () => {
    const trap: Endpoint[] = [{ id: 3, address: '192.0.2.2', dev: 'eth1', flags: ['subflow'] }];
    const r = byId(runChecks(healthy({ endpoints: trap, limits: { subflows: 4, addAddrAccepted: 2 } }), input()), 'endpoints');
    assert.equal(r.status, 'fail');
    assert.deepEqual(r.fix, ['ip mptcp endpoint delete id 3 && ip mptcp endpoint add 192.0.2.2 dev eth1 signal']);
    // fullmesh endpoints are used toward announced addresses: not the trap.
    const fm = byId(runChecks(healthy({ endpoints: [{ ...trap[0]!, flags: ['subflow', 'fullmesh'] }, { id: 4, address: '192.0.2.9', dev: 'eth1', flags: ['signal'] }], limits: { subflows: 4, addAddrAccepted: 2 } }), input()), 'endpoints');
    assert.equal(fm.status, 'pass');
    // add_addr_accepted 0: not the trap, but a proxy should signal.
    const warn = byId(runChecks(healthy({ endpoints: [...trap, { id: 4, address: '192.0.2.9', dev: 'eth1', flags: ['signal'] }] }), input()), 'endpoints');
    assert.equal(warn.status, 'warn');
  });

  test('an uplink without a signal endpoint is a warning with the command to add it', () => {
    const r = byId(runChecks(healthy({ endpoints: [] }), input()), 'endpoints');
    assert.equal(r.status, 'warn');
    assert.deepEqual(r.fix, ['ip mptcp endpoint add 192.0.2.2 dev eth1 signal']);
  });

  test('strict rp_filter on a multi-path interface; all=1 counts through max()', () => {
    const r = byId(runChecks(healthy({}, { 'net.ipv4.conf.eth1.rp_filter': '1' }), input()), 'rp-filter');
    assert.equal(r.status, 'fail');
    assert.deepEqual(r.sysctls, { 'net.ipv4.conf.eth1.rp_filter': '2' });
    const viaAll = byId(runChecks(healthy({}, { 'net.ipv4.conf.all.rp_filter': '1', 'net.ipv4.conf.eth0.rp_filter': '0', 'net.ipv4.conf.eth1.rp_filter': '2' }), input()), 'rp-filter');
    assert.deepEqual(viaAll.sysctls, { 'net.ipv4.conf.eth0.rp_filter': '2' });
    // Without uplinks only the endpoint's eth1 carries subflows: one interface, nothing to compare.
    assert.equal(byId(runChecks(healthy({}, { 'net.ipv4.conf.eth1.rp_filter': '1' }), input({ uplinks: [] })), 'rp-filter').status, 'skip');
  });

  test('interfaces with dots map to sysctl keys with slashes', () => {
    const cfg = input({ uplinks: [{ name: 'a', interface: 'eth0.100' }, { name: 'b', interface: 'eth1' }] }).config;
    assert.ok(sysctlKeys(cfg, []).includes('net.ipv4.conf.eth0/100.rp_filter'));
    assert.equal(sysctlPath('net.ipv4.conf.eth0/100.rp_filter'), '/proc/sys/net/ipv4/conf/eth0.100/rp_filter');
    assert.throws(() => sysctlPath('net..x'));
    assert.deepEqual(multipathInterfaces(cfg, [{ id: 1, address: '1.2.3.4', dev: 'eth1', flags: ['signal'] }]), ['eth0.100', 'eth1']);
  });

  test('buffer maxima against the floor and 2 × Σbw × maxRTT', () => {
    assert.equal(bufferNeed([], null), MPTCP_BUFFER_FLOOR);
    assert.equal(bufferNeed([100, 50], 300), 11_250_000);
    const low = byId(runChecks(healthy({}, { 'net.ipv4.tcp_rmem': '4096 87380 174760' }), input()), 'buffers');
    assert.equal(low.status, 'fail');
    assert.deepEqual(low.sysctls, { 'net.ipv4.tcp_rmem': `4096 87380 ${MPTCP_BUFFER_FLOOR}` });
    const sized = byId(runChecks(healthy(), input({}, { pathMbit: [100, 50], maxRttMs: 300 })), 'buffers');
    assert.deepEqual(sized.sysctls, { 'net.ipv4.tcp_wmem': '4096 16384 11250000' });
    assert.equal(byId(runChecks(healthy({}, { 'net.ipv4.tcp_wmem': 'garbage' }), input()), 'buffers').status, 'skip');
  });

  test('property: buffer need is monotone and never below the floor', () => {
    fc.assert(
      fc.property(fc.array(fc.double({ min: 0.1, max: 10_000, noNaN: true }), { maxLength: 8 }), fc.double({ min: 0.1, max: 2000, noNaN: true }), (bw, rtt) => {
        const n = bufferNeed(bw, rtt);
        assert.ok(n >= MPTCP_BUFFER_FLOOR);
        assert.ok(bufferNeed([...bw, 10], rtt) >= n);
        assert.ok(bufferNeed(bw, rtt * 2) >= n);
      }),
    );
  });

  test('missing qdiscs fail only when policies shape', () => {
    const f = healthy({ features: { htb: 'absent', ingress: 'builtin', ifb: 'absent', u32: 'builtin', mirred: 'builtin' } });
    assert.equal(byId(runChecks(f, input()), 'shaping').status, 'warn');
    const shaping = input({ policies: [{ name: 'p', match: {}, rate: 1_000_000 }] });
    const r = byId(runChecks(f, shaping), 'shaping');
    assert.equal(r.status, 'fail');
    assert.match(r.detail, /htb \(CONFIG_NET_SCH_HTB\).*ifb \(CONFIG_IFB\)/);
  });

  test('nftables missing fails when steering is configured', () => {
    assert.equal(byId(runChecks(healthy({ tools: { nft: false } }), input()), 'nftables').status, 'fail');
    assert.equal(byId(runChecks(healthy({ tools: { nft: false } }), input({ uplinks: [] })), 'nftables').status, 'warn');
  });

  test('capabilities: NET_ADMIN required with steering, NET_BIND_SERVICE with a port < 1024', () => {
    const noAdmin = ALL_CAPS & ~(1n << BigInt(CAP_NET_ADMIN));
    assert.equal(byId(runChecks(healthy({ capEff: noAdmin }), input()), 'capabilities').status, 'fail');
    assert.equal(byId(runChecks(healthy({ capEff: noAdmin }), input({ uplinks: [] })), 'capabilities').status, 'warn');
    const low = input({ uplinks: [] });
    low.config = { ...low.config, listeners: [{ name: 'h', protocol: 'http', host: '127.0.0.1', port: 80, mptcp: true }] };
    const r = byId(runChecks(healthy({ capEff: 0n }), low), 'capabilities');
    assert.equal(r.status, 'fail');
    assert.match(r.detail, /needed by this config: CAP_NET_BIND_SERVICE\)$/);
    assert.equal(byId(runChecks(healthy({ capEff: null }), input()), 'capabilities').status, 'skip');
    // A transparent listener needs NET_ADMIN (TPROXY rules, policy routing) even without steering.
    const t = transparentSetup();
    t.input.config = { ...t.input.config, steering: { policies: [], uplinks: [] } };
    assert.equal(byId(runChecks(healthy({ ...t.facts, capEff: noAdmin }), t.input), 'capabilities').status, 'fail');
  });

  test('kernel config parsing and feature states', () => {
    const cfg = parseKernelConfig('# comment\nCONFIG_NET_SCH_HTB=y\nCONFIG_IFB=m\n# CONFIG_NET_SCH_NETEM is not set\n');
    assert.equal(kernelFeature(cfg, 'CONFIG_NET_SCH_HTB', 'sch_htb'), 'builtin');
    assert.equal(kernelFeature(cfg, 'CONFIG_NET_SCH_NETEM', 'sch_netem_not_a_module'), 'absent');
    assert.equal(kernelFeature(null, 'CONFIG_X', 'no_such_module_here'), 'unknown');
  });

  test('property: checks never throw, whatever the facts', () => {
    const probe = fc.oneof(fc.constant({ ok: true as const }), fc.record({ ok: fc.constant(false as const), error: fc.string({ maxLength: 30 }) }));
    const rule = fc.record({ priority: fc.constantFrom(TPROXY_PREF, 100), table: fc.constantFrom(String(TPROXY_PREF), 'main', '100'), fwmark: fc.constantFrom(OUR_RULE.fwmark, '0x1') });
    const transparentFacts: fc.Arbitrary<TransparentFacts> = fc.record({
      families: fc.constantFrom<(4 | 6)[]>([4], [6], [4, 6]),
      tproxy: probe,
      ipTransparent: probe,
      routing: fc.option(fc.array(fc.record({ family: fc.constantFrom<4 | 6>(4, 6), atSlot: fc.array(rule, { maxLength: 2 }), trial: fc.option(probe, { nil: null }) }), { maxLength: 2 }), { nil: null }),
    });
    const val = fc.option(fc.oneof(fc.string({ maxLength: 30 }), fc.constantFrom('0', '1', '2', 'kernel', 'userspace', '4096 131072 6291456')), { nil: null });
    fc.assert(
      fc.property(
        fc.dictionary(fc.constantFrom(...sysctlKeys(input().config, [])), val),
        fc.option(fc.record({ subflows: fc.nat(8), addAddrAccepted: fc.nat(8) }), { nil: null }),
        fc.option(fc.array(fc.record({ id: fc.nat(255), address: fc.ipV4(), dev: fc.constantFrom('eth0', 'eth1', 'eth2'), flags: fc.subarray(['signal', 'subflow', 'backup', 'fullmesh'] as const) }), { maxLength: 4 }), { nil: null }),
        fc.option(fc.bigInt({ min: 0n, max: (1n << 41n) - 1n }), { nil: null }),
        fc.option(transparentFacts, { nil: null }),
        (sysctl, limits, endpoints, capEff, transparent) => {
          const rs = runChecks(healthy({ limits, endpoints: endpoints as Endpoint[] | null, capEff, transparent }, sysctl), transparent ? transparentSetup().input : input());
          assert.equal(rs.length, 15);
          for (const r of rs) if (r.status === 'fail') assert.ok(r.fix.length > 0, `${r.id} fails without a fix`);
        },
      ),
      { numRuns: 500 },
    );
  });
});
