/**
 * Steering engine end to end on the two-path testbed, with the real proxy, the kernel's MPTCP
 * view and real curl (MPTCP) downloads: throttle-to-shift (seed 004), SIGHUP rate change, kernel
 * state present while running and gone after SIGTERM / SIGKILL+restart, unrelated state kept;
 * two-uplink fast recovery and failback.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import readline from 'node:readline';
import type { ChildProcess } from 'node:child_process';
import YAML from 'yaml';
import { curl } from '../helpers/clients';
import { startLegacyServer, type LegacyServer } from '../helpers/legacy-server';
import { createTestbed, type Testbed } from '../helpers/testbed';

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));
type Log = Record<string, unknown> & { message?: string; timestamp?: string };

class Harness {
  readonly logs: Log[] = [];
  stderr = '';
  readonly exited: Promise<number | null>;
  constructor(readonly proc: ChildProcess) {
    readline.createInterface({ input: proc.stderr! }).on('line', (l) => {
      this.stderr += l + '\n';
      if (l.startsWith('{')) this.logs.push(JSON.parse(l) as Log);
    });
    this.exited = new Promise((r) => proc.on('close', (code) => r(code)));
  }
  static async start(tb: Testbed, cfg: string): Promise<Harness> {
    const h = new Harness(tb.spawnNode('proxy', 'dist/test/steering/harness.js', [cfg]));
    await h.waitFor((l) => l.message === 'harness ready', 10_000);
    return h;
  }
  async waitFor(pred: (l: Log) => boolean, timeoutMs = 5000): Promise<Log> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const f = this.logs.find(pred);
      if (f) return f;
      if (Date.now() > deadline) throw new Error(`no matching log within ${timeoutMs} ms:\n${this.stderr.slice(-3000)}`);
      await sleep(20);
    }
  }
  async signal(sig: NodeJS.Signals): Promise<number | null> {
    this.proc.kill(sig);
    return this.exited;
  }
}

interface OwnedState {
  table: boolean;
  qdiscs: string[];
  rules: number[];
  endpoints: number[];
}

async function ownedState(tb: Testbed): Promise<OwnedState> {
  const tables = (await tb.exec('proxy', ['nft', 'list', 'tables'])).stdout;
  const q = JSON.parse((await tb.exec('proxy', ['tc', '-j', 'qdisc', 'show'])).stdout) as { dev: string; handle: string; root?: boolean }[];
  const rules = JSON.parse((await tb.exec('proxy', ['ip', '-j', 'rule', 'show'])).stdout) as { priority: number }[];
  const eps = JSON.parse((await tb.exec('proxy', ['ip', '-j', 'mptcp', 'endpoint', 'show'])).stdout || '[]') as { id: number }[];
  return {
    table: /inet mptcp_proxy/.test(tables),
    qdiscs: q.filter((x) => x.root && x.handle === '4d50:').map((x) => x.dev),
    rules: rules.map((r) => r.priority).filter((p) => p > 0x4d50 && p <= 0x4d50 + 64),
    endpoints: eps.map((e) => e.id).filter((id) => id >= 192),
  };
}

const NONE: OwnedState = { table: false, qdiscs: [], rules: [], endpoints: [] };

/** State a proxy must never touch: an operator table, rule, endpoint and root qdisc. */
async function addForeignState(tb: Testbed): Promise<void> {
  await tb.exec('proxy', ['nft', 'add', 'table', 'inet', 'operator_keep']);
  await tb.exec('proxy', ['ip', 'rule', 'add', 'fwmark', '0x99', 'table', '99', 'pref', '19000']);
  await tb.exec('proxy', ['ip', 'mptcp', 'endpoint', 'add', tb.addr.proxyServerSide, 'id', '5']);
  await tb.exec('proxy', ['tc', 'qdisc', 'add', 'dev', tb.ifaces.proxyServerSide, 'root', 'handle', '1:', 'htb']);
}

async function foreignStateIntact(tb: Testbed): Promise<void> {
  assert.match((await tb.exec('proxy', ['nft', 'list', 'tables'])).stdout, /operator_keep/);
  assert.match((await tb.exec('proxy', ['ip', 'rule', 'show'])).stdout, /19000:.*fwmark 0x99/);
  assert.match((await tb.exec('proxy', ['ip', 'mptcp', 'endpoint', 'show'])).stdout, /id 5/);
  assert.match((await tb.exec('proxy', ['tc', 'qdisc', 'show', 'dev', tb.ifaces.proxyServerSide])).stdout, /htb 1: root/);
}

function writeConfig(tb: Testbed, name: string, doc: Record<string, unknown>): string {
  const file = path.join(tb.tmpDir, name);
  writeFileSync(file, YAML.stringify({ listeners: [{ protocol: 'http', listen: `${tb.addr.proxy1}:3128` }], access: { allowClients: [tb.addr.path1Subnet, tb.addr.path2Subnet] }, metrics: { enabled: false }, log: { level: 'info', format: 'json' }, ...doc }));
  return file;
}

/** Client-side receive bytes on both paths. */
async function rx(tb: Testbed): Promise<[number, number]> {
  const [a, b] = await tb.pathCounters();
  return [a.rxBytes, b.rxBytes];
}

const mbit = (bytes: number, ms: number): number => (bytes * 8) / 1000 / ms;

