/**
 * Process signals for a running proxy: SIGHUP reloads (a bad new config keeps the running one),
 * SIGTERM/SIGINT drain and clean up, a fatal error removes kernel state before exiting.
 */
import { loadConfig, type FlagValues } from '../config/load';
import type { Config } from '../config/schema';
import type { Logger } from '../log/logger';
import { notifyReady, notifyReloading, notifyStopping } from '../sys/sdnotify';

/**
 * Run `job` now, or, when a run is under way, once more after it: reloads never overlap (two at
 * once would both try to bind a new listener), and a burst of requests costs at most one extra run.
 */
export function coalescing(job: () => Promise<void>): () => void {
  let running = false;
  let again = false;
  const go = (): void => {
    if (running) {
      again = true;
      return;
    }
    running = true;
    job().finally(() => {
      running = false;
      if (again) {
        again = false;
        go();
      }
    });
  };
  return go;
}

/** Re-read the config and apply it; a bad config is refused (the running one stays), a failure logged. */
export async function reloadFromFlags(flags: FlagValues, log: Logger, apply: (next: Config) => Promise<void>): Promise<void> {
  let next: Config;
  try {
    next = loadConfig(flags);
  } catch (e) {
    log.error('reload refused, keeping the running config', { error: (e as Error).message });
    return;
  }
  await apply(next).catch((e) => log.error('reload failed', { error: (e as Error).message }));
}

export interface Lifecycle {
  reload(next: Config): Promise<void>;
  /** Stop accepting, let established connections finish for up to drainMs, then clean up. */
  stop(drainMs: number): Promise<void>;
  /** The config now running (the last one a reload applied). */
  config(): Config;
  /** Remove kernel state at once (fatal error). */
  emergencyCleanup(): Promise<void>;
}

/**
 * Wire process signals, then start the proxy: a signal that arrives while it is still starting
 * is acted on once it has started, so kernel state is never left behind and a config edited
 * during a slow start is not ignored. Tells systemd
 * (Type=notify) READY, RELOADING and STOPPING. Resolves with the exit code once stopped.
 */
export function runUntilStopped(flags: FlagValues, log: Logger, start: () => Promise<Lifecycle>): Promise<number> {
  return new Promise((resolve, reject) => {
    let life: Lifecycle | null = null;
    let stopRequested: string | null = null;
    let reloadRequested = false;
    let stopping = false;
    const stop = (signal: string): void => {
      if (!life) {
        stopRequested ??= signal;
        return;
      }
      if (stopping) return;
      stopping = true;
      notifyStopping();
      const { drainMs } = life.config().timeouts;
      log.info('stopping', { signal, drainMs });
      life.stop(drainMs).then(
        () => resolve(0),
        (e) => {
          log.error('stop failed', { error: (e as Error).message });
          resolve(1);
        },
      );
    };
    process.on('uncaughtException', (e) => {
      log.error('fatal error', { error: e.stack ?? e.message });
      (life?.emergencyCleanup() ?? Promise.resolve()).finally(() => process.exit(1));
    });
    process.on('SIGTERM', () => stop('SIGTERM'));
    process.on('SIGINT', () => stop('SIGINT'));
    const reload = coalescing(async () => {
      if (stopping) return;
      if (!life) {
        reloadRequested = true;
        return;
      }
      notifyReloading();
      await reloadFromFlags(flags, log, (next) => life!.reload(next));
      notifyReady();
    });
    process.on('SIGHUP', reload);
    start().then(
      (started) => {
        life = started;
        notifyReady();
        if (stopRequested) stop(stopRequested);
        else if (reloadRequested) reload();
      },
      reject,
    );
  });
}
