/**
 * `doctor` against a real kernel, inside a fresh network namespace (net.mptcp.* and rp_filter
 * are per namespace): it finds MPTCP disabled, strict rp_filter on two endpoint interfaces and
 * the subflow-endpoint trap; `--fix` repairs the sysctls and the next run passes those checks.
 * With transparent listeners (IPv4 and IPv6) it loads a TPROXY rule, sets IP_TRANSPARENT and
 * tries the owned routing slot, leaving no table, rule or route behind; it fails each of them
 * without CAP_NET_ADMIN/CAP_NET_RAW, and the routing check when another rule holds the slot.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes, randomInt } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { mustRun, run } from '../../testkit/run';
import { REPO_ROOT } from '../../testkit/testbed';
import type { CheckResult } from '../../src/doctor/checks';
import { slotTable, TPROXY_SLOT } from '../../src/sys/iproute';

const NS = `mpx-doc-${randomBytes(3).toString('hex')}`;
const O = randomInt(16, 250);
/** Until the CLI wires `doctor`, call the exported command the CLI runs. */
const DOCTOR = `require(${JSON.stringify(path.join(REPO_ROOT, 'dist/src/doctor/doctor-command.js'))}).runDoctorCommand(process.argv.slice(1)).then((c) => process.exit(c), (e) => { console.error(e.message); process.exit(2); })`;

interface DoctorRun {
  code: number | null;
  results: CheckResult[];
  applied: { key: string; value: string; error?: string }[];
}

/** `prefix` runs the doctor under another command inside the namespace (e.g. setpriv). */
async function doctor(...args: string[]): Promise<DoctorRun> {
  return doctorUnder([], ...args);
}

async function doctorUnder(prefix: string[], ...args: string[]): Promise<DoctorRun> {
  const r = await run(['ip', 'netns', 'exec', NS, ...prefix, process.execPath, '-e', DOCTOR, '--', '--json', ...args], { timeoutMs: 30_000 });
  assert.ok(r.stdout.trim().startsWith('{'), `doctor output: ${r.stdout}${r.stderr}`);
  return { code: r.code, ...(JSON.parse(r.stdout) as Omit<DoctorRun, 'code'>) };
}

const status = (d: DoctorRun, id: string): string => d.results.find((r) => r.id === id)?.status ?? 'missing';
const check = (d: DoctorRun, id: string): CheckResult => {
  const r = d.results.find((x) => x.id === id);
  assert.ok(r, `no check ${id}`);
  return r;
};
const TRANSPARENT_IDS = ['tproxy', 'ip-transparent', 'tproxy-routing'];
const sysctl = async (key: string): Promise<string> => (await mustRun(['ip', 'netns', 'exec', NS, 'sysctl', '-n', key])).trim();

