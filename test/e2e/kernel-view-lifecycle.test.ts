/**
 * KernelView's reader thread and the process: a started view must neither keep a process alive
 * nor hang its exit (Node joins workers at exit and cannot interrupt one blocked in poll()),
 * and awaiting start() must keep the process alive until events flow.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import path from 'node:path';
import { describe, it } from 'node:test';
import { KernelView } from '../../src/mptcp/kernel-view';

const VIEW = path.resolve(__dirname, '..', '..', 'src', 'mptcp', 'kernel-view.js');
const ADDON = path.resolve(__dirname, '..', '..', 'src', 'relay', 'native.js');

/** Runs a snippet with KernelView in scope; resolves with exit code and stdout, or 'hung'. */
function runSnippet(body: string, timeoutMs = 8000): Promise<{ code: number | null; out: string } | 'hung'> {
  const src = `const { KernelView } = require(${JSON.stringify(VIEW)});\nconst { netlinkWatcher } = require(${JSON.stringify(ADDON)});\n(async () => {\n${body}\n})();`;
  return new Promise((resolve) => {
    const child = spawn(process.execPath, ['-e', src], { stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    const t = setTimeout(() => {
      child.kill('SIGKILL');
      resolve('hung');
    }, timeoutMs);
    child.on('exit', (code) => {
      clearTimeout(t);
      resolve({ code, out });
    });
  });
}

describe('KernelView lifecycle', () => {
  it('a started view lets the process exit on its own', async () => {
    const r = await runSnippet(`const kv = new KernelView(); await kv.start(); console.log('started', kv.running);`);
    assert.deepEqual(r, { code: 0, out: 'started true\n' });
  });

  it('process.exit() with a running view does not hang', async () => {
    const r = await runSnippet(`const kv = new KernelView(); await kv.start(); console.log('x'); process.exit(7);`);
    assert.deepEqual(r, { code: 7, out: 'x\n' });
  });

  it('start() is awaited even when nothing else keeps the process alive', async () => {
    const r = await runSnippet(`const kv = new KernelView(); await kv.start(); await kv.stop(); console.log('stopped', kv.running);`);
    assert.deepEqual(r, { code: 0, out: 'stopped false\n' });
  });

  it('with the native watcher: the process exits on its own, and process.exit() does not hang', async () => {
    const view = `const kv = new KernelView({ watcher: netlinkWatcher() }); if (!netlinkWatcher()) throw new Error('no watcher'); await kv.start();`;
    assert.deepEqual(await runSnippet(`${view} console.log('started', kv.running);`), { code: 0, out: 'started true\n' });
    assert.deepEqual(await runSnippet(`${view} console.log('x'); process.exit(7);`), { code: 7, out: 'x\n' });
    assert.deepEqual(await runSnippet(`${view} await kv.stop(); await kv.start(); await kv.stop(); console.log('stopped', kv.running);`), { code: 0, out: 'stopped false\n' });
  });

  it('start and stop in process, twice, and start is idempotent while running', async () => {
    const kv = new KernelView();
    for (let i = 0; i < 2; i++) {
      await Promise.all([kv.start(), kv.start()]);
      assert.equal(kv.running, true);
      await kv.stop();
      assert.equal(kv.running, false);
    }
  });
});
