/**
 * The cluster supervisor: forks workers that share the listening ports (MPTCP listeners with
 * SO_REUSEPORT: the kernel spreads new connections, and joins reach their connection by token
 * whichever listener accepted it), restarts a worker that dies, owns the subflow plane and the
 * admin endpoint, and merges the workers' metrics into one view. Workers are plain child
 * processes, not node:cluster workers: cluster would route listen({ fd }) through the primary,
 * which cannot use another process's fd; SO_REUSEPORT already does the balancing.
 */
import { fork as forkProcess, type ChildProcess } from 'node:child_process';
import client from 'prom-client';
import { serveUntilStopped, type ConnectionPlane } from '../process/serve';
import type { FlagValues } from '../config/load';
import type { Config } from '../config/schema';
import type { ClientView } from '../core/connection';
import { activatedSockets, WORKER_LISTEN_FDS_ENV } from '../listener/activation';
import { ListenerError } from '../listener/listener-error';
import type { Logger } from '../log/logger';
import { wholeLines } from '../log/whole-lines';
import type { ProxyMetrics } from '../metrics/metrics';
import { registrySink } from '../registry/kernel-feed';
import type { SubflowPlane } from '../subflow-plane';
import type { ConnectionBuffers } from '../tuning/tuner';
import { CONNECTION_ID_STRIDE, WORKER_ENV, isMessage, type ToSupervisor, type ToWorker } from './messages';

const REQUEST_TIMEOUT_MS = 2_000;

export function runSupervisor(flags: FlagValues, config: Config, log: Logger): Promise<number> {
  return serveUntilStopped(flags, config, log, (plane, metrics) => workerPlane(config, log, plane, metrics));
}

/** The workers as the connection plane: forked at start, told to reload and drain, restarted when one dies. */
function workerPlane(config: Config, log: Logger, plane: SubflowPlane, metrics: ProxyMetrics): ConnectionPlane {
  /** The config in force (reloads replace it). */
  let current = config;
  const sink = registrySink(plane.registry);
  const views = new Map<number, ClientView>();
  /** The workers' buffer status by connection id, as of the last refresh (before each /connections). */
  let buffers = new Map<number, ConnectionBuffers | null>();
  const workers = new Map<number, ChildProcess>();
  /**
   * Each worker's latest metrics, late answers included: a scrape uses them for a worker too busy
   * to answer within the timeout, so merged counters never dip (Prometheus would read a reset).
   */
  const lastMetrics = new Map<number, object[]>();
  const replies = new Map<number, (m: ToSupervisor) => void>();
  let nextRequest = 1;
  let stopping = false;

  /** Ask every worker; resolves with the replies that came within the timeout. */
  const ask = <T extends ToSupervisor>(make: (id: number) => ToWorker): Promise<T[]> =>
    new Promise((resolve) => {
      const id = nextRequest++;
      const got: T[] = [];
      const done = (): void => {
        replies.delete(id);
        clearTimeout(timer);
        resolve(got);
      };
      const timer = setTimeout(done, REQUEST_TIMEOUT_MS);
      let left = workers.size;
      if (left === 0) return done();
      replies.set(id, (m) => {
        got.push(m as T);
        if (--left === 0) done();
      });
      for (const w of workers.values()) w.send(make(id));
    });

  const onMessage = (m: unknown): void => {
    if (!isMessage<ToSupervisor>(m)) return;
    switch (m.mpx) {
      case 'sample':
        views.set(m.client.id, m.client);
        sink.sample(m.client, m.samples);
        break;
      case 'client':
        views.set(m.client.id, m.client);
        sink.client(m.client);
        break;
      case 'closed':
        views.delete(m.client.id);
        sink.closed(m.client);
        break;
      case 'metrics':
      case 'sampled':
        replies.get(m.id)?.(m);
        break;
      default:
        break;
    }
  };

  const fork = (index: number): Promise<void> =>
    new Promise((resolve, reject) => {
      // Socket-activated listening sockets go to every worker as extra fds (from 4, after IPC on
      // 3); the workers share each one's accept queue.
      const passed = activatedSockets().all;
      const w = forkProcess(process.argv[1]!, process.argv.slice(2), {
        env: { ...process.env, [WORKER_ENV]: String(index), [WORKER_LISTEN_FDS_ENV]: passed.map((s, i) => `${4 + i}=${s.name}`).join(':') },
        stdio: ['inherit', 'inherit', 'pipe', 'ipc', ...passed.map((s) => s.fd)],
      });
      // Its log in whole lines through this process's stderr (see log/whole-lines.ts).
      w.stderr!.pipe(wholeLines()).pipe(process.stderr, { end: false });
      workers.set(index, w);
      w.on('message', (m: unknown) => {
        if (isMessage<ToSupervisor>(m) && m.mpx === 'metrics') lastMetrics.set(index, m.metrics);
        if (isMessage<ToSupervisor>(m) && m.mpx === 'ready') resolve();
        else if (isMessage<ToSupervisor>(m) && m.mpx === 'start-failed') reject(new ListenerError(m.message));
        else onMessage(m);
      });
      w.on('exit', (code, signal) => {
        workers.delete(index);
        lastMetrics.delete(index);
        for (const v of views.values()) if (Math.floor(v.id / CONNECTION_ID_STRIDE) === index) views.delete(v.id);
        if (stopping) return;
        log.error('worker exited; starting a new one', { worker: index, code, signal });
        fork(index).catch((e) => log.error('worker restart failed', { worker: index, error: (e as Error).message }));
      });
    });

  return {
    start: async () => {
      await Promise.all(Array.from({ length: config.workers }, (_, i) => fork(i + 1)));
      log.info('workers ready', { workers: config.workers });
    },
    reload: async (next) => {
      current = next;
      for (const w of workers.values()) w.send({ mpx: 'reload' } satisfies ToWorker);
    },
    stop: async (drainMs) => {
      stopping = true;
      const exits = [...workers.values()].map((w) => new Promise((r) => w.once('exit', r)));
      for (const w of workers.values()) w.send({ mpx: 'stop', drainMs } satisfies ToWorker);
      await Promise.race([Promise.all(exits), new Promise((r) => setTimeout(r, drainMs + 3_000))]);
      for (const w of workers.values()) w.kill('SIGKILL');
    },
    config: () => current,
    admin: {
      metrics: {
        contentType: metrics.registry.contentType,
        render: async () => {
          const fresh = await ask<Extract<ToSupervisor, { mpx: 'metrics' }>>((id) => ({ mpx: 'metrics-req', id }));
          const late = workers.size - fresh.length;
          if (late > 0) metrics.lateWorkerScrapes.inc(late);
          const own = await metrics.registry.getMetricsAsJSON();
          const known = [...workers.keys()].map((i) => lastMetrics.get(i)).filter((m) => m !== undefined);
          return client.AggregatorRegistry.aggregate([own, ...known]).metrics();
        },
      },
      connections: () => views.values(),
      buffers: (id) => buffers.get(id) ?? null,
      refresh: async () => {
        const sampled = await ask<Extract<ToSupervisor, { mpx: 'sampled' }>>((id) => ({ mpx: 'sample-req', id }));
        buffers = new Map(sampled.flatMap((r) => r.buffers));
      },
    },
  };
}