describe('steering engine (testbed, real kernel)', () => {
  let tb: Testbed;
  let srv: LegacyServer;
  before(async () => {
    tb = await createTestbed();
    srv = await startLegacyServer(tb);
    await addForeignState(tb);
  });
  after(async () => tb?.destroy());

  const proxy = (): { kind: 'http'; host: string; port: number } => ({ kind: 'http', host: tb.addr.proxy1, port: 3128 });
  const policyDoc = (rate: string): Record<string, unknown> => ({ policies: [{ name: 'slow-path1', match: { client: tb.addr.path1Subnet }, rate }] });

  it('throttle-to-shift: path 1 capped at 5mbit moves >= 80% of a 30 MB download to path 2, >= 35 Mbit/s', async () => {
    const cfg = writeConfig(tb, 'shift.yaml', policyDoc('5mbit'));
    const h = await Harness.start(tb, cfg);
    try {
      const before = await rx(tb);
      const r = await curl(tb, { url: srv.url('/bytes/31457280'), proxy: proxy(), timeoutMs: 60_000 });
      const afterRx = await rx(tb);
      assert.equal(r.exitCode, 0, r.stderr);
      assert.equal(r.sizeDownload, 31457280);
      const d1 = afterRx[0] - before[0];
      const d2 = afterRx[1] - before[1];
      const share2 = d2 / (d1 + d2);
      const applied = h.logs.filter((l) => l.message === 'steering applied' && l.policy === 'slow-path1');
      console.log(`# throttle-to-shift: path2 share ${(share2 * 100).toFixed(1)}%, ${r.mbitPerSec.toFixed(1)} Mbit/s, path1 ${(d1 / 1e6).toFixed(1)} MB, path2 ${(d2 / 1e6).toFixed(1)} MB; reaction ms ${applied.map((l) => l.ms).join(',')}`);
      assert.ok(applied.length >= 1, 'the path-1 subflow was steered');
      assert.ok(share2 >= 0.8, `path 2 carried ${(share2 * 100).toFixed(1)}%`);
      assert.ok(r.mbitPerSec >= 35, `download ran at ${r.mbitPerSec.toFixed(1)} Mbit/s`);
    } finally {
      assert.equal(await h.signal('SIGTERM'), 0);
    }
    assert.deepEqual(await ownedState(tb), NONE);
    await foreignStateIntact(tb);
  });

  it('state is present while active; SIGHUP with a new rate re-rates a running transfer; SIGTERM removes it all', async () => {
    const cfg = writeConfig(tb, 'hup.yaml', policyDoc('5mbit'));
    const h = await Harness.start(tb, cfg);
    let dl: ReturnType<typeof curl> | null = null;
    try {
      dl = curl(tb, { url: srv.url('/bytes/157286400'), proxy: proxy(), timeoutMs: 90_000 });
      await h.waitFor((l) => l.message === 'steering applied' && l.policy === 'slow-path1', 10_000);
      const st = await ownedState(tb);
      assert.equal(st.table, true);
      assert.deepEqual(st.qdiscs, [tb.ifaces.proxy1]);
      const elems = (await tb.exec('proxy', ['nft', 'list', 'map', 'inet', 'mptcp_proxy', 'sf4_class'])).stdout;
      assert.match(elems, new RegExp(`${tb.addr.proxy1.replace(/\./g, '\\.')} \\. 3128 \\. ${tb.addr.client1.replace(/\./g, '\\.')}`));
      const classes = await tb.exec('proxy', ['tc', 'class', 'show', 'dev', tb.ifaces.proxy1]);
      assert.match(classes.stdout, /4d50:1 .*rate 5Mbit/, JSON.stringify(classes) + h.stderr.slice(-2000));
      await sleep(1000);
      const window = async (): Promise<number> => {
        const a = (await rx(tb))[0];
        await sleep(2000);
        return mbit((await rx(tb))[0] - a, 2000);
      };
      const slow = await window();
      writeConfig(tb, 'hup.yaml', policyDoc('30mbit'));
      h.proc.kill('SIGHUP');
      await h.waitFor((l) => l.message === 'harness reloaded');
      assert.match((await tb.exec('proxy', ['tc', 'class', 'show', 'dev', tb.ifaces.proxy1])).stdout, /4d50:1 .*rate 30Mbit/);
      await sleep(500);
      const fast = await window();
      console.log(`# SIGHUP 5mbit -> 30mbit: path-1 rate ${slow.toFixed(1)} -> ${fast.toFixed(1)} Mbit/s`);
      assert.ok(slow < 6.5, `path 1 at ${slow.toFixed(1)} Mbit/s under a 5mbit cap`);
      assert.ok(fast > 10, `path 1 at ${fast.toFixed(1)} Mbit/s after raising the cap`);
    } finally {
      assert.equal(await h.signal('SIGTERM'), 0);
    }
    assert.deepEqual(await ownedState(tb), NONE);
    await foreignStateIntact(tb);
    // The proxy's stop closed the download's connection; only wait for curl to go.
    await dl;
  });

  it('after SIGKILL the state stays; a restart removes it and SIGTERM leaves nothing', async () => {
    const cfg = writeConfig(tb, 'kill.yaml', policyDoc('5mbit'));
    const h = await Harness.start(tb, cfg);
    const r = await curl(tb, { url: srv.url('/bytes/1048576'), proxy: proxy() });
    assert.equal(r.exitCode, 0);
    await h.signal('SIGKILL');
    const left = await ownedState(tb);
    assert.equal(left.table, true);
    assert.deepEqual(left.qdiscs, [tb.ifaces.proxy1]);
    const h2 = await Harness.start(tb, cfg);
    const removed = await h2.waitFor((l) => l.message === 'steering: removed state left by an earlier run');
    assert.ok((removed.removed as string[]).includes(`qdisc ${tb.ifaces.proxy1}`), JSON.stringify(removed));
    assert.equal(await h2.signal('SIGTERM'), 0);
    assert.deepEqual(await ownedState(tb), NONE);
    await foreignStateIntact(tb);
  });
});
