/**
 * The one place the proxy runs system tools (nft, tc, ip). Typed: every failure is an ExecError
 * with a stable code, the tool's argv and its stderr; batches go in on stdin (`nft -f -`,
 * `tc -batch -`, `ip -batch -`) so one change is one process, not one per rule.
 */
import { spawn } from 'node:child_process';
import { CodedError } from '../core/errors';

export const ExecErrorCode = {
  /** The tool is not installed (ENOENT on spawn). */
  NotFound: 'MPX_EXEC_NOT_FOUND',
  /** It ran and exited non-zero. */
  Failed: 'MPX_EXEC_FAILED',
  /** It ran longer than its timeout and was killed. */
  Timeout: 'MPX_EXEC_TIMEOUT',
  /** Spawning failed for another reason (EACCES, EAGAIN, ...). */
  Spawn: 'MPX_EXEC_SPAWN',
} as const;
export type ExecErrorCode = (typeof ExecErrorCode)[keyof typeof ExecErrorCode];

export class ExecError extends CodedError<ExecErrorCode> {
  constructor(
    code: ExecErrorCode,
    readonly argv: readonly string[],
    readonly stderr: string,
    readonly exitCode: number | null,
  ) {
    super(code, `${argv.join(' ')}: ${describe(code, exitCode, stderr)}`);
  }
}

function describe(code: ExecErrorCode, exitCode: number | null, stderr: string): string {
  const first = stderr.trim().split('\n').slice(0, 3).join(' | ');
  switch (code) {
    case ExecErrorCode.NotFound:
      return 'not installed';
    case ExecErrorCode.Timeout:
      return 'timed out';
    case ExecErrorCode.Spawn:
      return `could not start (${first})`;
    default:
      return `exit ${exitCode}${first ? `: ${first}` : ''}`;
  }
}

export interface ExecOptions {
  /** Written to stdin, then stdin is closed. */
  input?: string;
  /** Default 10 s: these tools answer in milliseconds; longer means the kernel is stuck. */
  timeoutMs?: number;
}

export interface ExecOutput {
  stdout: string;
  stderr: string;
}

const DEFAULT_TIMEOUT_MS = 10_000;

/** Run argv to completion; resolves with its output on exit 0, rejects with an ExecError otherwise. */
export function execTool(argv: readonly string[], opts: ExecOptions = {}): Promise<ExecOutput> {
  return new Promise((resolve, reject) => {
    const child = spawn(argv[0]!, argv.slice(1), { stdio: ['pipe', 'pipe', 'pipe'] });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      child.kill('SIGKILL');
    }, opts.timeoutMs ?? DEFAULT_TIMEOUT_MS);
    child.stdout.on('data', (d: Buffer) => out.push(d));
    child.stderr.on('data', (d: Buffer) => err.push(d));
    child.on('error', (e: NodeJS.ErrnoException) => {
      clearTimeout(timer);
      reject(new ExecError(e.code === 'ENOENT' ? ExecErrorCode.NotFound : ExecErrorCode.Spawn, argv, e.message, null));
    });
    child.on('close', (code) => {
      clearTimeout(timer);
      const stdout = Buffer.concat(out).toString();
      const stderr = Buffer.concat(err).toString();
      if (timedOut) reject(new ExecError(ExecErrorCode.Timeout, argv, stderr, code));
      else if (code !== 0) reject(new ExecError(ExecErrorCode.Failed, argv, stderr, code));
      else resolve({ stdout, stderr });
    });
    // A tool that exits before reading all of stdin is reported by its exit code, not EPIPE.
    child.stdin.on('error', () => undefined);
    child.stdin.end(opts.input ?? '');
  });
}

/** Like execTool, but a failure resolves to the error instead of rejecting (for best-effort cleanup). */
export async function tryExecTool(argv: readonly string[], opts: ExecOptions = {}): Promise<ExecOutput | ExecError> {
  try {
    return await execTool(argv, opts);
  } catch (e) {
    if (e instanceof ExecError) return e;
    throw e;
  }
}

/** Parse a tool's `-j` output; malformed JSON is an ExecError, not a crash. */
export function parseJsonOutput<T>(argv: readonly string[], stdout: string): T {
  try {
    return JSON.parse(stdout.trim() || '[]') as T;
  } catch {
    throw new ExecError(ExecErrorCode.Failed, argv, `unparseable JSON output: ${stdout.slice(0, 200)}`, 0);
  }
}
