/**
 * CPU priority of single threads. On Linux setpriority(PRIO_PROCESS, tid) acts on that one
 * thread (not the whole process, whatever POSIX says), which lets a worker thread step aside
 * for the event loop without renicing the proxy.
 */
import fs from 'node:fs';
import os from 'node:os';

/** The kernel's id of the calling thread (a Node worker runs on its own thread). */
export function currentThreadId(): number {
  // "/proc/thread-self" links to "<pid>/task/<tid>".
  return Number(fs.readlinkSync('/proc/thread-self').split('/').pop());
}

/** Give the calling thread the nice value `nice` (19 = only what other work leaves idle). */
export function setCurrentThreadNice(nice: number): number {
  const tid = currentThreadId();
  os.setPriority(tid, nice);
  return tid;
}

/** A thread's nice value, from /proc (field 19 of its stat line). */
export function threadNice(tid: number): number {
  const stat = fs.readFileSync(`/proc/self/task/${tid}/stat`, 'utf8');
  // The command name (field 2) may hold spaces: count from after its closing parenthesis.
  return Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[16]);
}
