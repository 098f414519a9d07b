/**
 * Real third-party parent proxies for chain tests: Squid (HTTP, CONNECT) and Dante (SOCKS5), each
 * with its config written to the testbed's temp dir and listening on one address inside one of
 * its namespaces only. Both run in the foreground under tb.spawn, so tb.destroy() ends them.
 */
import type { ChildProcess } from 'node:child_process';
import { chmodSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { sleep } from './sleep';
import type { Role, Testbed } from './testbed';

export interface ThirdPartyProxy {
  proc: ChildProcess;
  /** Its log so far (Squid's access log, Dante's log). */
  log(): string;
}

/** Until `port` accepts inside `ns`, or throw with what the program printed. */
async function waitListening(tb: Testbed, ns: Role, port: number, proc: ChildProcess, what: string): Promise<void> {
  let out = '';
  proc.stderr?.on('data', (d: Buffer) => (out += d.toString()));
  proc.stdout?.on('data', (d: Buffer) => (out += d.toString()));
  const deadline = Date.now() + 20_000;
  while (!(await tb.listening(ns, port))) {
    if (proc.exitCode !== null || Date.now() > deadline) throw new Error(`${what} did not start (exit ${String(proc.exitCode)}): ${out}`);
    await sleep(100);
  }
}

/** A directory the daemon's unprivileged user (Squid: proxy, Dante: nobody) can write. */
function workDir(tb: Testbed, name: string): string {
  const dir = path.join(tb.tmpDir, name);
  mkdirSync(dir, { recursive: true });
  // tmpDir itself is the test's (0700): the daemon's user must pass through it.
  chmodSync(tb.tmpDir, 0o711);
  chmodSync(dir, 0o777);
  return dir;
}

/** Squid as an open HTTP proxy (forward and CONNECT to any port) on host:port. */
export async function startSquid(tb: Testbed, ns: Role, host: string, port: number): Promise<ThirdPartyProxy> {
  const dir = workDir(tb, `squid-${port}`);
  const conf = path.join(dir, 'squid.conf');
  const access = path.join(dir, 'access.log');
  writeFileSync(
    conf,
    [
      `http_port ${host}:${port}`,
      'http_access allow all',
      'cache deny all',
      'cache_mem 8 MB',
      `pid_filename ${dir}/squid.pid`,
      `cache_log ${dir}/cache.log`,
      `access_log stdio:${access}`,
      `coredump_dir ${dir}`,
      'visible_hostname mpx-test-squid',
      // No lookups leave the namespace: tests use literal addresses.
      'dns_nameservers 127.0.0.1',
      'shutdown_lifetime 0 seconds',
      '',
    ].join('\n'),
  );
  const proc = tb.spawn(ns, ['squid', '-N', '-f', conf]);
  await waitListening(tb, ns, port, proc, 'squid');
  return { proc, log: () => readIfThere(access) };
}

/** Dante as a SOCKS5 proxy without authentication, on host:port. */
export async function startDante(tb: Testbed, ns: Role, host: string, port: number): Promise<ThirdPartyProxy> {
  const dir = workDir(tb, `dante-${port}`);
  const conf = path.join(dir, 'danted.conf');
  const log = path.join(dir, 'danted.log');
  writeFileSync(
    conf,
    [
      `logoutput: ${log}`,
      `internal: ${host} port = ${port}`,
      `external: ${host}`,
      'clientmethod: none',
      'socksmethod: none',
      'user.privileged: root',
      'user.unprivileged: nobody',
      'client pass { from: 0.0.0.0/0 to: 0.0.0.0/0 log: connect }',
      'socks pass { from: 0.0.0.0/0 to: 0.0.0.0/0 log: connect }',
      '',
    ].join('\n'),
  );
  const proc = tb.spawn(ns, ['danted', '-f', conf, '-p', path.join(dir, 'danted.pid')]);
  await waitListening(tb, ns, port, proc, 'danted');
  return { proc, log: () => readIfThere(log) };
}

function readIfThere(file: string): string {
  try {
    return readFileSync(file, 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return '';
    throw e;
  }
}
