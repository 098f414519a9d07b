/**
 * Running the proxy: one process (connection plane + subflow plane + admin endpoint), or a
 * cluster supervisor with workers (src/cluster).
 */
import { ProxyApp } from '../app';
import { pacRoute } from '../admin/pac';
import { closeAdminServer, startAdminServer } from '../admin/server';
import { runSupervisor } from '../cluster/supervisor';
import { runWorker } from '../cluster/worker';
import { WORKER_ENV } from '../cluster/messages';
import { claimActivatedSockets } from '../listener/activation';
import type { FlagValues } from '../config/load';
import { runUntilStopped } from '../process/lifecycle';
import type { Config } from '../config/schema';
import type { Logger } from '../log/logger';
import { ProxyMetrics } from '../metrics/metrics';
import { registrySink } from '../registry/kernel-feed';
import { SubflowPlane } from '../subflow-plane';
import { raiseOpenFileLimit } from '../sys/rlimit';

async function runSingle(flags: FlagValues, config: Config, log: Logger): Promise<number> {
  const metrics = new ProxyMetrics(config.instance);
  const plane = new SubflowPlane(config, log, metrics);
  const app = new ProxyApp(config, log, metrics, { sink: registrySink(plane.registry), reusePort: false, kernel: plane.kernel });
  let admin: import('node:http').Server | null = null;
  const stopAll = async (drainMs: number): Promise<void> => {
    await app.stop(drainMs);
    if (admin) await closeAdminServer(admin);
    await plane.stop();
  };
  return runUntilStopped(flags, log, async () => {
    try {
      await plane.start();
      await app.start();
      if (config.metrics.enabled) {
        admin = await startAdminServer(
          config.metrics.host,
          config.metrics.port,
          {
            metrics,
            subflows: plane.registry,
            connections: () => app.openConnections(),
            refresh: () => app.sampleAll(),
            buffers: (id) => app.tuner.status(id),
            routes: { '/proxy.pac': pacRoute(() => app.config.listeners) },
          },
          log,
        );
      }
    } catch (e) {
      await stopAll(0);
      throw e;
    }
    return {
      reload: async (next) => {
        await plane.reload(next);
        await app.reload(next);
      },
      stop: stopAll,
      config: () => app.config,
      emergencyCleanup: () => plane.stop(),
    };
  });
}

export function runProxy(flags: FlagValues, config: Config, log: Logger): Promise<number> {
  // Two descriptors per relayed connection: never stop at a low default soft limit (Node raises
  // it too on start-up; this makes it explicit, and logged, for every worker alike).
  try {
    const nofile = raiseOpenFileLimit();
    log.info('open files limit', { soft: nofile.soft, hard: nofile.hard, was: nofile.before });
  } catch (e) {
    log.warn('could not raise the open files limit', { error: (e as Error).message });
  }
  const passed = claimActivatedSockets();
  if (process.env[WORKER_ENV] && process.send) return runWorker(flags, config, log);
  for (const s of passed.unmatched(config.listeners)) {
    log.warn('socket activation: a passed socket matches no listener by name or protocol; not used', { fdName: s.name, address: `${s.address}:${s.port}` });
  }
  if (config.workers > 1) return runSupervisor(flags, config, log);
  return runSingle(flags, config, log);
}
