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
  type CheckResult,
  type DoctorFacts,
  type DoctorInput,
} from '../../src/doctor/checks';
import { formatResults } from '../../src/doctor/doctor-command';
import type { Endpoint } from '../../src/sys/iproute';
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
    capEff: ALL_CAPS,
    errors: {},
    ...over,
  };
}

function input(over: Partial<Config['steering']> = {}, extra: Partial<DoctorInput> = {}): DoctorInput {
  return {
    config: {
      listeners: DEFAULTS.listeners,
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

const byId = (rs: CheckResult[], id: string): CheckResult => {
  const r = rs.find((x) => x.id === id);
  assert.ok(r, `no check ${id}`);
  return r;
};

describe('doctor checks', () => {
  test('a healthy two-uplink proxy passes everything', () => {
    const rs = runChecks(healthy(), input());
    assert.deepEqual(
      rs.filter((r) => r.status !== 'pass').map((r) => `${r.id}: ${r.detail}`),
      [],
    );
    assert.match(formatResults(rs), /^✓ MPTCP enabled/m);
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
  });

  test('kernel config parsing and feature states', () => {
    const cfg = parseKernelConfig('# comment\nCONFIG_NET_SCH_HTB=y\nCONFIG_IFB=m\n# CONFIG_NET_SCH_NETEM is not set\n');
    assert.equal(kernelFeature(cfg, 'CONFIG_NET_SCH_HTB', 'sch_htb'), 'builtin');
    assert.equal(kernelFeature(cfg, 'CONFIG_NET_SCH_NETEM', 'sch_netem_not_a_module'), 'absent');
    assert.equal(kernelFeature(null, 'CONFIG_X', 'no_such_module_here'), 'unknown');
  });

  test('property: checks never throw, whatever the facts', () => {
    const val = fc.option(fc.oneof(fc.string({ maxLength: 30 }), fc.constantFrom('0', '1', '2', 'kernel', 'userspace', '4096 131072 6291456')), { nil: null });
    fc.assert(
      fc.property(
        fc.dictionary(fc.constantFrom(...sysctlKeys(input().config, [])), val),
        fc.option(fc.record({ subflows: fc.nat(8), addAddrAccepted: fc.nat(8) }), { nil: null }),
        fc.option(fc.array(fc.record({ id: fc.nat(255), address: fc.ipV4(), dev: fc.constantFrom('eth0', 'eth1', 'eth2'), flags: fc.subarray(['signal', 'subflow', 'backup', 'fullmesh'] as const) }), { maxLength: 4 }), { nil: null }),
        fc.option(fc.bigInt({ min: 0n, max: (1n << 41n) - 1n }), { nil: null }),
        (sysctl, limits, endpoints, capEff) => {
          const rs = runChecks(healthy({ limits, endpoints: endpoints as Endpoint[] | null, capEff }, sysctl), input());
          assert.equal(rs.length, 10);
          for (const r of rs) if (r.status === 'fail') assert.ok(r.fix.length > 0, `${r.id} fails without a fix`);
        },
      ),
      { numRuns: 500 },
    );
  });
});
