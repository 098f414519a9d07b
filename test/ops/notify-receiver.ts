/**
 * Stands in for systemd's notify socket: a python3 AF_UNIX datagram receiver (Node cannot
 * receive unix datagrams) that hands each message to the test in order.
 */
import { spawn } from 'node:child_process';
import readline from 'node:readline';

const RECEIVER = `
import socket, sys, json
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
a = sys.argv[1]
s.bind('\\0' + a[1:] if a.startswith('@') else a)
print('ready', flush=True)
while True:
    print(json.dumps(s.recv(4096).decode()), flush=True)
`;

export interface NotifyReceiver {
  /** The next datagram's text; rejects when none arrives in time. */
  next(timeoutMs?: number): Promise<string>;
  close(): void;
}

/** Bind `address` (a path, or "@name" for the abstract namespace) and wait until it is bound. */
export async function startNotifyReceiver(address: string): Promise<NotifyReceiver> {
  const child = spawn('python3', ['-c', RECEIVER, address], { stdio: ['ignore', 'pipe', 'inherit'] });
  const lines: string[] = [];
  const waiting: ((l: string) => void)[] = [];
  readline.createInterface({ input: child.stdout! }).on('line', (l) => {
    const w = waiting.shift();
    if (w) w(l);
    else lines.push(l);
  });
  const line = (timeoutMs: number): Promise<string> =>
    lines.length > 0
      ? Promise.resolve(lines.shift()!)
      : new Promise((resolve, reject) => {
          const w = (l: string): void => {
            clearTimeout(t);
            resolve(l);
          };
          const t = setTimeout(() => {
            waiting.splice(waiting.indexOf(w), 1);
            reject(new Error(`no notify message within ${timeoutMs} ms`));
          }, timeoutMs);
          waiting.push(w);
        });
  try {
    if ((await line(5000)) !== 'ready') throw new Error('notify receiver did not start');
  } catch (e) {
    child.kill('SIGKILL');
    throw e;
  }
  return {
    next: async (timeoutMs = 5000) => JSON.parse(await line(timeoutMs)) as string,
    close: () => child.kill('SIGKILL'),
  };
}