describe('doctor in a fresh namespace', () => {
  before(async () => {
    await mustRun(['ip', 'netns', 'add', NS]);
    await mustRun(['ip', '-n', NS, '-batch', '-'], {
      input: [
        'link set lo up',
        'link add d0 type veth peer name d1',
        `addr add 10.${O}.1.1/24 dev d0`,
        `addr add 10.${O}.2.1/24 dev d1`,
        'link set d0 up',
        'link set d1 up',
        'mptcp limits set subflows 4 add_addr_accepted 2',
        `mptcp endpoint add 10.${O}.1.1 dev d0 signal`,
        `mptcp endpoint add 10.${O}.2.1 dev d1 subflow`,
      ].join('\n') + '\n',
    });
    await mustRun(['ip', 'netns', 'exec', NS, 'sysctl', '-qw', 'net.mptcp.enabled=0', 'net.ipv4.conf.all.rp_filter=0', 'net.ipv4.conf.d0.rp_filter=1', 'net.ipv4.conf.d1.rp_filter=1']);
  });
  const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'mpx-doc-'));
  after(async () => {
    await run(['ip', 'netns', 'del', NS]);
    fs.rmSync(tmp, { recursive: true, force: true });
  });

  test('finds the problems, --fix repairs the safe ones, the next run passes them', async () => {
    const first = await doctor();
    assert.equal(first.code, 1, 'a failing check exits non-zero');
    assert.equal(status(first, 'mptcp-enabled'), 'fail');
    assert.equal(status(first, 'mptcp-socket'), 'fail', 'the kernel refuses IPPROTO_MPTCP in this namespace');
    assert.equal(status(first, 'rp-filter'), 'fail');
    assert.equal(status(first, 'endpoints'), 'fail', 'subflow endpoint with add_addr_accepted 2');
    assert.equal(status(first, 'limits'), 'pass');

    const fixed = await doctor('--fix');
    assert.deepEqual(
      fixed.applied.map((a) => `${a.key}=${a.value}${a.error ? ` (${a.error})` : ''}`).sort(),
      ['net.ipv4.conf.d0.rp_filter=2', 'net.ipv4.conf.d1.rp_filter=2', 'net.mptcp.enabled=1'],
    );
    assert.equal(status(fixed, 'mptcp-enabled'), 'pass');
    assert.equal(status(fixed, 'mptcp-socket'), 'pass', 'after the fix MPTCP sockets open');
    assert.equal(status(fixed, 'rp-filter'), 'pass');
    // The endpoint trap is not a sysctl: --fix leaves it and keeps failing.
    assert.equal(status(fixed, 'endpoints'), 'fail');
    assert.equal(await sysctl('net.mptcp.enabled'), '1');
    assert.equal(await sysctl('net.ipv4.conf.d1.rp_filter'), '2');

    const again = await doctor();
    assert.equal(status(again, 'mptcp-enabled'), 'pass');
    assert.equal(status(again, 'rp-filter'), 'pass');
    assert.deepEqual(again.applied, []);

    // The printed fix for the trap is the command that repairs it.
    const fix = again.results.find((r) => r.id === 'endpoints')!.fix;
    for (const cmd of fix) await mustRun(['ip', 'netns', 'exec', NS, 'sh', '-c', cmd]);
    const last = await doctor();
    assert.equal(status(last, 'endpoints'), 'pass');
    assert.equal(last.code, 0, JSON.stringify(last.results.filter((r) => r.status === 'fail')));
  });

  test('transparent mode: TPROXY rule, IP_TRANSPARENT and the routing slot are tried, nothing is left behind', async () => {
    const config = path.join(tmp, 'transparent.yaml');
    fs.writeFileSync(
      config,
      'listeners:\n  - { name: t4, protocol: transparent, listen: "0.0.0.0:18443", ports: [443] }\n  - { name: t6, protocol: transparent, listen: "[::]:18443", ports: [443] }\n' +
        'access:\n  allowClients: ["10.0.0.0/8", "fd00::/8"]\n',
    );
    const pref = slotTable(TPROXY_SLOT);
    /** Tables, and rules or routes of the owned slot, in the namespace: '' when there are none. */
    const leftovers = async (): Promise<string> => {
      const out = await Promise.all([
        mustRun(['ip', 'netns', 'exec', NS, 'nft', 'list', 'tables']),
        ...['-4', '-6'].flatMap((f) => [mustRun(['ip', '-n', NS, f, 'rule', 'show']), mustRun(['ip', '-n', NS, f, 'route', 'show', 'table', 'all'])]),
      ]);
      const lines = out.join('\n').split('\n');
      return lines.filter((l) => l.startsWith('table ') || l.startsWith(`${pref}:`) || l.includes(`table ${pref} `) || l.endsWith(`table ${pref}`)).join('\n');
    };
    assert.equal(await leftovers(), '', 'a fresh namespace has no table, rule or route of ours');

    const ok = await doctor('--config', config);
    for (const id of TRANSPARENT_IDS) assert.equal(status(ok, id), 'pass', `${id}: ${check(ok, id).detail}`);
    assert.match(check(ok, 'tproxy').detail, /IPv4 and IPv6 loads/);
    assert.match(check(ok, 'tproxy-routing').detail, /IPv4 installed and removed again, IPv6 installed and removed again/);
    assert.equal(await leftovers(), '', 'the probes leave nothing behind');

    // Without CAP_NET_ADMIN and CAP_NET_RAW (root, but dropped from the bounding set before exec).
    const unprivileged = await doctorUnder(['setpriv', '--bounding-set', '-net_admin,-net_raw', '--inh-caps', '-net_admin,-net_raw'], '--config', config);
    assert.equal(unprivileged.code, 1);
    for (const id of TRANSPARENT_IDS) {
      assert.equal(status(unprivileged, id), 'fail', `${id}: ${check(unprivileged, id).detail}`);
      assert.ok(check(unprivileged, id).fix.some((f) => f.startsWith('setcap cap_net_admin')), `${id}: ${check(unprivileged, id).fix}`);
    }
    assert.match(check(unprivileged, 'ip-transparent').detail, /EPERM/);
    assert.equal(await leftovers(), '');

    // Another rule in the owned slot: reported, not touched; the printed fix frees the slot.
    await mustRun(['ip', '-n', NS, 'rule', 'add', 'pref', String(pref), 'fwmark', '0x1', 'table', '100']);
    const taken = await doctor('--config', config);
    const routing = check(taken, 'tproxy-routing');
    assert.equal(routing.status, 'fail');
    assert.match(routing.detail, new RegExp(`priority ${pref} is taken by another rule \\(ip rule pref ${pref}: fwmark 0x1 table 100\\)`));
    assert.match(await mustRun(['ip', '-n', NS, 'rule', 'show', 'pref', String(pref)]), /fwmark 0x1 lookup 100/, 'the other rule is left alone');
    for (const cmd of routing.fix) await mustRun(['ip', 'netns', 'exec', NS, 'sh', '-c', cmd]);
    assert.equal(status(await doctor('--config', config), 'tproxy-routing'), 'pass');
    assert.equal(await leftovers(), '');
  });

  test('human output marks checks with ✓/✗ and prints the fix command', async () => {
    await mustRun(['ip', 'netns', 'exec', NS, 'sysctl', '-qw', 'net.mptcp.enabled=0']);
    const r = await run(['ip', 'netns', 'exec', NS, process.execPath, '-e', DOCTOR], { timeoutMs: 30_000 });
    assert.equal(r.code, 1);
    assert.match(r.stdout, /^✗ MPTCP enabled: net\.mptcp\.enabled = 0/m);
    assert.match(r.stdout, /^ {4}fix: sysctl -w net\.mptcp\.enabled=1$/m);
    assert.match(r.stdout, /^✓ nftables/m);
  });
});
