/**
 * Reload and drain under load, single process and --workers 2.
 *
 * SIGHUP: keep-alive loops of Node's http client through the forward proxy (one on a listener
 * the reload removes), curl runs of several requests over one CONNECT tunnel or SOCKS5
 * connection, and three 16 MB downloads over 2 × 20 Mbit/s paths (curl under mptcpize, HTTP/CONNECT/SOCKS5)
 * run while the proxy gets SIGHUP five times: unchanged, changed (a listener added, one removed,
 * a different client allow-list that still admits the testbed, a changed steering policy) twice
 * in a row, then changed again. Zero failed requests, every body byte-identical, no keep-alive
 * connection reopened, the added listener answers and the removed one refuses.
 *
 * SIGTERM: downloads in flight finish intact, a new connection is refused at once, the proxy
 * exits 0 soon after the last download ends (well inside the drain time).
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import path from 'node:path';
import { after, before, describe, test } from 'node:test';
import { curl, type CurlResult, type ProxyKind } from '../../testkit/clients';
import { startLegacyServer, type LegacyServer } from '../../testkit/legacy-server';
import { patternChunks, patternSha256 } from '../../testkit/pattern';
import { createHash } from 'node:crypto';
import { useTestbed, type ProxyHandle, type Testbed } from '../../testkit/testbed';
import { pickPorts } from '../ops/ports';
import { sleep } from '../../testkit/sleep';

const DOWNLOAD_BYTES = 16_000_000;
/** Each client path is shaped to this: long transfers without burning the shared cores (curl's
 *  --limit-rate does not hold when it writes to a pipe). */
const PATH_MBIT = 20;
/** Pace of each download during the SIGHUPs: 16 MB take ~13 s, three use ~29 of the 40 Mbit/s. */
const RELOAD_DOWNLOAD_KBPS = 1_200;

/** A keep-alive agent that counts the connections it opens (each is one proxy connection). */
class CountingAgent extends http.Agent {
  opened = 0;
  constructor(private readonly socketPath: string, maxSockets: number) {
    super({ keepAlive: true, maxSockets });
  }
  override createConnection(): net.Socket {
    this.opened++;
    return net.connect(this.socketPath);
  }
}

interface LoopStats {
  ok: number;
  failures: string[];
  reused: number;
}

/** `loops` sequential request loops over one keep-alive agent, until stop() is called. */
class KeepAliveLoad {
  readonly stats: LoopStats = { ok: 0, failures: [], reused: 0 };
  private running = true;
  private readonly done: Promise<void[]>;
  constructor(
    readonly agent: CountingAgent,
    loops: number,
    private readonly url: (seed: number) => { url: string; seed: number; size: number },
  ) {
    this.done = Promise.all(Array.from({ length: loops }, (_, i) => this.loop(i)));
  }

  private async loop(i: number): Promise<void> {
    for (let n = 0; this.running; n++) {
      const { url, seed, size } = this.url(i * 100_000 + n);
      try {
        const r = await get(this.agent, url);
        if (r.status !== 200) this.stats.failures.push(`${url}: status ${r.status} ${r.error ?? ''}`);
        else if (r.sha256 !== patternSha256(seed, size)) this.stats.failures.push(`${url}: body differs (${r.size} bytes)`);
        else this.stats.ok++;
        if (r.reused) this.stats.reused++;
      } catch (e) {
        this.stats.failures.push(`${url}: ${(e as Error).message}`);
      }
      await sleep(5);
    }
  }

  async stop(): Promise<LoopStats> {
    this.running = false;
    await this.done;
    this.agent.destroy();
    return this.stats;
  }
}

function get(agent: http.Agent, url: string): Promise<{ status: number; sha256: string; size: number; reused: boolean; error?: string }> {
  return new Promise((resolve, reject) => {
    const req = http.get({ agent, path: url, headers: { host: new URL(url).host }, timeout: 10_000 }, (res) => {
      const hash = createHash('sha256');
      let size = 0;
      res.on('data', (d: Buffer) => {
        hash.update(d);
        size += d.length;
      });
      res.on('end', () => resolve({ status: res.statusCode ?? 0, sha256: hash.digest('hex'), size, reused: req.reusedSocket, error: res.headers['x-mptcp-proxy-error'] as string | undefined }));
      res.on('error', reject);
    });
    req.on('timeout', () => req.destroy(new Error('timed out')));
    req.on('error', reject);
  });
}

function concatSha(seed: number, size: number, times: number): string {
  const h = createHash('sha256');
  for (let i = 0; i < times; i++) for (const c of patternChunks(seed, size)) h.update(c);
  return h.digest('hex');
}

