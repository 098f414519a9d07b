/**
 * Tuning wired to the real kernel. Lifecycle of both parts: constructor → start → reload → stop.
 */
import type client from 'prom-client';
import type { ProxyEvents } from '../core/events';
import type { Logger } from '../log/logger';
import type { KernelView } from '../mptcp/kernel-view';
import type { ConnectionSink } from '../registry/kernel-feed';
import { setSocketBufferSize, socketBufferSize, type BufferDirection } from '../sys/socket';
import { readSysctl } from '../sys/sysctl';
import { parseTcpMem } from './buffers';
import { BufferTuner, type TunerPolicy, type TunerPorts } from './tuner';

/** tcp_rmem/tcp_wmem change rarely; read them at most this often. */
const SYSCTL_TTL_MS = 10_000;

function kernelPorts(kernel: KernelView, sink: ConnectionSink): TunerPorts {
  const cache = new Map<BufferDirection, { at: number; max: number | null }>();
  return {
    snapshot: (fd) => kernel.snapshot(fd),
    setBuffer: (fd, dir, bytes) => setSocketBufferSize(fd, dir, bytes),
    getBuffer: (fd, dir) => socketBufferSize(fd, dir),
    systemMax: (dir) => {
      const now = Date.now();
      const hit = cache.get(dir);
      if (hit && now - hit.at < SYSCTL_TTL_MS) return hit.max;
      let max: number | null = null;
      try {
        max = parseTcpMem(readSysctl(dir === 'rcv' ? 'net.ipv4.tcp_rmem' : 'net.ipv4.tcp_wmem'))?.max ?? null;
      } catch {
        // Unreadable (sandboxed /proc/sys): trust autotuning.
      }
      cache.set(dir, { at: now, max });
      return max;
    },
    onSubflowUp: (fn) => sink.onSubflowUp(fn),
  };
}

/**
 * The buffer tuner of one connection plane (the process that holds the client sockets), on the
 * real kernel: socket options, tcp_rmem/tcp_wmem, and subflows coming up as the registry sees
 * them (through this process's connection sink). The MSS clamp is kernel-wide state and belongs to the subflow
 * plane instead (one owner per namespace): see ./mss.
 */
export function createBufferTuner(policy: TunerPolicy, deps: { events: ProxyEvents; kernel: KernelView; sink: ConnectionSink; log: Logger; metrics: client.Registry }): BufferTuner {
  return new BufferTuner(policy, kernelPorts(deps.kernel, deps.sink), deps.events, deps.log, deps.metrics);
}
