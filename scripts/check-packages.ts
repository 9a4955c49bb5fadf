// Checks every workspace package as npm would receive it. Each built package is packed with
// `pnpm pack` (which rewrites `workspace:` ranges, as publishing does), then the tarball must
// pass publint (strict: warnings fail too) and are-the-types-wrong (node10, node16 from CJS
// and from ESM, bundler), its package.json must name no workspace-only range, and every
// package its build imports must be declared in `dependencies` or `peerDependencies`.
// Builds nothing: run `pnpm build` first. Usage: pnpm check:packages
import { spawnSync } from 'node:child_process';
import {
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
} from 'node:fs';
import { builtinModules } from 'node:module';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('..', import.meta.url));
const bin = (name: string) => join(root, 'node_modules', '.bin', name);

interface Manifest {
  name: string;
  version: string;
  main?: string;
  module?: string;
  types?: string;
  dependencies?: Record<string, string>;
  peerDependencies?: Record<string, string>;
  optionalDependencies?: Record<string, string>;
  devDependencies?: Record<string, string>;
}

function run(cmd: string, args: string[], cwd: string): { ok: boolean; out: string } {
  const r = spawnSync(cmd, args, { cwd, encoding: 'utf8' });
  return { ok: r.status === 0, out: `${r.stdout ?? ''}${r.stderr ?? ''}`.trim() };
}

/** The package a bare import specifier names (`@scope/name/sub` -> `@scope/name`). */
function packageOf(specifier: string): string | null {
  if (specifier.startsWith('.') || specifier.startsWith('/') || specifier.startsWith('node:')) {
    return null;
  }
  const parts = specifier.split('/');
  const name = specifier.startsWith('@') ? parts.slice(0, 2).join('/') : parts[0]!;
  return builtinModules.includes(name) ? null : name;
}

/** Packages imported by the built files under `dir` (static, dynamic and `require` forms). */
function importedPackages(dir: string): Map<string, string> {
  const found = new Map<string, string>();
  const pattern = /(?:\bfrom\s*|\bimport\s*\(\s*|\brequire\s*\(\s*|\bimport\s+)["']([^"']+)["']/g;
  for (const entry of readdirSync(dir, { recursive: true, encoding: 'utf8' })) {
    if (!/\.(c?js|d\.c?ts)$/.test(entry)) continue;
    const file = join(dir, entry);
    if (!statSync(file).isFile()) continue;
    for (const match of readFileSync(file, 'utf8').matchAll(pattern)) {
      const name = packageOf(match[1]!);
      if (name !== null && !found.has(name)) found.set(name, entry);
    }
  }
  return found;
}

/** Problems of one package, checked on its tarball; also returns the tarball's size. */
function checkPackage(dir: string, out: string): { problems: string[]; bytes: number } {
  const manifest = JSON.parse(readFileSync(join(dir, 'package.json'), 'utf8')) as Manifest;
  const problems: string[] = [];
  for (const field of ['main', 'module', 'types'] as const) {
    const target = manifest[field];
    if (target !== undefined && !existsSync(join(dir, target))) {
      return {
        problems: [`${field} ${target} is missing: run \`pnpm build\` before this check`],
        bytes: 0,
      };
    }
  }

  const pack = run('pnpm', ['pack', '--json', '--pack-destination', out], dir);
  if (!pack.ok) return { problems: [`pnpm pack failed:\n${pack.out}`], bytes: 0 };
  const tarball = (JSON.parse(pack.out.slice(pack.out.indexOf('{'))) as { filename: string })
    .filename;
  const unpacked = join(out, manifest.name.replace('/', '+'));
  mkdirSync(unpacked, { recursive: true });
  run('tar', ['-xzf', tarball, '-C', unpacked], out);
  const packed = JSON.parse(
    readFileSync(join(unpacked, 'package', 'package.json'), 'utf8'),
  ) as Manifest;

  const sections = ['dependencies', 'peerDependencies', 'optionalDependencies'] as const;
  for (const section of sections) {
    for (const [dep, range] of Object.entries(packed[section] ?? {})) {
      if (/^(workspace|link|file|portal):/.test(range)) {
        problems.push(`packed package.json: ${section}.${dep} is '${range}'`);
      }
    }
  }
  const declared = new Set(sections.flatMap((s) => Object.keys(packed[s] ?? {})));
  for (const [dep, file] of importedPackages(join(unpacked, 'package'))) {
    if (dep !== packed.name && !declared.has(dep)) {
      problems.push(`${file} imports '${dep}', which package.json does not declare`);
    }
  }

  const publint = run(bin('publint'), ['run', tarball, '--strict'], root);
  if (!publint.ok) problems.push(`publint:\n${publint.out}`);
  const attw = run(bin('attw'), [tarball, '--format', 'ascii', '--no-emoji', '--no-color'], root);
  if (!attw.ok) problems.push(`are-the-types-wrong:\n${attw.out}`);
  return { problems, bytes: statSync(tarball).size };
}

const out = mkdtempSync(join(tmpdir(), 'disco-check-packages-'));
let failed = 0;
try {
  for (const name of readdirSync(join(root, 'packages')).sort()) {
    const dir = join(root, 'packages', name);
    if (!existsSync(join(dir, 'package.json'))) continue;
    const { problems, bytes } = checkPackage(dir, out);
    const size = `${(bytes / 1024).toFixed(1)} KiB packed`;
    if (problems.length === 0) {
      console.log(`ok    packages/${name} (${size}): publint, attw, ranges, imports`);
    } else {
      failed++;
      console.log(`FAIL  packages/${name}/package.json:`);
      for (const p of problems) console.log(`  - ${p.replaceAll('\n', '\n    ')}`);
    }
  }
} finally {
  rmSync(out, { recursive: true, force: true });
}
if (failed > 0) {
  console.log(`check:packages: ${failed} package(s) failed`);
  process.exit(1);
}
