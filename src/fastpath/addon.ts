/**
 * The fast path's half of the native addon (native/src/fastpath.cc), loaded with the splice
 * relay's loader: one .node file, optional like the relay.
 */
import { loadSpliceAddon } from '../relay/native';
import type { NativeTables } from './tables';

/** Listener kinds as native numbers them (fastpath_parse.h ListenerKind). */
export const LISTENER_KIND = { http: 0, socks: 1, mixed: 2 } as const;
export type FastPathListenerKind = keyof typeof LISTENER_KIND;

/** Handshake protocols as native numbers them (fastpath_parse.h Proto). */
export const NATIVE_PROTO = ['unknown', 'connect', 'socks4', 'socks5'] as const;

/** A client socket native hands to the TS front ends, with what it already read. */
export interface NativeHandoff {
  fd: number;
  listener: number;
  proto: number;
  /** SOCKS5: native already answered the greeting (in `head`) with "no authentication". */
  greeted: boolean;
  mptcp: number;
  token: number;
  subflows: number;
  acceptedNs: bigint;
  /** Client family byte + 16 address bytes: the listener slot to release at close. */
  key: Buffer;
  head: Buffer;
}

export interface NativeParse {
  verdict: 'more' | 'connect' | 'handoff';
  proto: (typeof NATIVE_PROTO)[number];
  greetingLen: number;
  consumed?: number;
  host?: string;
  port?: number;
  address?: string;
  reason?: string;
}

export interface FastPathAddon {
  fastPathInit(deliver: (records: Buffer, handoffs: NativeHandoff[]) => void, threads: number): void;
  fastPathConfigure(tables: NativeTables): void;
  fastPathAttach(listenerId: number, fd: number, kind: number): void;
  /** Returns once no loop accepts on the fd any more; the caller closes it. */
  fastPathDetach(listenerId: number): void;
  fastPathRelease(listenerId: number, key: Buffer): void;
  fastPathCloseAll(): void;
  fastPathStats(): { active: number; threads: number };
  /** Bytes of every running native relay: 24 bytes each (native id u64, from client f64, to client f64). */
  fastPathLive(): Buffer;
  /** Hands everything queued to the deliver callback now, on this thread. */
  fastPathFlush(): void;
  /** The pure handshake parser (tests). */
  fastPathParse(bytes: Buffer, kind: number, maxHeadBytes: number, maxHeaderLines: number): NativeParse;
}

/** `path`: the .node file loaded (the ASan build under scripts/asan-fuzz.sh, for one). */
export type FastPathLoad = { ok: true; addon: FastPathAddon; path: string } | { ok: false; reason: string };

export function loadFastPathAddon(): FastPathLoad {
  const load = loadSpliceAddon();
  if (!load.ok) return { ok: false, reason: load.reason };
  const a = load.addon as unknown as Partial<FastPathAddon>;
  if (typeof a.fastPathInit !== 'function' || typeof a.fastPathParse !== 'function') return { ok: false, reason: `${load.path} has no fast path (rebuild it)` };
  return { ok: true, addon: a as FastPathAddon, path: load.path };
}
