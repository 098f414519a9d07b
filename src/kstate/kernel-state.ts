/**
 * The one owner of the kernel state the proxy changes (see ./items for the kinds). Subsystems
 * install through it; it alone removes, in one order (REMOVE_ORDER), on reload, at stop, at the
 * next start after a crash and for `mptcp-proxy cleanup`.
 *
 * What it installs is written to a journal BEFORE the kernel is changed, so a SIGKILL at any
 * point leaves a record that covers everything in the kernel: at worst it names an item that
 * never got there, and removal is idempotent. The journal also keeps what only it can know: the
 * original MPTCP limits and sysctl values. It lives in the run directory (systemd's RuntimeDirectory, else
 * /run/mptcp-proxy), in a directory per network namespace (its cookie, never reused during a
 * boot), one file per process, and is gone after a clean stop. Owned names (table prefix, qdisc
 * handle, IFB prefix, rule/table and endpoint ranges) are scanned as well, for a journal that is
 * lost or from an older version.
 *
 * One namespace, one owner: in a cluster only the supervisor has one (src/subflow-plane.ts). A
 * journal whose process still runs (same pid and start time) belongs to another proxy in this
 * namespace: its items are left alone, and nothing is looked for by name while it runs.
 */
import fs from 'node:fs';
import path from 'node:path';
import type { Logger } from '../log/logger';
import { ExecError, ExecErrorCode } from '../sys/exec';
import { netnsCookie } from '../sys/socket';
import { REMOVE_ORDER, itemKey, itemLabel, removeItem, scanKind, type KernelItem, type KernelItemKind } from './items';

export type { KernelItem } from './items';

const KINDS = new Set<string>(REMOVE_ORDER);

interface Journal {
  pid: number;
  /** The process's start time (field 22 of /proc/PID/stat): tells a reused pid apart. */
  started: string;
  items: KernelItem[];
}

/** Start time of a running process; null when there is none with that pid. */
function processStart(pid: number): string | null {
  try {
    // After the command name, which may hold spaces and parentheses: state is field 3, starttime 22.
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19] ?? null;
  } catch {
    return null;
  }
}

/** The journal's directory for this process's network namespace. */
export function journalDir(): string {
  const base = (process.env.RUNTIME_DIRECTORY ?? '').split(':')[0] || '/run/mptcp-proxy';
  const id = netnsCookie() ?? `ino-${fs.statSync('/proc/self/ns/net').ino}`;
  return path.join(base, `netns-${id}`);
}

/** A missing tool means nothing of ours can exist in its domain. */
const toolMissing = (e: unknown): boolean => e instanceof ExecError && e.code === ExecErrorCode.NotFound;

export class KernelState {
  /** This run's record, by item key: exactly what the journal holds. */
  private readonly record = new Map<string, KernelItem>();
  private adoptedLabels: string[] = [];
  private persistFailed = false;
  private readonly file: string;
  private readonly started = processStart(process.pid) ?? '';
  /** Test-only deterministic crash point: `<journaled|installed|removed>:<item key>[@N]`. */
  private readonly crashAt: { point: string; nth: number; seen: number } | null;

  constructor(
    private readonly log: Logger,
    private readonly dir: string = journalDir(),
  ) {
    this.file = path.join(dir, `${process.pid}.json`);
    const at = process.env.MPTCP_PROXY_CRASH_AT;
    const m = at ? /^(.*?)(?:@(\d+))?$/.exec(at) : null;
    this.crashAt = m ? { point: m[1]!, nth: Number(m[2] ?? 1), seen: 0 } : null;
  }

  /** What the start took over from an earlier run and removed (for the stop log). */
  get adopted(): readonly string[] {
    return this.adoptedLabels;
  }

  /**
   * Take over what an earlier run left (its journal, plus anything found by owned name) and
   * remove it in order, originals restored; before any subsystem installs. Returns what was removed.
   */
  async adopt(): Promise<string[]> {
    const { dead, live } = this.readJournals();
    for (const pid of live) this.log.error('kernel state: another mptcp-proxy runs in this network namespace; its kernel state is left alone', { pid });
    const leftovers = [...dead.flatMap((j) => j.items), ...(live.length === 0 ? await this.scan() : [])];
    for (const i of leftovers) if (!this.record.has(itemKey(i))) this.record.set(itemKey(i), i);
    // Ours now: once this record is written, the dead runs' journals can go.
    this.persist();
    for (const j of dead) fs.rmSync(path.join(this.dir, `${j.pid}.json`), { force: true });
    this.adoptedLabels = await this.remove([...this.record.values()]);
    return this.adoptedLabels;
  }

  /**
   * Record `item`, then run `apply` (which makes it, or replaces it in place on a reload). An item
   * already recorded keeps its record (the limits keep their first original). When `apply`
   * fails, whatever part of a new item it made is removed again and the error goes on.
   */
  async install(item: KernelItem, apply: () => Promise<unknown>): Promise<void> {
    const key = itemKey(item);
    const known = this.record.has(key);
    if (!known) {
      this.record.set(key, item);
      this.persist();
    }
    this.crashPoint('journaled', key);
    try {
      await apply();
    } catch (e) {
      if (!known) await this.remove([item]);
      throw e;
    }
    this.log.debug('kernel state: installed', { item: key });
    this.crashPoint('installed', key);
  }

