/**
 * Process signals for a running proxy: SIGHUP reloads (a bad new config keeps the running one),
 * SIGTERM/SIGINT drain and clean up, a fatal error removes kernel state before exiting.
 */
import { loadConfig, type FlagValues } from '../config/load';
import type { Config } from '../config/schema';
import type { Logger } from '../log/logger';

export const DRAIN_MS = 5_000;

export interface Lifecycle {
  reload(next: Config): Promise<void>;
  stop(): Promise<void>;
  /** Remove kernel state at once (fatal error). */
  emergencyCleanup(): Promise<void>;
}

/** Wire process signals to a running proxy; resolves with the exit code once stopped. */
export function runUntilStopped(flags: FlagValues, log: Logger, life: Lifecycle): Promise<number> {
  return new Promise((resolve) => {
    let stopping = false;
    const stop = (signal: string): void => {
      if (stopping) return;
      stopping = true;
      log.info('stopping', { signal, drainMs: DRAIN_MS });
      life.stop().then(
        () => resolve(0),
        (e) => {
          log.error('stop failed', { error: (e as Error).message });
          resolve(1);
        },
      );
    };
    process.on('uncaughtException', (e) => {
      log.error('fatal error', { error: e.stack ?? e.message });
      life.emergencyCleanup().finally(() => process.exit(1));
    });
    process.on('SIGTERM', () => stop('SIGTERM'));
    process.on('SIGINT', () => stop('SIGINT'));
    process.on('SIGHUP', () => {
      let next: Config;
      try {
        next = loadConfig(flags);
      } catch (e) {
        log.error('reload refused, keeping the running config', { error: (e as Error).message });
        return;
      }
      life.reload(next).catch((e) => log.error('reload failed', { error: (e as Error).message }));
    });
  });
}

