/**
 * `mptcp-proxy doctor [--fix] [--config FILE] [--path-mbit N]... [--max-rtt-ms N] [--json]`:
 * prints each check with ✓/✗ and the command that fixes it; --fix applies the safe fixes
 * (runtime sysctls) and checks again. Exit 0 when nothing fails, 1 when a check fails, 2 on
 * bad usage.
 */
import { parseArgs } from 'node:util';
import { loadConfig } from '../config/load';
import { ConfigError } from '../config/schema';
import { runChecks, type CheckResult, type CheckStatus, type DoctorInput } from './checks';
import { applySysctls, gatherFacts, type AppliedSysctl } from './gather';

const MARK: Record<CheckStatus, string> = { pass: '✓', fail: '✗', warn: '!', skip: '-' };

export function formatResults(results: readonly CheckResult[]): string {
  const lines: string[] = [];
  for (const r of results) {
    lines.push(`${MARK[r.status]} ${r.title}: ${r.detail}`);
    if (r.status === 'fail' || r.status === 'warn') for (const cmd of r.fix) lines.push(`    fix: ${cmd}`);
  }
  const count = (s: CheckStatus): number => results.filter((r) => r.status === s).length;
  lines.push(`${count('pass')} passed, ${count('fail')} failed, ${count('warn')} warnings, ${count('skip')} skipped`);
  return lines.join('\n');
}

function positiveNumber(flag: string, v: string): number {
  const n = Number(v);
  if (!Number.isFinite(n) || n <= 0) throw new ConfigError(`--${flag} must be a positive number, got "${v}"`);
  return n;
}

async function check(input: DoctorInput): Promise<CheckResult[]> {
  return runChecks(await gatherFacts(input.config), input);
}

export async function runDoctorCommand(argv: string[], out: (s: string) => void = (s) => process.stdout.write(s)): Promise<number> {
  let values;
  try {
    values = parseArgs({
      args: argv,
      options: {
        fix: { type: 'boolean' },
        config: { type: 'string', short: 'c' },
        'path-mbit': { type: 'string', multiple: true },
        'max-rtt-ms': { type: 'string' },
        json: { type: 'boolean' },
        help: { type: 'boolean', short: 'h' },
      },
      strict: true,
      allowPositionals: false,
    }).values;
  } catch (e) {
    throw new ConfigError(`doctor: ${(e as Error).message}`);
  }
  if (values.help) {
    out(
      'usage: mptcp-proxy doctor [--fix] [--config FILE] [--path-mbit MBIT]... [--max-rtt-ms MS] [--json]\n' +
        'Checks the kernel and system for what MPTCP proxying needs. --fix applies the safe fixes (sysctls).\n' +
        '--path-mbit (once per path) and --max-rtt-ms size the TCP buffer check (2 × Σ bandwidth × RTT).\n',
    );
    return 0;
  }
  const config = loadConfig({ config: values.config });
  const input: DoctorInput = {
    config,
    pathMbit: (values['path-mbit'] ?? []).map((v) => positiveNumber('path-mbit', v)),
    maxRttMs: values['max-rtt-ms'] === undefined ? null : positiveNumber('max-rtt-ms', values['max-rtt-ms']),
  };
  let results = await check(input);
  let applied: AppliedSysctl[] = [];
  if (values.fix) {
    const sysctls = Object.assign({}, ...results.filter((r) => r.status === 'fail').map((r) => r.sysctls)) as Record<string, string>;
    applied = applySysctls(sysctls);
    if (applied.length > 0) results = await check(input);
  }
  if (values.json) {
    out(JSON.stringify({ results, applied }, null, 2) + '\n');
  } else {
    const fixed = applied.map((a) => (a.error ? `✗ could not apply ${a.key}=${a.value}: ${a.error}` : `applied: sysctl -w ${a.key}="${a.value}"`));
    out([...fixed, formatResults(results)].join('\n') + '\n');
  }
  return results.some((r) => r.status === 'fail') ? 1 : 0;
}