/** Poll until `want` listening state of port in the proxy namespace, or fail. */
async function waitListening(tb: Testbed, port: number, want: boolean, ms = 5_000): Promise<void> {
  const deadline = Date.now() + ms;
  while ((await tb.listening('proxy', port)) !== want) {
    if (Date.now() > deadline) throw new Error(`port ${port} ${want ? 'not listening' : 'still listening'} after ${ms} ms`);
    await sleep(50);
  }
}

/** Long, so that an exit right after the downloads shows the drain ends when they do. */
const DRAIN_MS = 20_000;

interface ConfigShape {
  listeners: { name: string; protocol: string; port: number }[];
  allowClients: string[];
  policyClient: string;
  policyRate: string;
  connectTimeoutMs: number;
}

/** An HTTP and a SOCKS listener, the test client allowed, a policy that matches nobody here. */
function baseConfig(clientCidr: string, pHttp: number, pSocks: number): ConfigShape {
  return {
    listeners: [
      { name: 'http', protocol: 'http', port: pHttp },
      { name: 'socks', protocol: 'socks', port: pSocks },
    ],
    allowClients: [clientCidr],
    policyClient: '192.0.2.0/24',
    policyRate: '5mbit',
    connectTimeoutMs: 10_000,
  };
}

function writeConfig(file: string, host: string, c: ConfigShape): void {
  const yaml = [
    'listeners:',
    ...c.listeners.map((l) => `  - { name: ${l.name}, protocol: ${l.protocol}, listen: "${host}:${l.port}" }`),
    'access:',
    `  allowClients: [${c.allowClients.map((a) => `"${a}"`).join(', ')}]`,
    'upstream:',
    `  connectTimeoutMs: ${c.connectTimeoutMs}`,
    'metrics: { enabled: false }',
    `timeouts: { drainMs: ${DRAIN_MS} }`,
    'log: { format: json }',
    'policies:',
    `  - { name: cap, match: { client: "${c.policyClient}" }, rate: ${c.policyRate} }`,
    '',
  ].join('\n');
  fs.writeFileSync(file, yaml);
}

async function startWithConfig(tb: Testbed, config: string, workers: number, ports: number[]): Promise<ProxyHandle> {
  const px = await tb.startProxy(['--config', config, '--workers', String(workers)], { waitReady: false });
  for (const p of ports) {
    const deadline = Date.now() + 15_000;
    while (!(await tb.listening('proxy', p))) {
      if (px.proc.exitCode !== null || Date.now() > deadline) throw new Error(`proxy not listening on ${p}: ${px.stderr.slice(-3000)}`);
      await sleep(50);
    }
  }
  return px;
}

