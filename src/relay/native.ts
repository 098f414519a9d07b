/**
 * Loads the native splice addon (native/, built with `npm run build:native`). The addon is
 * optional: when it is missing or does not load, callers get the reason and use the JS engine.
 */
import fs from 'node:fs';
import path from 'node:path';
import type { NetlinkWatcher } from '../sys/netlink';

/** The addon's exports (native/src/splice_relay.cc). */
export interface SpliceAddon {
  /**
   * Set the one callback every relay's result goes to, on the JS thread; once per process,
   * before start(). Throws when already set (loadSpliceAddon caches the module, so it is set once).
   */
  init(done: (id: number, bytesUp: number, bytesDown: number, end: string, errorCode: string | undefined) => void): void;
  /**
   * Relay between two connected socket fds on the shared epoll thread; returns the relay's id.
   * The addon uses the fds themselves and never closes them: the caller must keep both open
   * until done(id) has run.
   */
  start(clientFd: number, upstreamFd: number, idleMs: number, pipeSize: number): number;
  /** End a running relay early; it then reports 'client-error' with ECANCELED. */
  abort(id: number): void;
  /** Relays running natively; pipes open (in use or pooled) and in use by a direction. */
  stats(): { active: number; pipesOpen: number; pipesInUse: number };
}

/** Points the loader at another .node file (tests use a missing one to force the fallback). */
export const SPLICE_ADDON_ENV = 'MPTCP_PROXY_SPLICE_ADDON';

/** Where node-gyp puts the addon, from src/relay or dist/src/relay alike. */
export function defaultAddonPath(): string {
  const root = __dirname.includes(`${path.sep}dist${path.sep}`) ? path.resolve(__dirname, '../../..') : path.resolve(__dirname, '../..');
  return path.join(root, 'native', 'build', 'Release', 'splice_relay.node');
}

export type AddonLoad = { ok: true; addon: SpliceAddon; path: string } | { ok: false; reason: string; path: string };

const loaded = new Map<string, AddonLoad>();

function isSpliceAddon(x: unknown): x is SpliceAddon {
  const o = x as Partial<Record<keyof SpliceAddon, unknown>> | null;
  return !!o && typeof o.init === 'function' && typeof o.start === 'function' && typeof o.abort === 'function' && typeof o.stats === 'function';
}

export function loadSpliceAddon(file: string = process.env[SPLICE_ADDON_ENV] || defaultAddonPath()): AddonLoad {
  const cached = loaded.get(file);
  if (cached) return cached;
  let result: AddonLoad;
  if (process.platform !== 'linux') result = { ok: false, reason: `splice relay needs Linux (platform ${process.platform})`, path: file };
  else if (!fs.existsSync(file)) result = { ok: false, reason: `native addon not built: ${file} is missing (run npm run build:native)`, path: file };
  else {
    try {
      const mod = { exports: {} as unknown };
      process.dlopen(mod, file);
      result = isSpliceAddon(mod.exports) ? { ok: true, addon: mod.exports, path: file } : { ok: false, reason: `${file} is not the splice addon`, path: file };
    } catch (e) {
      result = { ok: false, reason: `native addon ${file} failed to load: ${(e as Error).message}`, path: file };
    }
  }
  loaded.set(file, result);
  return result;
}

/** The addon's netlink reader for the main loop (native/src/netlink_watch.cc), when it loads and has one. */
export function netlinkWatcher(): NetlinkWatcher | null {
  const load = loadSpliceAddon();
  if (!load.ok) return null;
  const a = load.addon as unknown as Partial<NetlinkWatcher>;
  return typeof a.netlinkWatch === 'function' && typeof a.netlinkUnwatch === 'function' ? (a as NetlinkWatcher) : null;
}
