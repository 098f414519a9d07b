/**
 * Config precedence: command-line flags > YAML file > DEFAULTS. Flags are parsed here into the
 * same raw shape as the YAML document, so one validator sees everything.
 */
import fs from 'node:fs';
import { parseArgs } from 'node:util';
import YAML from 'yaml';
import { CONVERT_DEFAULTS, ConfigError, validateConfig, type Config } from './schema';

export const RUN_FLAGS = {
  config: { type: 'string', short: 'c', help: 'YAML config file' },
  http: { type: 'string', multiple: true, help: 'HTTP proxy listener HOST:PORT (default 127.0.0.1:3128)' },
  socks: { type: 'string', multiple: true, help: 'SOCKS 4/4a/5 listener HOST:PORT (default 127.0.0.1:1080)' },
  mixed: { type: 'string', multiple: true, help: 'HTTP+SOCKS listener on one port HOST:PORT' },
  convert: { type: 'string', multiple: true, help: `RFC 8803 Transport Converter listener HOST[:PORT] (port default ${CONVERT_DEFAULTS.port}), TCP Fast Open (repeatable)` },
  transparent: { type: 'string', multiple: true, help: 'transparent (TPROXY) listener IP:PORT, takes redirected traffic to PORT (repeatable)' },
  'transparent-interface': { type: 'string', multiple: true, help: 'interface whose TCP the transparent listeners intercept (repeatable; default all)' },
  'allow-client': { type: 'string', multiple: true, help: 'client CIDR allowed to use the proxy (repeatable)' },
  'allow-dest': { type: 'string', multiple: true, help: 'destination CIDR opened although denied by default (repeatable)' },
  'deny-dest': { type: 'string', multiple: true, help: 'extra destination CIDR to deny (repeatable)' },
  user: { type: 'string', multiple: true, help: 'NAME:PASSWORD-HASH user for HTTP Basic and SOCKS5 auth (repeatable)' },
  'log-level': { type: 'string', help: 'error | warn | info | debug' },
  'log-format': { type: 'string', help: 'auto | json | text' },
  metrics: { type: 'string', help: 'metrics/status HTTP address HOST:PORT (default 127.0.0.1:9464)' },
  'no-metrics': { type: 'boolean', help: 'do not serve metrics' },
  'upstream-mptcp': { type: 'boolean', help: 'try MPTCP to the destination first' },
  'connect-timeout': { type: 'string', help: 'upstream connect timeout, ms' },
  'idle-timeout': { type: 'string', help: 'relay idle timeout, ms (0 = none)' },
  'drain-timeout': { type: 'string', help: 'on SIGTERM, ms established connections may take to finish' },
  relay: { type: 'string', help: 'relay engine: auto | splice | stream' },
  'fast-path': { type: 'string', help: 'native accept-to-splice fast path: auto | on | off' },
  sniff: { type: 'string', multiple: true, help: 'client-facing interface to watch with the pcap subflow sniffer (repeatable)' },
  'no-mptcp': { type: 'boolean', help: 'listen with plain TCP' },
  instance: { type: 'string', help: "this instance's name, the instance label on every metric (default: the host name)" },
  'cluster-announce': { type: 'string', help: "cluster mode behind an L4 load balancer: this instance's own address, announced so clients join it (C flag set)" },
  workers: { type: 'string', help: 'worker processes sharing the ports: N or auto (one per core); default 1' },
  help: { type: 'boolean', short: 'h', help: 'show this help' },
} as const;

export type FlagValues = { [K in keyof typeof RUN_FLAGS]?: (typeof RUN_FLAGS)[K] extends { multiple: true } ? string[] : (typeof RUN_FLAGS)[K] extends { type: 'boolean' } ? boolean : string };

export function parseRunFlags(argv: string[]): FlagValues {
  const options = Object.fromEntries(Object.entries(RUN_FLAGS).map(([k, v]) => [k, { type: v.type, multiple: 'multiple' in v ? v.multiple : false, ...('short' in v ? { short: v.short } : {}) }]));
  try {
    return parseArgs({ args: argv, options: options as never, allowPositionals: false, strict: true }).values as FlagValues;
  } catch (e) {
    throw new ConfigError((e as Error).message);
  }
}

