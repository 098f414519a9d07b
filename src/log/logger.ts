/**
 * One winston logger for the process: JSON lines when stderr is not a terminal (journald, files,
 * log shippers), a readable single line on a terminal.
 */
import winston from 'winston';

export type Logger = winston.Logger;

export interface LogOptions {
  level: string;
  format: 'auto' | 'json' | 'text';
}

const readable = winston.format.printf(({ level, message, timestamp, ...rest }) => {
  const fields = Object.entries(rest)
    .filter(([, v]) => v !== undefined)
    .map(([k, v]) => `${k}=${typeof v === 'string' ? v : JSON.stringify(v)}`)
    .join(' ');
  return `${timestamp} ${level} ${message}${fields ? ' ' + fields : ''}`;
});

export function createLogger(opts: LogOptions): Logger {
  const json = opts.format === 'json' || (opts.format === 'auto' && !process.stderr.isTTY);
  return skipDisabledLevels(winston.createLogger({
    level: opts.level,
    format: json
      ? winston.format.combine(winston.format.timestamp(), winston.format.json())
      : winston.format.combine(winston.format.timestamp({ format: 'HH:mm:ss.SSS' }), winston.format.colorize(), readable),
    // Everything to stderr: stdout stays free for command output (status, sniff --json).
    transports: [new winston.transports.Console({ stderrLevels: ['error', 'warn', 'info', 'http', 'verbose', 'debug', 'silly'] })],
  }));
}

/**
 * winston formats (timestamp, JSON) every line before its transport drops the ones below the
 * level: per-connection debug lines cost CPU at thousands of connections a second. The level
 * methods check first. The level is read on each call, so a reload that changes it still works.
 */
function skipDisabledLevels(logger: Logger): Logger {
  for (const level of Object.keys(logger.levels)) {
    const write = (logger as unknown as Record<string, (...args: unknown[]) => Logger>)[level];
    if (typeof write !== 'function') continue;
    (logger as unknown as Record<string, unknown>)[level] = (...args: unknown[]) => (logger.isLevelEnabled(level) ? write.apply(logger, args) : logger);
  }
  return logger;
}

/** A logger that drops everything, for library use and unit tests. */
export function silentLogger(): Logger {
  return winston.createLogger({ silent: true, transports: [new winston.transports.Console({ silent: true })] });
}