  has(item: KernelItem): boolean {
    return this.record.has(itemKey(item));
  }

  /** Remove items (recorded or not) in REMOVE_ORDER; returns what was there and is gone. Never throws. */
  async remove(items: readonly KernelItem[]): Promise<string[]> {
    const byKey = new Map(items.map((i) => [itemKey(i), this.record.get(itemKey(i)) ?? i]));
    const ordered = [...byKey.values()].sort((a, b) => REMOVE_ORDER.indexOf(a.kind) - REMOVE_ORDER.indexOf(b.kind));
    const removed: string[] = [];
    for (const i of ordered) {
      const key = itemKey(i);
      try {
        if (await removeItem(i)) removed.push(itemLabel(i));
      } catch (e) {
        if (!toolMissing(e)) {
          // Kept in the record: the next stop, start or cleanup tries again.
          this.log.warn('kernel state: could not remove', { item: key, error: (e as Error).message });
          continue;
        }
      }
      this.record.delete(key);
      this.persist();
      this.log.debug('kernel state: removed', { item: key });
      this.crashPoint('removed', key);
    }
    return removed;
  }

  /** Remove those of `items` this run installed (others are not looked for). */
  removeInstalled(items: readonly KernelItem[]): Promise<string[]> {
    return this.remove(items.filter((i) => this.has(i)));
  }

  /** Stop: everything recorded, and anything else found by owned name (unless another proxy runs here), in order. */
  async removeAll(): Promise<string[]> {
    const others = this.readJournals().live.length > 0;
    return this.remove([...this.record.values(), ...(others ? [] : await this.scan())]);
  }

  /** Every kind at once: a start pays one round of listings, not seven in a row. */
  private async scan(): Promise<KernelItem[]> {
    const found = await Promise.all(
      REMOVE_ORDER.map((kind) =>
        scanKind(kind).catch((e: unknown) => {
          if (!toolMissing(e)) this.log.warn('kernel state: could not look for owned state', { kind, error: (e as Error).message });
          return [];
        }),
      ),
    );
    return found.flat();
  }

  /** Other processes' journals in this namespace's directory: of runs that are gone, and pids of ones still running. */
  private readJournals(): { dead: Journal[]; live: number[] } {
    const out: { dead: Journal[]; live: number[] } = { dead: [], live: [] };
    let names: string[];
    try {
      names = fs.readdirSync(this.dir);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'ENOENT') this.log.warn('kernel state: journals unreadable; looking by owned names only', { dir: this.dir, error: (e as Error).message });
      return out;
    }
    for (const name of names) {
      const file = path.join(this.dir, name);
      const tmp = /^(\d+)\.json\.tmp$/.exec(name);
      // A run killed between writing and renaming its journal: the journal before it holds its items.
      if (tmp && processStart(Number(tmp[1])) === null) fs.rmSync(file, { force: true });
      if (file === this.file || !/^\d+\.json$/.test(name)) continue;
      try {
        const j = JSON.parse(fs.readFileSync(file, 'utf8')) as Partial<Journal>;
        if (typeof j.pid !== 'number' || typeof j.started !== 'string' || !Array.isArray(j.items)) throw new Error('not a journal');
        const items = j.items.filter((i): i is KernelItem => typeof i === 'object' && i !== null && KINDS.has((i as { kind?: string }).kind as KernelItemKind));
        if (processStart(j.pid) === j.started) out.live.push(j.pid);
        else out.dead.push({ pid: j.pid, started: j.started, items });
      } catch (e) {
        this.log.warn('kernel state: journal malformed; looking by owned names only', { file, error: (e as Error).message });
      }
    }
    return out;
  }

  /** Write the record (temp file + rename: a crash leaves the old journal or the new one, whole). */
  private persist(): void {
    try {
      if (this.record.size === 0) {
        fs.rmSync(this.file, { force: true });
        // Only when empty: another proxy's journal may be beside ours.
        if (fs.existsSync(this.dir) && fs.readdirSync(this.dir).length === 0) fs.rmdirSync(this.dir);
        return;
      }
      fs.mkdirSync(this.dir, { recursive: true, mode: 0o700 });
      const journal: Journal = { pid: process.pid, started: this.started, items: [...this.record.values()] };
      fs.writeFileSync(`${this.file}.tmp`, JSON.stringify(journal) + '\n', { mode: 0o600 });
      fs.renameSync(`${this.file}.tmp`, this.file);
      this.persistFailed = false;
    } catch (e) {
      // Owned names still find most of it after a crash; the original limits and sysctls would be lost.
      if (!this.persistFailed) this.log.warn('kernel state: journal not written; a crash would lose the original MPTCP limits and sysctls', { file: this.file, error: (e as Error).message });
      this.persistFailed = true;
    }
  }

  private crashPoint(phase: 'journaled' | 'installed' | 'removed', key: string): void {
    const c = this.crashAt;
    if (c && c.point === `${phase}:${key}` && ++c.seen === c.nth) process.kill(process.pid, 'SIGKILL');
  }
}
