/**
 * Command-line entry: `mptcp-proxy [run flags]` runs the proxy; subcommands for operations.
 * Every expected failure is one clear line on stderr and a non-zero exit, never a stack trace.
 */
import { hashPassword } from '../access/passwords';
import { flagsHelp, loadConfig, parseRunFlags } from '../config/load';
import { ConfigError } from '../config/schema';
import { ListenerError } from '../listener/listener-error';
import { createLogger } from '../log/logger';
import { runDoctorCommand } from '../doctor/doctor-command';
import { runSniffCommand } from '../sniffer/sniff-command';
import { CLEANUP_HELP, runCleanupCommand } from '../steering/cleanup-command';
import { runProxy } from './run';
import { runStatusCommand } from './status';

const SUBCOMMANDS: Record<string, { help: string; run: (argv: string[]) => Promise<number> }> = {
  cleanup: {
    help: CLEANUP_HELP,
    run: runCleanupCommand,
  },
  doctor: {
    help: 'doctor [--fix] [--config FILE]   check the host for what MPTCP proxying needs; --fix applies safe fixes',
    run: runDoctorCommand,
  },
  sniff: {
    help: 'sniff --interface IF [--interface IF]... [--json]   print MPTCP subflow events seen on the wire',
    run: runSniffCommand,
  },
  status: {
    help: 'status [--metrics HOST:PORT | --targets HOST:PORT,...] [--json]   list open connections and their subflows (of several instances merged)',
    run: runStatusCommand,
  },
  'hash-password': {
    help: 'hash-password PASSWORD   print a scrypt hash for access.users / --user',
    run: async (argv) => {
      if (argv.length !== 1) throw new ConfigError('usage: mptcp-proxy hash-password PASSWORD');
      process.stdout.write(`${hashPassword(argv[0]!)}\n`);
      return 0;
    },
  },
};

function usage(): string {
  return [
    'usage: mptcp-proxy [--config FILE] [--http HOST:PORT] [--socks HOST:PORT] [--mixed HOST:PORT]',
    '                   [--allow-client CIDR]... [--allow-dest CIDR]... [--log-level LEVEL] [...]',
    '       mptcp-proxy COMMAND [...]',
    '',
    'Runs a Multipath TCP converting proxy: clients speak MPTCP (or TCP) to it over HTTP proxy or',
    'SOCKS 4/4a/5; it connects to destinations with plain TCP. With no arguments it serves HTTP on',
    '127.0.0.1:3128 and SOCKS on 127.0.0.1:1080 for local clients only.',
    '',
    'options:',
    flagsHelp(),
    '',
    'commands:',
    ...Object.values(SUBCOMMANDS).map((c) => `  ${c.help}`),
  ].join('\n');
}

async function run(argv: string[]): Promise<number> {
  const flags = parseRunFlags(argv);
  if (flags.help) {
    process.stdout.write(`${usage()}\n`);
    return 0;
  }
  const config = loadConfig(flags);
  return runProxy(flags, config, createLogger(config.log));
}

async function main(argv: string[]): Promise<number> {
  const sub = argv[0] && SUBCOMMANDS[argv[0]];
  if (sub) return sub.run(argv.slice(1));
  if (argv[0] === 'run') argv = argv.slice(1);
  return run(argv);
}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (e: unknown) => {
    // Operators get one line; the stack only on request (expected failures carry a code).
    const typed = e instanceof ConfigError || e instanceof ListenerError || typeof (e as { code?: unknown })?.code === 'string';
    const message = e instanceof Error ? e.message : String(e);
    process.stderr.write(`mptcp-proxy: ${typed ? '' : 'internal error: '}${message}\n`);
    if (process.env.MPTCP_PROXY_DEBUG && e instanceof Error) process.stderr.write(`${e.stack}\n`);
    process.exit(typed ? 2 : 1);
  },
);
