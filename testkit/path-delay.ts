/**
 * Delay on the client's paths of a router testbed (netem is absent here): the delay line
 * (delay-line.ts) runs in the ROUTER namespace with one TUN device per path, and policy routing
 * sends what arrives from the client on path N through device dlN before it goes on to the proxy.
 * Only the client→proxy direction is delayed (the ACKs of a download, a few hundred packets a
 * second rather than thousands): an RTT is an RTT whichever way the delay sits.
 */
import net from 'node:net';
import path from 'node:path';
import readline from 'node:readline';
import type { Testbed } from './testbed';

export interface PathDelay {
  /** Set path N's added delay (ms); resolves once the delay line took it. */
  set(pathNo: 1 | 2, ms: number): Promise<void>;
}

const DEVS = ['dl1', 'dl2'] as const;

export async function startPathDelay(tb: Testbed): Promise<PathDelay> {
  const [r1, r2] = tb.ifaces.router ?? [];
  if (!r1 || !r2) throw new Error('path delay needs a router testbed (createTestbed({ router: true }))');
  const control = path.join(tb.tmpDir, 'delay-line.sock');
  const child = tb.spawnNode('router', 'dist/testkit/delay-line.js', [control, ...DEVS]);
  await new Promise<void>((resolve, reject) => {
    let err = '';
    child.stderr?.on('data', (d: Buffer) => (err += d.toString()));
    child.once('exit', (code) => reject(new Error(`delay line exited (${code}): ${err}`)));
    readline.createInterface({ input: child.stdout! }).on('line', (l) => l === 'ready' && resolve());
  });
  const ip = (argv: string): Promise<unknown> => tb.exec('router', ['ip', ...argv.split(' ')]).then((r) => {
    if (r.code !== 0) throw new Error(`ip ${argv}: ${r.stderr}`);
  });
  for (const d of DEVS) await ip(`link set ${d} up`);
  // Path 1 goes on by the main table; path 2 by its own (table 202, the testbed's), as before.
  await ip('route add default dev dl1 table 301');
  await ip(`rule add iif ${r1} table 301 pref 90`);
  await ip('route add default dev dl2 table 302');
  await ip(`rule add iif ${r2} table 302 pref 90`);
  await ip('rule add iif dl2 table 202 pref 95');
  const set = (pathNo: 1 | 2, ms: number): Promise<void> =>
    new Promise((resolve, reject) => {
      const c = net.connect(control);
      c.once('error', reject);
      c.end(`${DEVS[pathNo - 1]} ${ms}\n`);
      readline.createInterface({ input: c }).once('line', (l) => (l === 'ok' ? resolve() : reject(new Error(l))));
    });
  return { set };
}

/**
 * RTT of client path N as a TCP handshake sees it: a connect from the client's path-N address to
 * a closed port of the proxy's path-N address, timed to its refusal (SYN out, RST back). Best of `n`.
 */
export async function pathRttMs(tb: Testbed, pathNo: 1 | 2, n = 5): Promise<number> {
  const [from, to] = pathNo === 1 ? [tb.addr.client1, tb.addr.proxy1] : [tb.addr.client2, tb.addr.proxy2];
  const script = `const net=require('net');let best=1e9,left=${n};const one=()=>{const t=process.hrtime.bigint();const s=net.connect({host:'${to}',port:9,localAddress:'${from}'});s.on('error',()=>{best=Math.min(best,Number(process.hrtime.bigint()-t)/1e6);if(--left>0)one();else console.log(best.toFixed(2))});s.on('connect',()=>{s.destroy();console.log('connected');});};one();`;
  const r = await tb.exec('client', [process.execPath, '-e', script]);
  const v = Number(r.stdout.trim());
  if (r.code !== 0 || !Number.isFinite(v)) throw new Error(`path ${pathNo} RTT probe failed: ${r.stdout} ${r.stderr}`);
  return v;
}
