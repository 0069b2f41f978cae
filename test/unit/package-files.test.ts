// What `npm pack` puts in the package (package.json "files"): the built code (JavaScript and type declarations of
// every source file, built afresh: prepack empties dist/), README, docs and examples, and the runtime dependencies
// (bundleDependencies: prom-client's tree, so that an unpacked tarball runs without npm); no tests, benchmarks or their
// results, sources, source maps (they point at sources that are not shipped) or build caches; every relative link of
// the shipped Markdown leads to a shipped file. Needs dist/ (npm run build); npm's scripts are not run.

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { dirname, join, normalize, relative } from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));

interface PackResult {
  files: { path: string; size: number }[];
  unpackedSize: number;
  entryCount: number;
}

function npmPackDryRun(): Promise<PackResult> {
  return new Promise((resolve, reject) => {
    const env = { ...process.env };
    delete env.NODE_TEST_CONTEXT;
    execFile('npm', ['pack', '--dry-run', '--json', '--ignore-scripts'], { cwd: ROOT, env, timeout: 60_000, maxBuffer: 16 << 20 }, (err, stdout, stderr) => {
      if (err) return reject(new Error(`npm pack --dry-run failed: ${err.message}\n${stderr}`));
      try {
        resolve((JSON.parse(stdout) as PackResult[])[0]!);
      } catch (e) {
        reject(new Error(`npm pack --dry-run --json printed no JSON (${(e as Error).message}):\n${stdout}`));
      }
    });
  });
}

/** src/**\/*.ts relative to src/, without extension. */
function sources(dir = join(ROOT, 'src')): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const p = join(dir, e.name);
    if (e.isDirectory()) return sources(p);
    return e.name.endsWith('.ts') && !e.name.endsWith('.d.ts') ? [relative(join(ROOT, 'src'), p).slice(0, -3)] : [];
  });
}

/** The packages npm installs with --omit=dev (package-lock.json): prom-client and what it needs. */
function runtimePackages(): string[] {
  const lock = JSON.parse(readFileSync(join(ROOT, 'package-lock.json'), 'utf8')) as { packages: Record<string, { dev?: boolean }> };
  return Object.entries(lock.packages).filter(([k, v]) => k.startsWith('node_modules/') && v.dev !== true).map(([k]) => k);
}

test('npm pack: dist, docs, examples, README and the bundled runtime dependencies, and nothing else', { skip: existsSync(join(ROOT, 'dist', 'cli.js')) ? false : 'dist/ is not built (npm run build)' }, async () => {
  const pack = await npmPackDryRun();
  const all = pack.files.map((f) => f.path).sort();
  // the runtime dependencies are bundled (package.json bundleDependencies), so that an unpacked tarball runs as it is
  const runtime = runtimePackages();
  assert.deepEqual(runtime.map((p) => p.replace(/^node_modules\//, '')).sort(), ['@opentelemetry/api', 'bintrees', 'prom-client', 'tdigest']);
  const bundled = all.filter((p) => p.startsWith('node_modules/'));
  for (const pkg of runtime) assert.ok(bundled.includes(`${pkg}/package.json`), `${pkg} is not bundled`);
  assert.deepEqual(bundled.filter((p) => !runtime.some((pkg) => p.startsWith(`${pkg}/`))), [], 'bundled files of packages that are not runtime dependencies');
  const files = all.filter((p) => !p.startsWith('node_modules/'));
  const set = new Set(files);

  const allowed = (p: string) =>
    p === 'package.json' || p === 'README.md' || /^LICENSE(\.md|\.txt)?$/.test(p) ||
    /^dist\/.+\.(js|d\.ts)$/.test(p) || /^docs\/[^/]+\.md$/.test(p) || p.startsWith('examples/');
  assert.deepEqual(files.filter((p) => !allowed(p)), [], 'files that do not belong in the package');
  const forbidden = /(^|\/)(node_modules|test|tests|bench\/results|tmp|generated)\/|\.tsbuildinfo$|\.map$|(^|\/)\.env$|^src\//;
  assert.deepEqual(files.filter((p) => forbidden.test(p)), []);

  for (const need of ['package.json', 'README.md', 'dist/cli.js', 'dist/index.js', 'dist/index.d.ts', 'docs/getting-started.md',
    'docs/config.md', 'examples/pgbouncer.ini', 'examples/userlist.txt', 'examples/pgtide.ini']) {
    assert.ok(set.has(need), `${need} is missing from the package`);
  }
  const pkg = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { bin: Record<string, string>; scripts: Record<string, string | undefined> };
  for (const bin of Object.values(pkg.bin)) assert.ok(set.has(normalize(bin)), `bin ${bin} is not in the package`);
  assert.match(readFileSync(join(ROOT, 'dist', 'cli.js'), 'utf8'), /^#!\/usr\/bin\/env node\n/);

  // every source is built into the package; a real pack starts from an empty dist/ (prepack), which prepare fills,
  // so a file left in a working tree's dist/ by a deleted source is not shipped
  const src = new Set(sources());
  assert.deepEqual([...src].filter((s) => !set.has(`dist/${s}.js`) || !set.has(`dist/${s}.d.ts`)), [], 'sources not built into the package');
  assert.match(pkg.scripts.prepack ?? '', /^rm -rf dist$/);
  assert.match(pkg.scripts.prepare ?? '', /npm run build/);

  // the shipped Markdown's relative links lead to shipped files (or folders with shipped files)
  const broken: string[] = [];
  for (const md of files.filter((p) => p.endsWith('.md'))) {
    const text = readFileSync(join(ROOT, md), 'utf8');
    for (const m of text.matchAll(/\]\(([^)\s]+)\)/g)) {
      const target = m[1]!.split('#')[0]!;
      if (!target || /^[a-z][a-z0-9+.-]*:/i.test(target)) continue;
      const p = normalize(join(dirname(md), target)).replace(/\/$/, '');
      if (!set.has(p) && !files.some((f) => f.startsWith(p + '/'))) broken.push(`${md}: ${m[1]}`);
    }
  }
  assert.deepEqual(broken, [], 'links to files the package does not have');
  const sizes = { own: 0, bundled: 0 };
  for (const f of pack.files) sizes[f.path.startsWith('node_modules/') ? 'bundled' : 'own'] += f.size;
  assert.ok(sizes.own < 3_000_000, `pgtide's own files unpack to ${sizes.own} bytes: something big slipped in`);
  // prom-client's tree is about 3.1 MB, most of it bintrees' (a tdigest dependency) test data
  assert.ok(sizes.bundled < 5_000_000, `the bundled dependencies unpack to ${sizes.bundled} bytes`);
});
