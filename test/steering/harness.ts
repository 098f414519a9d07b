/**
 * Runs inside the proxy namespace: `node harness.js CONFIG.yaml`. The whole proxy (ProxyApp),
 * the kernel's MPTCP view feeding the subflow registry, and the steering engine, wired the way
 * the CLI is meant to wire them (see the steering report). SIGHUP reloads the file, SIGTERM stops
 * and removes all steering state. Logs JSON lines on stderr; "steering applied" lines carry the
 * reaction time from the kernel's subflow event to the rule being in place (ms).
 */
import { ProxyApp } from '../../src/app';
import { loadConfig } from '../../src/config/load';
import { createLogger } from '../../src/log/logger';
import { KernelView } from '../../src/mptcp/kernel-view';
import type { SockEnd } from '../../src/mptcp/netlink-codec';
import { subflowKey } from '../../src/registry/registry';
import { SteeringEngine } from '../../src/steering/engine';

const ep = (e: SockEnd): { host: string; port: number } => ({ host: e.address, port: e.port });

async function main(): Promise<void> {
  const file = process.argv[2]!;
  const config = loadConfig({ config: file });
  const log = createLogger(config.log);
  const app = new ProxyApp(config, log);
  const reg = app.subflows;
  const kv = new KernelView();
  const seenAt = new Map<string, bigint>();
  kv.on('connection-established', (e) => {
    if (!e.serverSide) return;
    seenAt.set(subflowKey(ep(e.local), ep(e.remote)), e.receivedAt);
    reg.subflowUp({ token: String(e.token), local: ep(e.local), remote: ep(e.remote), interface: null, kind: 'initial', backup: false, source: 'kernel' });
  });
  kv.on('subflow-established', (e) => {
    seenAt.set(subflowKey(ep(e.local), ep(e.remote)), e.receivedAt);
    reg.subflowUp({ token: String(e.token), local: ep(e.local), remote: ep(e.remote), interface: e.ifName, kind: 'join', backup: e.backup, source: 'kernel' });
  });
  kv.on('subflow-closed', (e) => reg.subflowDown(String(e.token), ep(e.local), ep(e.remote)));
  kv.on('priority-changed', (e) => reg.priorityChanged(String(e.token), ep(e.local), ep(e.remote), e.backup));
  kv.on('connection-closed', (e) => reg.connectionClosed(String(e.token)));
  app.events.on('upstream-connected', (c) => {
    if (c.token !== null) reg.attachClient(String(c.token), c);
  });

  const engine = new SteeringEngine(config.steering, reg, log, { events: app.events, metrics: app.metrics.registry });
  engine.on('applied', (s, plan, at) => {
    const t0 = seenAt.get(s.key);
    seenAt.delete(s.key);
    log.info('steering applied', { subflow: s.key, ...plan, ms: t0 === undefined ? null : Number(at - t0) / 1e6 });
  });
  engine.on('uplink-change', (name, state) => log.info('uplink change', { uplink: name, state, at: Date.now() }));

  kv.start();
  await engine.start();
  await app.start();
  log.info('harness ready');

  process.on('SIGHUP', () => {
    const next = loadConfig({ config: file });
    void app.reload(next).then(() => engine.reload(next.steering)).then(() => log.info('harness reloaded'));
  });
  let stopping = false;
  const stop = (): void => {
    if (stopping) return;
    stopping = true;
    void (async () => {
      await engine.stop();
      await app.stop(0);
      await kv.stop();
      log.info('harness stopped');
      process.exit(0);
    })();
  };
  process.on('SIGTERM', stop);
  process.on('SIGINT', stop);
}

main().catch((e: unknown) => {
  process.stderr.write(`harness: ${e instanceof Error ? (e.stack ?? e.message) : String(e)}\n`);
  process.exit(1);
});