export function flagsHelp(): string {
  return Object.entries(RUN_FLAGS)
    .map(([k, v]) => `  ${('short' in v ? `-${v.short}, ` : '    ') + `--${k}${v.type === 'string' ? ' VALUE' : ''}`.padEnd(28)} ${v.help}`)
    .join('\n');
}

function readYaml(file: string): Record<string, unknown> {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (e) {
    throw new ConfigError(`cannot read config ${file}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
  }
  let doc: unknown;
  try {
    doc = YAML.parse(text);
  } catch (e) {
    throw new ConfigError(`config ${file} is not valid YAML: ${(e as Error).message.split('\n')[0]}`);
  }
  if (doc === null || doc === undefined) return {};
  if (typeof doc !== 'object' || Array.isArray(doc)) throw new ConfigError(`config ${file} must be a YAML mapping`);
  return doc as Record<string, unknown>;
}

function intFlag(name: string, v: string): number {
  if (!/^\d+$/.test(v)) throw new ConfigError(`--${name} must be a whole number`);
  return Number(v);
}

/** Merge flags over the YAML document (flags win) and validate. */
export function loadConfig(flags: FlagValues): Config {
  const raw: Record<string, any> = flags.config ? readYaml(flags.config) : {};
  const sub = (key: string): Record<string, any> => (raw[key] = { ...(raw[key] ?? {}) });

  const cliListeners = [
    ...(flags.http ?? []).map((listen) => ({ protocol: 'http', listen })),
    ...(flags.socks ?? []).map((listen) => ({ protocol: 'socks', listen })),
    ...(flags.mixed ?? []).map((listen) => ({ protocol: 'mixed', listen })),
    ...(flags.transparent ?? []).map((listen) => ({ protocol: 'transparent', listen })),
    ...(flags.convert ?? []).map((listen) => ({ protocol: 'convert', listen })),
  ];
  if (cliListeners.length > 0) raw.listeners = cliListeners;
  if (flags['no-mptcp'] && Array.isArray(raw.listeners)) raw.listeners = raw.listeners.map((l: object) => ({ ...l, mptcp: false }));
  else if (flags['no-mptcp']) raw.listeners = [{ protocol: 'http', listen: '127.0.0.1:3128', mptcp: false }, { protocol: 'socks', listen: '127.0.0.1:1080', mptcp: false }];

  if (flags['allow-client']) sub('access').allowClients = flags['allow-client'];
  if (flags['allow-dest']) sub('access').allowDest = flags['allow-dest'];
  if (flags['deny-dest']) sub('access').denyDest = flags['deny-dest'];
  if (flags.user) {
    sub('access').users = flags.user.map((u) => {
      const i = u.indexOf(':');
      if (i <= 0) throw new ConfigError(`--user must be NAME:PASSWORD-HASH, got "${u}"`);
      return { name: u.slice(0, i), password: u.slice(i + 1) };
    });
  }
  if (flags['log-level']) sub('log').level = flags['log-level'];
  if (flags['log-format']) sub('log').format = flags['log-format'];
  if (flags.metrics) sub('metrics').listen = flags.metrics;
  if (flags['no-metrics']) sub('metrics').enabled = false;
  if (flags['upstream-mptcp']) sub('upstream').mptcp = true;
  if (flags['connect-timeout']) sub('upstream').connectTimeoutMs = intFlag('connect-timeout', flags['connect-timeout']);
  if (flags['idle-timeout']) sub('timeouts').idleMs = intFlag('idle-timeout', flags['idle-timeout']);
  if (flags['drain-timeout']) sub('timeouts').drainMs = intFlag('drain-timeout', flags['drain-timeout']);
  if (flags.relay) sub('relay').engine = flags.relay;
  if (flags['fast-path']) sub('relay').fastPath = flags['fast-path'];
  if (flags.sniff) sub('sniffer').interfaces = flags.sniff;
  if (flags['transparent-interface']) sub('transparent').interfaces = flags['transparent-interface'];
  if (flags.instance) raw.instance = flags.instance;
  if (flags['cluster-announce']) sub('cluster').announce = flags['cluster-announce'];
  if (flags.workers) raw.workers = flags.workers === 'auto' ? 'auto' : intFlag('workers', flags.workers);
  return validateConfig(raw);
}