for (const workers of [1, 2]) {
  describe(`ops: SIGHUP under load and SIGTERM drain (workers=${workers})`, { timeout: 180_000 }, () => {
    const tb = useTestbed({ before, after }, { shapeMbit: PATH_MBIT });
    let server: LegacyServer;
    before(async () => {
      server = await startLegacyServer(tb());
    });

    test('five SIGHUPs (three with a changed config) under load: zero failures, downloads intact, listeners follow', async () => {
      const t = tb();
      const host = t.addr.proxy1;
      const [pHttp, pSocks, pOld, pNew] = pickPorts(4);
      const file = path.join(t.tmpDir, `reload-${workers}.yaml`);
      const base = baseConfig(t.cidr, pHttp, pSocks);
      const v1: ConfigShape = { ...base, listeners: [...base.listeners, { name: 'old', protocol: 'http', port: pOld }] };
      const v2: ConfigShape = {
        ...v1,
        listeners: [v1.listeners[0], v1.listeners[1], { name: 'new', protocol: 'mixed', port: pNew }],
        allowClients: [`${t.addr.client1}/32`, `${t.addr.client2}/32`, '198.51.100.0/24'],
        policyClient: `${t.addr.client2}/32`,
        policyRate: '400mbit',
      };
      const v3: ConfigShape = { ...v2, allowClients: [t.cidr], policyRate: '300mbit', connectTimeoutMs: 5_000 };
      writeConfig(file, host, v1);
      const px = await startWithConfig(t, file, workers, [pHttp, pSocks, pOld]);
      try {
        const small = (seed: number): { url: string; seed: number; size: number } => {
          const size = 1_000 + (seed % 50_000);
          return { url: server.url(`/bytes/${size}?seed=${seed}`), seed, size };
        };
        const main = new KeepAliveLoad(new CountingAgent(await t.bridge('client', host, pHttp, { mptcp: true }), 4), 4, small);
        const onOld = new KeepAliveLoad(new CountingAgent(await t.bridge('client', host, pOld, { mptcp: true }), 1), 1, small);

        // Short curl runs: several requests over one CONNECT tunnel or one SOCKS5 connection.
        const tunnelFailures: string[] = [];
        let tunnelRuns = 0;
        let tunnelsRunning = true;
        const REPEAT = 4;
        const tunnelLoop = async (kind: ProxyKind, port: number, seed: number): Promise<void> => {
          for (let n = 0; tunnelsRunning; n++) {
            const size = 20_000 + n;
            const url = server.url(`/bytes/${size}?seed=${seed}`);
            const r = await curl(t, { url, proxy: { kind, host, port }, extraArgs: Array(REPEAT - 1).fill(url), timeoutMs: 15_000 });
            tunnelRuns++;
            if (r.exitCode !== 0 || r.sha256 !== concatSha(seed, size, REPEAT)) tunnelFailures.push(`${kind} run ${n}: exit ${r.exitCode} ${r.errorMessage} ${r.stderr} size ${r.sizeDownload}`);
          }
        };
        const tunnels = Promise.all([tunnelLoop('connect', pHttp, 7), tunnelLoop('socks5h', pSocks, 8)]);

        // Paced by the server so every download outlasts the SIGHUP schedule (~5 s, longer on a
        // loaded machine) however fast the paths are: the point is reloads during transfers.
        const download = (kind: ProxyKind, port: number, seed: number): Promise<CurlResult> =>
          curl(t, { url: server.url(`/bytes/${DOWNLOAD_BYTES}?seed=${seed}&kBps=${RELOAD_DOWNLOAD_KBPS}`), proxy: { kind, host, port }, timeoutMs: 60_000 });
        const downloadsAt = Date.now();
        const downloads = Promise.all([download('http', pHttp, 101), download('connect', pHttp, 102), download('socks5h', pSocks, 103)]);

        const reloads = (): number => px.logs.filter((l) => l.message === 'config reloaded').length;
        /** SIGHUP (twice, 3 ms apart, when `twice`: the second arrives while the first is applied or coalesces with it). */
        const hup = async (twice = false): Promise<void> => {
          const before = reloads();
          px.proc.kill('SIGHUP');
          if (twice) setTimeout(() => px.proc.kill('SIGHUP'), 3);
          await px.waitForLog(() => reloads() >= before + workers, 10_000);
          if (twice) await sleep(500);
        };
        await sleep(1_500);
        await hup(); // unchanged config
        await sleep(1_000);
        writeConfig(file, host, v2);
        await hup(true);
        await waitListening(t, pNew, true);
        await waitListening(t, pOld, false);
        await sleep(1_000);
        writeConfig(file, host, v3);
        await hup();
        await sleep(1_000);
        const lastHupAt = Date.now();
        await hup();

        // The added listener (mixed) answers both protocols; the removed one refuses.
        const viaNewHttp = await curl(t, { url: server.url('/bytes/5000?seed=5'), proxy: { kind: 'http', host, port: pNew } });
        assert.equal(viaNewHttp.sha256, patternSha256(5, 5000), `new listener (http): ${viaNewHttp.errorMessage}`);
        const viaNewSocks = await curl(t, { url: server.url('/bytes/5000?seed=6'), proxy: { kind: 'socks5h', host, port: pNew } });
        assert.equal(viaNewSocks.sha256, patternSha256(6, 5000), `new listener (socks): ${viaNewSocks.errorMessage}`);
        const viaOld = await curl(t, { url: server.url('/bytes/10'), proxy: { kind: 'http', host, port: pOld } });
        assert.equal(viaOld.exitCode, 7, `removed listener should refuse the connection (curl exit 7), got ${viaOld.exitCode} ${viaOld.errorMessage}`);

        const got = await downloads;
        tunnelsRunning = false;
        await tunnels;
        const mainStats = await main.stop();
        const oldStats = await onOld.stop();
        console.log(
          `# workers=${workers}: ${mainStats.ok} keep-alive requests (${mainStats.reused} on reused connections, ${main.agent.opened} connections), ` +
            `${oldStats.ok} on the removed listener's connection, ${tunnelRuns} CONNECT/SOCKS runs of ${REPEAT}, 3 downloads of ${DOWNLOAD_BYTES} B`,
        );
        got.forEach((r, i) => {
          assert.equal(r.exitCode, 0, `download ${i}: ${r.errorMessage} ${r.stderr}`);
          assert.equal(r.sha256, patternSha256(101 + i, DOWNLOAD_BYTES), `download ${i} differs (${r.sizeDownload} bytes)`);
          assert.ok(downloadsAt + r.timeTotal * 1000 > lastHupAt, `download ${i} (${r.timeTotal} s) ended before the last SIGHUP`);
        });
        assert.deepEqual(mainStats.failures, [], 'keep-alive requests failed');
        assert.deepEqual(oldStats.failures, [], "requests on the removed listener's open connection failed");
        assert.deepEqual(tunnelFailures, [], 'CONNECT/SOCKS runs failed');
        assert.ok(mainStats.ok > 200 && oldStats.ok > 50, `too little load: ${mainStats.ok} / ${oldStats.ok}`);
        assert.equal(main.agent.opened, 4, 'keep-alive connections were reopened');
        assert.equal(onOld.agent.opened, 1, "the removed listener's keep-alive connection was reopened");
        assert.ok(tunnelRuns >= 10, `only ${tunnelRuns} CONNECT/SOCKS runs`);
        assert.equal(px.logs.filter((l) => /reload (refused|failed)/.test(String(l.message))).length, 0, 'a reload was refused or failed');
      } finally {
        if (process.env.MPX_DEBUG_LOG) fs.writeFileSync(process.env.MPX_DEBUG_LOG, px.stderr);
        const exit = await px.stop(8_000);
        assert.equal(exit.code, 0, `proxy exit: ${JSON.stringify(exit)} ${px.stderr.slice(-2000)}`);
      }
    });

    test('SIGTERM: in-flight downloads finish, new connections are refused, exit soon after', async () => {
      const t = tb();
      const host = t.addr.proxy1;
      const [pHttp, pSocks] = pickPorts(2);
      const file = path.join(t.tmpDir, `drain-${workers}.yaml`);
      writeConfig(file, host, baseConfig(t.cidr, pHttp, pSocks));
      const px = await startWithConfig(t, file, workers, [pHttp, pSocks]);
      let exited = false;
      try {
        // Three at once, paced to ~3.3 s each (well in flight at SIGTERM 0.7 s in, done inside the drain).
        const size = 5_000_000;
        const download = (kind: ProxyKind, port: number, seed: number): Promise<CurlResult> =>
          curl(t, { url: server.url(`/bytes/${size}?seed=${seed}&kBps=1500`), proxy: { kind, host, port }, timeoutMs: 30_000 });
        // An idle keep-alive client connection must not hold the drain.
        const idle = new CountingAgent(await t.bridge('client', host, pHttp, { mptcp: true }), 1);
        const first = await get(idle, server.url('/bytes/100?seed=1'));
        assert.equal(first.status, 200);
        const startAt = Date.now();
        const downloads = Promise.all([download('http', pHttp, 201), download('connect', pHttp, 202), download('socks5h', pSocks, 203)]);
        await sleep(700);
        const termAt = Date.now();
        px.proc.kill('SIGTERM');
        const stopping = await px.waitForLog((l) => l.message === 'stopping', 5_000);
        assert.equal(stopping.drainMs, DRAIN_MS, 'the drain runs for the configured time');
        const exitP = px.exited.then((e) => ({ ...e, at: Date.now() }));
        // New connections: refused once the listeners are closed (give the workers their message).
        await waitListening(t, pHttp, false, 2_000);
        const late = await curl(t, { url: server.url('/bytes/10'), proxy: { kind: 'http', host, port: pHttp }, timeoutMs: 10_000 });
        assert.equal(late.exitCode, 7, `a new connection after SIGTERM should be refused: exit ${late.exitCode} ${late.errorMessage}`);
        const lateSocks = await curl(t, { url: server.url('/bytes/10'), proxy: { kind: 'socks5h', host, port: pSocks }, timeoutMs: 10_000 });
        assert.equal(lateSocks.exitCode, 7, `a new SOCKS connection after SIGTERM should be refused: exit ${lateSocks.exitCode}`);
        const got = await downloads;
        const lastDone = Date.now();
        got.forEach((r, i) => {
          assert.equal(r.exitCode, 0, `download ${i} cut by the drain: ${r.errorMessage} ${r.stderr}`);
          assert.equal(r.sha256, patternSha256(201 + i, size), `download ${i} differs (${r.sizeDownload} bytes)`);
          assert.ok(startAt + r.timeTotal * 1000 > termAt + 300, `download ${i} (${r.timeTotal} s) was not in flight at SIGTERM`);
        });
        const exit = await exitP;
        exited = true;
        idle.destroy();
        assert.equal(exit.code, 0, `exit ${JSON.stringify(exit)}`);
        console.log(`# workers=${workers}: downloads ${got.map((r) => r.timeTotal.toFixed(2)).join('/')} s, SIGTERM after ${termAt - startAt} ms; exit ${exit.at - termAt} ms after SIGTERM, ${exit.at - lastDone} ms after the last download`);
        assert.ok(exit.at - lastDone < 1_500, `exit ${exit.at - lastDone} ms after the last download ended: the drain waited for idle connections`);
      } finally {
        if (!exited) await px.stop(8_000);
      }
    });
  });
}
