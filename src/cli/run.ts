/**
 * Running the proxy: one process (connection plane + subflow plane + admin endpoint), or a
 * cluster supervisor with workers (src/cluster).
 */
import { ProxyApp } from '../app';
import { runSupervisor } from '../cluster/supervisor';
import { runWorker } from '../cluster/worker';
import { WORKER_ENV } from '../cluster/messages';
import { claimActivatedSockets } from '../listener/activation';
import type { FlagValues } from '../config/load';
import { serveUntilStopped } from '../process/serve';
import type { Config } from '../config/schema';
import type { Logger } from '../log/logger';
import { registrySink } from '../registry/kernel-feed';
import { raiseOpenFileLimit } from '../sys/rlimit';

function runSingle(flags: FlagValues, config: Config, log: Logger): Promise<number> {
  return serveUntilStopped(flags, config, log, (plane, metrics) => {
    const app = new ProxyApp(config, log, metrics, { sink: registrySink(plane.registry), reusePort: false, kernel: plane.kernel });
    return {
      start: () => app.start(),
      reload: (next) => app.reload(next),
      stop: (drainMs) => app.stop(drainMs),
      config: () => app.config,
      admin: {
        metrics,
        connections: () => app.openConnections(),
        refresh: () => app.sampleAll(),
        buffers: (id) => app.tuner.status(id),
      },
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
