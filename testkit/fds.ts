/** A process's open sockets, from /proc: what a leaked connection leaves behind (pooled pipes and other fds aside). */
import fs from 'node:fs';

export function socketFds(pid: number): number {
  return fs.readdirSync(`/proc/${pid}/fd`).filter((f) => {
    try {
      return fs.readlinkSync(`/proc/${pid}/fd/${f}`).startsWith('socket:');
    } catch {
      return false; // closed between readdir and readlink
    }
  }).length;
}
