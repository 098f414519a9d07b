/**
 * The shipped systemd units: `systemd-analyze verify` accepts them, their hardening (own user,
 * bounded capabilities and address families, read-only system, syscall filter) is really in them,
 * and `systemd-analyze security` rates the service's exposure low.
 */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { run } from '../../testkit/run';
import { REPO_ROOT } from '../../testkit/testbed';

const UNIT_DIR = path.join(REPO_ROOT, 'systemd');
const INSTALLED_BIN = '/usr/local/bin/mptcp-proxy';
/** The README quotes this figure; raise it only with a reason written there. */
const MAX_EXPOSURE = 2.0;

/** Parse a unit file into key → all values (later assignments appended, as systemd does). */
function parseUnit(text: string): Map<string, string[]> {
  const out = new Map<string, string[]>();
  for (const raw of text.split('\n')) {
    const line = raw.trim();
    if (!line || line.startsWith('#') || line.startsWith('[')) continue;
    const i = line.indexOf('=');
    const key = line.slice(0, i);
    out.set(key, [...(out.get(key) ?? []), line.slice(i + 1)]);
  }
  return out;
}

async function systemdVersion(): Promise<number | null> {
  try {
    const r = await run(['systemd-analyze', '--version']);
    const m = /systemd (\d+)/.exec(r.stdout);
    return m ? Number(m[1]) : null;
  } catch {
    return null;
  }
}

/**
 * Copies of the units in a temp dir with ExecStart pointing at this checkout's launcher: verify
 * checks that the binary exists, and this machine has no installed copy. Nothing else changes.
 */
function stageUnits(): { dir: string; service: string; socket: string } {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'mpx-units-'));
  const service = path.join(dir, 'mptcp-proxy.service');
  const socket = path.join(dir, 'mptcp-proxy.socket');
  const text = fs.readFileSync(path.join(UNIT_DIR, 'mptcp-proxy.service'), 'utf8');
  assert.ok(text.includes(INSTALLED_BIN), `ExecStart should run ${INSTALLED_BIN}`);
  fs.writeFileSync(service, text.replaceAll(INSTALLED_BIN, path.join(REPO_ROOT, 'bin', 'mptcp-proxy')));
  fs.copyFileSync(path.join(UNIT_DIR, 'mptcp-proxy.socket'), socket);
  return { dir, service, socket };
}

