/**
 * The process around a running proxy, the same in single-process and cluster modes: the subflow
 * plane (which owns kernel state), a connection plane (one ProxyApp, or the cluster's workers),
 * the admin endpoint, and the signals of process/lifecycle.ts. Start order: subflow plane,
 * connection plane, admin; stop order: connections drain, admin closes, kernel state goes last.
 */
import type http from 'node:http';
import { pacRoute } from '../admin/pac';
import { closeAdminServer, startAdminServer, type AdminSources } from '../admin/server';
import type { FlagValues } from '../config/load';
import type { Config } from '../config/schema';
import type { Logger } from '../log/logger';
import { ProxyMetrics } from '../metrics/metrics';
import { SubflowPlane } from '../subflow-plane';
import { runUntilStopped } from './lifecycle';

/** What a mode runs on top of the subflow plane. */
export interface ConnectionPlane {
  start(): Promise<void>;
  /** Called after the subflow plane has taken the new config. */
  reload(next: Config): Promise<void>;
  /** Stop accepting and let established connections finish for up to drainMs. */
  stop(drainMs: number): Promise<void>;
  /** The config in force; the PAC file follows its listeners. */
  config(): Config;
  /** What /metrics and /connections show (the subflow registry and /proxy.pac are added here). */
  admin: Omit<AdminSources, 'subflows' | 'routes'>;
}

/**
 * Build the planes (`connections` gets the subflow plane and the process's metrics), run them
 * until a signal stops them, and resolve with the exit code. A start that fails undoes what had
 * started, kernel state included, before the error reaches the caller.
 */
export function serveUntilStopped(
  flags: FlagValues,
  config: Config,
  log: Logger,
  connections: (plane: SubflowPlane, metrics: ProxyMetrics) => ConnectionPlane,
): Promise<number> {
  const metrics = new ProxyMetrics(config.instance);
  const plane = new SubflowPlane(config, log, metrics);
  const front = connections(plane, metrics);
  // The steering modes measure their paths from the open connections' kernel counters.
  plane.steering.measureWith(() => front.admin.refresh());
  let admin: http.Server | null = null;
  const stopAll = async (drainMs: number): Promise<void> => {
    await front.stop(drainMs);
    if (admin) await closeAdminServer(admin);
    await plane.stop();
  };
  return runUntilStopped(flags, log, async () => {
    try {
      await plane.start();
      await front.start();
      if (config.metrics.enabled) {
        admin = await startAdminServer(
          config.metrics.host,
          config.metrics.port,
          { ...front.admin, subflows: plane.registry, routes: { '/proxy.pac': pacRoute(() => front.config().listeners) } },
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
        await front.reload(next);
      },
      stop: stopAll,
      config: () => front.config(),
      emergencyCleanup: () => plane.stop(),
    };
  });
}
