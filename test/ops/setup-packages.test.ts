/**
 * A fresh machine has only what scripts/setup.sh installs. A program that a test, the bench or the
 * README's examples run, but that setup does not list for that mode, passes on a developer machine
 * where it was installed by hand and fails everywhere else (mptcpize did exactly that). This reads
 * the programs out of the sources, resolves each on PATH, asks dpkg which package owns it and
 * checks that package is in `setup.sh list MODE`.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import os from 'node:os';
import { REPO_ROOT } from '../../testkit/testbed.js';

/** Node, npm and npx come with the machine's Node.js install, not from Debian. */
const NOT_DEBIAN = new Set(['node', 'npm', 'npx']);

const NAME = String.raw`([a-z][a-z0-9.+-]*)`;
/** First argument of a spawning call: a namespace role or an expression naming one, or a label. */
const LEAD = String.raw`(?:(?:'(?:proxy|client|server|router)'|[\w.$]+)\s*,\s*)?`;
/** Where a program name sits in our sources: first word of an argv at a spawning call, first argument
 *  of child_process calls, after a wrapper (mptcpize run X, ip netns exec NS X), or an absolute path. */
const PATTERNS = [
  new RegExp(String.raw`\b(?:exec|spawn|spawnSync|execFile|execFileSync|run|mustRun|startChild|withNofile)\(${LEAD}\[\s*'${NAME}'`, 'g'),
  new RegExp(String.raw`\bDaemon\(\s*'[^']*',\s*\[\s*'${NAME}'`, 'g'),
  new RegExp(String.raw`(?<![.\w])(?:spawn|spawnSync|execFile|execFileSync|have|missing)\(\s*'${NAME}'`, 'g'),
  new RegExp(String.raw`(?:'mptcpize',\s*'run'|\.\.\.MPTCPIZE|'netns',\s*'exec',\s*[^,\]]+),\s*'${NAME}'`, 'g'),
  new RegExp(String.raw`'/usr/s?bin/${NAME}'`, 'g'),
];

function sourceFiles(dir: string): string[] {
  if (fs.statSync(dir).isFile()) return [dir];
  return fs.readdirSync(dir, { withFileTypes: true, recursive: true })
    .filter((e) => e.isFile() && e.name.endsWith('.ts'))
    .map((e) => path.join(e.parentPath, e.name))
    .filter((f) => path.basename(f) !== 'setup-packages.test.ts');
}

