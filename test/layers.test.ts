/**
 * Imports point down: every relative import in src/**\/*.ts goes to the same folder or to a folder
 * lower in LAYERS; libc's FFI binding is used only inside src/sys; no two modules import each
 * other (directly or round a longer loop). Outside src: test/ and bench/ share testkit/, and
 * neither imports the other (only tests of bench code import bench/).
 */
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';

const ROOT = path.resolve(__dirname, '../..');
const SRC = path.join(ROOT, 'src');

/**
 * The folders of src/, bottom first: a module may import from its own folder and from folders
 * before it, never after. core holds the shared types and contracts; sys is the only kernel access;
 * config/log sit on those; the subsystems follow in the order they use each other; '.' is the
 * composition root (src/app.ts, src/subflow-plane.ts) that wires them; process runs the planes with
 * the admin endpoint under signals, for cli's single process and cluster's supervisor alike.
 */
const LAYERS = [
  'core',
  'sys',
  'config',
  'log',
  'kstate',
  'access',
  'upstream',
  'relay',
  'mptcp',
  'sniffer',
  'registry',
  'metrics',
  'pathmanager',
  'tuning',
  'steering',
  'proxy',
  'fastpath',
  'listener',
  'admin',
  'doctor',
  '.',
  'process',
  'cluster',
  'cli',
];

function sourceFiles(dir: string): string[] {
  return fs.readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const p = path.join(dir, e.name);
    if (e.isDirectory()) return sourceFiles(p);
    return e.name.endsWith('.ts') ? [p] : [];
  });
}

/** Relative imports of one file, resolved to src files: import/export ... from, import(), require(). */
function importsOf(file: string): string[] {
  const text = fs.readFileSync(file, 'utf8');
  const specs = [...text.matchAll(/(?:\bfrom\s*|\bimport\s*\(?\s*|\brequire\s*\(\s*)'(\.\.?\/[^']*)'/g)].map((m) => m[1]!);
  return specs.map((s) => {
    const base = path.resolve(path.dirname(file), s);
    const hit = [`${base}.ts`, path.join(base, 'index.ts')].find((c) => fs.existsSync(c));
    assert.ok(hit, `${path.relative(SRC, file)}: import '${s}' resolves to no source file`);
    return hit;
  });
}

/** The folder of a src file: its first path segment, '.' for files directly in src/. */
function layerOf(file: string): string {
  const rel = path.relative(SRC, file).split(path.sep);
  return rel.length > 1 ? rel[0]! : '.';
}

const graph = new Map(sourceFiles(SRC).map((f) => [f, importsOf(f)]));

test('every src folder has a place in LAYERS', () => {
  const folders = new Set([...graph.keys()].map(layerOf));
  assert.deepEqual([...folders].filter((f) => !LAYERS.includes(f)), []);
});

test('imports point down: same folder or a lower one', () => {
  const up: string[] = [];
  for (const [file, imports] of graph) {
    const from = LAYERS.indexOf(layerOf(file));
    for (const target of imports) {
      if (LAYERS.indexOf(layerOf(target)) > from) up.push(`${path.relative(SRC, file)} -> ${path.relative(SRC, target)}`);
    }
  }
  assert.deepEqual(up, []);
});

test('libc is bound once, and only src/sys uses the binding', () => {
  const outside = [...graph].filter(([file, imports]) => layerOf(file) !== 'sys' && imports.some((t) => t === path.join(SRC, 'sys/libc.ts')));
  assert.deepEqual(outside.map(([f]) => path.relative(SRC, f)), []);
  const loaders = [...graph.keys()].filter((f) => /koffi\.load\(\s*'libc\./.test(fs.readFileSync(f, 'utf8')));
  assert.deepEqual(loaders.map((f) => path.relative(SRC, f)), ['sys/libc.ts']);
});

test('no import cycles between modules', () => {
  const cycles: string[] = [];
  const done = new Set<string>();
  const visit = (file: string, stack: string[]): void => {
    const at = stack.indexOf(file);
    if (at >= 0) {
      cycles.push([...stack.slice(at), file].map((f) => path.relative(SRC, f)).join(' -> '));
      return;
    }
    if (done.has(file)) return;
    for (const t of graph.get(file) ?? []) visit(t, [...stack, file]);
    done.add(file);
  };
  for (const f of graph.keys()) visit(f, []);
  assert.deepEqual(cycles, []);
});

/**
 * The trees outside src: testkit/ (testbed, proxy launcher, legacy server, clients, sleep) serves
 * test/ and bench/ alike and imports neither; bench/ never imports test/; test/ imports bench/
 * only where bench code is what is tested: test/bench-*.test.ts (the bench's pure libraries) and
 * test/e2e/steering-failover.test.ts (the failover bench run as a test).
 */
const TESTS_OF_BENCH = [/^test\/bench-[^/]*\.test\.ts$/, /^test\/e2e\/steering-failover\.test\.ts$/];

test('test and bench share testkit and do not import each other', () => {
  const bad: string[] = [];
  for (const tree of ['test', 'bench', 'testkit']) {
    for (const file of sourceFiles(path.join(ROOT, tree))) {
      const rel = path.relative(ROOT, file);
      const text = fs.readFileSync(file, 'utf8');
      for (const m of text.matchAll(/(?:\bfrom\s*|\bimport\s*\(?\s*|\brequire\s*\(\s*)'(\.\.?\/[^']*)'/g)) {
        const to = path.relative(ROOT, path.resolve(path.dirname(file), m[1]!)).split(path.sep)[0]!;
        const allowed =
          to === tree || to === 'src' || to === 'package.json' || (to === 'testkit' && tree !== 'testkit') || (to === 'bench' && tree === 'test' && TESTS_OF_BENCH.some((re) => re.test(rel)));
        if (!allowed) bad.push(`${rel} -> ${m[1]}`);
      }
    }
  }
  assert.deepEqual(bad, []);
});
