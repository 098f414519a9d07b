/**
 * A cluster worker: a connection plane on SO_REUSEPORT listeners. Its connection observations
 * (samples, client views, closes) go to the supervisor, which owns the subflow plane; it answers
 * the supervisor's metric and sample requests, reloads and drains on its word.
 */
import { ProxyApp } from '../app';
import type { FlagValues } from '../config/load';
import { coalescing, reloadFromFlags } from '../process/lifecycle';
import type { Config } from '../config/schema';
import { setConnectionIdBase, viewOf } from '../core/connection';
import type { Logger } from '../log/logger';
import { ProxyMetrics } from '../metrics/metrics';
import type { ConnectionSink } from '../registry/kernel-feed';
import type { ConnectionBuffers } from '../tuning/tuner';
import { CONNECTION_ID_STRIDE, WORKER_ENV, isMessage, type ToSupervisor, type ToWorker } from './messages';

export async function runWorker(flags: FlagValues, config: Config, log: Logger): Promise<number> {
  const index = Number(process.env[WORKER_ENV] ?? 0);
  setConnectionIdBase(index * CONNECTION_ID_STRIDE);
  const send = (m: ToSupervisor): void => {
    if (process.connected) process.send!(m);
  };
  const sink: ConnectionSink = {
    sample: (client, samples) => send({ mpx: 'sample', client, samples }),
    client: (client) => send({ mpx: 'client', client }),
    closed: (client) => send({ mpx: 'closed', client }),
    // The registry is in the supervisor: the tuner's settle timer is this process's only sight.
    onSubflowUp: () => {},
  };
  const metrics = new ProxyMetrics(config.instance);
  const app = new ProxyApp(config, log.child({ worker: index }), metrics, { sink, reusePort: true });
  try {
    await app.start();
  } catch (e) {
    send({ mpx: 'start-failed', message: (e as Error).message });
    return 2;
  }
  send({ mpx: 'ready' });

  return new Promise((resolve) => {
    let stopping = false;
    const stop = (drainMs: number): void => {
      if (stopping) return;
      stopping = true;
      app.stop(drainMs).then(() => resolve(0));
    };
    const reload = coalescing(() => (stopping ? Promise.resolve() : reloadFromFlags(flags, log, (next) => app.reload(next))));
    process.on('message', (m: unknown) => {
      if (!isMessage<ToWorker>(m)) return;
      switch (m.mpx) {
        case 'metrics-req':
          metrics.registry.getMetricsAsJSON().then((json) => send({ mpx: 'metrics', id: m.id, metrics: json }));
          break;
        case 'sample-req': {
          app.sampleAll();
          const buffers: [number, ConnectionBuffers | null][] = [];
          for (const c of app.openConnections()) {
            sink.client(viewOf(c));
            buffers.push([c.id, app.tuner.status(c.id)]);
          }
          send({ mpx: 'sampled', id: m.id, buffers });
          break;
        }
        case 'reload':
          reload();
          break;
        case 'stop':
          stop(m.drainMs);
          break;
      }
    });
    // The supervisor coordinates signals; a terminal's Ctrl-C reaches the whole group.
    process.on('SIGINT', () => {});
    process.on('SIGHUP', () => {});
    process.on('SIGTERM', () => stop(0));
    process.on('disconnect', () => stop(0));
  });
}