describe('systemd units', () => {
  const service = parseUnit(fs.readFileSync(path.join(UNIT_DIR, 'mptcp-proxy.service'), 'utf8'));
  const socket = parseUnit(fs.readFileSync(path.join(UNIT_DIR, 'mptcp-proxy.socket'), 'utf8'));
  const one = (m: Map<string, string[]>, k: string): string | undefined => m.get(k)?.at(-1);

  test('service carries its hardening', () => {
    assert.equal(one(service, 'Type'), 'notify');
    assert.equal(one(service, 'ExecReload'), '/bin/kill -HUP $MAINPID');
    assert.equal(one(service, 'User'), 'mptcp-proxy');
    assert.equal(one(service, 'DynamicUser'), undefined, 'a dedicated user, so the 0640 config stays readable and reloadable');
    assert.equal(one(service, 'NoNewPrivileges'), 'yes');
    assert.equal(one(service, 'ProtectSystem'), 'strict');
    const caps = ['CAP_NET_ADMIN', 'CAP_NET_BIND_SERVICE', 'CAP_NET_RAW'];
    assert.deepEqual(one(service, 'CapabilityBoundingSet')?.split(/\s+/).sort(), caps);
    assert.deepEqual(one(service, 'AmbientCapabilities')?.split(/\s+/).sort(), caps);
    assert.deepEqual(one(service, 'RestrictAddressFamilies')?.split(/\s+/).sort(), ['AF_INET', 'AF_INET6', 'AF_NETLINK', 'AF_PACKET', 'AF_UNIX']);
    assert.equal(service.get('SystemCallFilter')?.[0], '@system-service');
  });

  test('socket unit listens with MPTCP for the service', () => {
    assert.equal(one(socket, 'SocketProtocol'), 'mptcp');
    assert.equal(one(socket, 'Service'), 'mptcp-proxy.service');
    assert.ok(socket.get('ListenStream')?.length, 'at least one ListenStream');
  });

  test('systemd-analyze verify accepts both units', async (t) => {
    const version = await systemdVersion();
    if (version === null) return t.skip('systemd-analyze is not installed: cannot verify units');
    const staged = stageUnits();
    try {
      const r = await run(['systemd-analyze', 'verify', staged.service, staged.socket], { timeoutMs: 60_000 });
      // systemd < 257 does not know SocketProtocol=mptcp and ignores it with a warning (the
      // socket then is plain TCP); that warning is the only output tolerated.
      const problems = (r.stdout + r.stderr)
        .split('\n')
        .filter((l) => l.trim() && !(version < 257 && /Failed to parse socket protocol, ignoring: mptcp/.test(l)));
      assert.deepEqual(problems, [], `systemd ${version} verify output`);
      assert.equal(r.code, 0);
    } finally {
      fs.rmSync(staged.dir, { recursive: true, force: true });
    }
  });

  test('sysusers and tmpfiles create the user and a config directory only its group reads', async (t) => {
    if ((await systemdVersion()) === null) return t.skip('systemd tools are not installed');
    const root = fs.mkdtempSync(path.join(os.tmpdir(), 'mpx-root-'));
    try {
      fs.mkdirSync(path.join(root, 'etc'));
      const users = await run(['systemd-sysusers', `--root=${root}`, path.join(UNIT_DIR, 'mptcp-proxy.sysusers')]);
      assert.equal(users.code, 0, users.stderr);
      const group = /^mptcp-proxy:x:(\d+):/m.exec(fs.readFileSync(path.join(root, 'etc', 'group'), 'utf8'));
      assert.ok(group, 'group mptcp-proxy created');
      assert.match(fs.readFileSync(path.join(root, 'etc', 'passwd'), 'utf8'), /^mptcp-proxy:x:\d+:\d+:[^:]*:[^:]*:\/usr\/sbin\/nologin$/m);
      const tmpfiles = (): Promise<unknown> => run(['systemd-tmpfiles', `--root=${root}`, '--create', path.join(UNIT_DIR, 'mptcp-proxy.tmpfiles')]);
      await tmpfiles();
      const dir = fs.statSync(path.join(root, 'etc', 'mptcp-proxy'));
      assert.equal(dir.mode & 0o777, 0o750);
      assert.equal(dir.gid, Number(group[1]));
      // An existing config gets its mode and group fixed.
      fs.writeFileSync(path.join(root, 'etc', 'mptcp-proxy', 'config.yaml'), 'listeners: []\n', { mode: 0o666 });
      await tmpfiles();
      const cfg = fs.statSync(path.join(root, 'etc', 'mptcp-proxy', 'config.yaml'));
      assert.equal(cfg.mode & 0o777, 0o640);
      assert.equal(cfg.gid, Number(group[1]));
    } finally {
      fs.rmSync(root, { recursive: true, force: true });
    }
  });

  test(`systemd-analyze security rates the service at most ${MAX_EXPOSURE}`, async (t) => {
    if ((await systemdVersion()) === null) return t.skip('systemd-analyze is not installed');
    const staged = stageUnits();
    try {
      const r = await run(['systemd-analyze', 'security', '--offline=true', '--no-pager', staged.service], { timeoutMs: 60_000 });
      const m = /Overall exposure level for mptcp-proxy\.service: (\d+\.\d+)/.exec(r.stdout);
      assert.ok(m, `no exposure figure in:\n${r.stdout}${r.stderr}`);
      const score = Number(m[1]);
      t.diagnostic(`systemd-analyze security exposure: ${score}`);
      assert.ok(score <= MAX_EXPOSURE, `exposure ${score} > ${MAX_EXPOSURE}`);
    } finally {
      fs.rmSync(staged.dir, { recursive: true, force: true });
    }
  });
});