/** Program names spawned by the .ts files under `dirs` (comments stripped, so prose does not count). */
function spawnedPrograms(dirs: readonly string[]): Map<string, string> {
  const found = new Map<string, string>();
  for (const file of dirs.flatMap((d) => sourceFiles(path.resolve(REPO_ROOT, d)))) {
    const text = fs.readFileSync(file, 'utf8').replace(/\/\*[\s\S]*?\*\//g, '').replace(/^\s*\/\/.*$/gm, '');
    for (const re of PATTERNS) {
      for (const m of text.matchAll(re)) if (!found.has(m[1]!)) found.set(m[1]!, path.relative(REPO_ROOT, file));
    }
  }
  for (const n of NOT_DEBIAN) found.delete(n);
  return found;
}

/** Programs in the README's shell examples: the first word of each command line in ```sh blocks. */
function readmePrograms(): Map<string, string> {
  const found = new Map<string, string>();
  const readme = fs.readFileSync(path.join(REPO_ROOT, 'README.md'), 'utf8');
  for (const block of readme.matchAll(/```sh\n([\s\S]*?)```/g)) {
    for (const line of block[1]!.split('\n')) {
      const words = line.replace(/#.*/, '').trim().split(/\s+/).filter(Boolean);
      const prog = words[0] === 'sudo' ? words[1] : words[0];
      if (prog && /^[a-z][a-z0-9.+-]*$/.test(prog) && !NOT_DEBIAN.has(prog) && prog !== 'mptcp-proxy') found.set(prog, 'README.md');
      // `mptcpize run X` runs X too.
      if (prog === 'mptcpize' && words[1] === 'run' && words[2]) found.set(words[2], 'README.md');
    }
  }
  return found;
}

/** The Debian package that owns `prog` on PATH, or why there is none. Debian 12 is usr-merged but
 *  dpkg records some files under /bin or /sbin, so both spellings are asked. */
function owningPackage(prog: string): { pkg?: string; why?: string } {
  // Only the system directories: a program found first elsewhere (pyenv's python3 shim, /usr/local)
  // is not what a fresh machine's set-up provides.
  const where = SYSTEM_PATH.map((d) => path.join(d, prog)).find((p) => { try { fs.accessSync(p, fs.constants.X_OK); return true; } catch { return false; } });
  if (!where) return { why: `not installed in ${SYSTEM_PATH.join(':')}` };
  const real = fs.realpathSync(where);
  const candidates = [...new Set([where, real].flatMap((p) => [p, p.replace(/^\/usr\/(s?bin)\//, '/$1/')]))];
  for (const p of candidates) {
    const r = spawnSync('dpkg', ['-S', p], { encoding: 'utf8' });
    // `diversion by X from: P` lines name who diverted a file, not who owns it.
    const owner = r.status === 0 ? r.stdout.split('\n').find((l) => l && !l.startsWith('diversion')) : undefined;
    if (owner) return { pkg: owner.split(':')[0]!.trim() };
  }
  return { why: `${where} belongs to no Debian package` };
}

/** The packages setup.sh installs for `mode`, with their direct dependencies (python3 brings the
 *  python3-minimal that owns /usr/bin/python3). */
function setupList(mode: string): Set<string> {
  const listed = execFileSync('bash', [path.join(REPO_ROOT, 'scripts/setup.sh'), 'list', mode], { encoding: 'utf8' }).trim().split(/\s+/);
  const depends = spawnSync('dpkg-query', ['-W', '-f', '${Pre-Depends},${Depends}\n', ...listed], { encoding: 'utf8' }).stdout;
  const deps = depends.split(/[,|\n]/).map((d) => d.trim().split(/[\s:]/)[0]!).filter(Boolean);
  return new Set([...listed, ...deps]);
}

const SYSTEM_PATH = ['/usr/sbin', '/usr/bin', '/sbin', '/bin'];
const hasDpkg = spawnSync('dpkg', ['--version']).status === 0;

for (const [mode, programs] of [
  ['test', () => spawnedPrograms(['test', 'testkit'])],
  // The bench runs its own code and the testkit (test/ is never imported by bench: test/layers.test.ts).
  ['bench', () => spawnedPrograms(['bench', 'testkit'])],
  ['run', readmePrograms],
] as const) {
  test(`every program the ${mode === 'run' ? "README's examples" : mode} spawn comes from a package setup.sh installs for '${mode}'`, { skip: hasDpkg ? false : 'needs dpkg' }, (t) => {
    const listed = setupList(mode);
    const found = programs();
    assert.ok(found.size >= (mode === 'run' ? 2 : 10), `only ${found.size} programs found: the source patterns no longer match`);
    const wrong: string[] = [];
    for (const [prog, file] of found) {
      const { pkg, why } = owningPackage(prog);
      // CI sets up for 'test' only, so the bench's peers are checked where the bench was set up.
      if (!pkg && mode === 'bench' && why?.startsWith('not installed')) { t.diagnostic(`${prog} (${file}) not installed: not checked`); continue; }
      if (!pkg) wrong.push(`${prog} (${file}): ${why}`);
      else if (!listed.has(pkg)) wrong.push(`${prog} (${file}) comes from '${pkg}', which setup.sh does not list for '${mode}'`);
    }
    assert.deepEqual(wrong, [], `programs found: ${[...found.keys()].sort().join(' ')}`);
  });
}

test('the source patterns find programs in each kind of spawning call', () => {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'spawn-patterns-'));
  try {
    const file = path.join(dir, 'x.ts');
    fs.writeFileSync(file, [
      "tb.exec('proxy', ['nft', 'list'])",
      "spawn('python3', ['-c', code])",
      "run(['mptcpize', 'run', 'iperf3', '-s'])",
      "mustRun(['ip', 'netns', 'exec', NS, 'tcpdump', '-i', 'lo'])",
      "spawnSync('ip', ['netns', 'add', ns])",
      "tb.spawn('server', ['sleep', '9'])",
      "new Daemon('label', ['wrk', '-t1'])",
      "new Daemon('d', withNofile([...MPTCPIZE, 'danted', '-f', conf]))",
      "const CHROMIUM = '/usr/bin/chromium';",
      "// spawn('commented-out')",
      "const list = ['http', 'socks'];",
    ].join('\n'));
    const found = [...spawnedPrograms([file]).keys()].sort();
    assert.deepEqual(found, ['chromium', 'danted', 'ip', 'iperf3', 'mptcpize', 'nft', 'python3', 'sleep', 'tcpdump', 'wrk']);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});
