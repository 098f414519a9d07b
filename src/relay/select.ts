/**
 * Chooses the relay engine: the native splice engine (zero-copy, its own epoll thread) when it is
 * built, the JS stream engine otherwise. `splice` demands the native engine; `stream` forces JS.
 */
import { ConfigError } from '../config/config-error';
import type { Logger } from '../log/logger';
import type { RelayEngine } from '../core/relay';
import { loadSpliceRelay, spliceUnavailableReason } from './splice-relay';
import { StreamRelay } from './stream-relay';

export function selectRelayEngine(wanted: 'auto' | 'splice' | 'stream', log: Logger): RelayEngine {
  if (wanted === 'stream') return new StreamRelay();
  const splice = loadSpliceRelay();
  if (splice) return splice;
  const reason = spliceUnavailableReason() ?? 'unknown';
  if (wanted === 'splice') throw new ConfigError(`relay.engine is splice, but the native addon is not available: ${reason} (build it: npx node-gyp rebuild --directory native)`);
  log.info('native splice relay not available, using the stream relay', { reason });
  return new StreamRelay();
}
