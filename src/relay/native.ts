/**
 * Loads the native splice addon (native/, built with `npm run build:native`). The addon is
 * optional: when it is missing or does not load, callers get the reason and use the JS engine.
 */
import fs from 'node:fs';
import path from 'node:path';

/** The addon's exports (native/src/splice_relay.cc). */
export interface SpliceAddon {
  /**
   * Relay between two connected socket fds on the shared epoll thread. The addon works on its
   * own duplicates of the fds and never closes the originals. `done` runs once on the JS thread.
   * Throws (with an errno `code`) when the pipes or duplicates cannot be made.
   */
  start(
    clientFd: number,
    upstreamFd: number,
    idleMs: number,
    pipeSize: number,
    done: (bytesUp: number, bytesDown: number, end: string, errorCode: string | undefined) => void,
  ): number;
  /** End a running relay early; it then reports 'client-error' with ECANCELED. */
  abort(id: number): void;
  stats(): { active: number };
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
  return !!o && typeof o.start === 'function' && typeof o.abort === 'function' && typeof o.stats === 'function';
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
