// Proves that `changeset version` succeeds on the pending changesets without touching this
// tree: copies the root and package manifests, the changelogs and .changeset/ into a
// temporary folder, runs `changeset version` there, and checks the result: every changeset
// consumed, each released package's version raised with a changelog entry for it, the
// manifests still valid. Prints the release plan (old -> new version per package) and warns
// when a package moved further than its changesets ask (changesets gives a major bump to a
// package whose peer dependency gets a minor or major one).
// Usage: pnpm changeset:dry-run
import { spawnSync } from 'node:child_process';
import {
  copyFileSync,
  cpSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  symlinkSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('..', import.meta.url));
const BUMPS = ['none', 'patch', 'minor', 'major'] as const;
type Bump = (typeof BUMPS)[number];

interface Manifest {
  name: string;
  version: string;
  private?: boolean;
}

const readJson = (file: string): Manifest => JSON.parse(readFileSync(file, 'utf8')) as Manifest;

/** The bump each package's pending changesets ask for (the largest one wins). */
function requestedBumps(changesetDir: string): Map<string, Bump> {
  const bumps = new Map<string, Bump>();
  for (const file of readdirSync(changesetDir)) {
    if (!file.endsWith('.md') || file === 'README.md') continue;
    const text = readFileSync(join(changesetDir, file), 'utf8');
    const front = /^---\n([\s\S]*?)\n---/.exec(text);
    if (!front) throw new Error(`.changeset/${file}: no front matter between --- lines`);
    for (const line of front[1]!.split('\n')) {
      const m = /^\s*['"]?([^'":]+)['"]?\s*:\s*(patch|minor|major|none)\s*$/.exec(line);
      if (!m) throw new Error(`.changeset/${file}: cannot read the release line '${line}'`);
      const [, name, bump] = m as unknown as [string, string, Bump];
      const before = bumps.get(name) ?? 'none';
      if (BUMPS.indexOf(bump) > BUMPS.indexOf(before)) bumps.set(name, bump);
    }
  }
  return bumps;
}

/** The bump that takes `from` to `to` (`none` when equal). */
function bumpBetween(from: string, to: string): Bump {
  const [a, b] = [from, to].map((v) => v.split('-')[0]!.split('.').map(Number));
  if (a![0] !== b![0]) return 'major';
  if (a![1] !== b![1]) return 'minor';
  return a![2] !== b![2] ? 'patch' : 'none';
}

const work = mkdtempSync(join(tmpdir(), 'disco-changeset-dry-run-'));
const problems: string[] = [];
try {
  for (const file of ['package.json', 'pnpm-workspace.yaml']) {
    copyFileSync(join(root, file), join(work, file));
  }
  cpSync(join(root, '.changeset'), join(work, '.changeset'), { recursive: true });
  symlinkSync(join(root, 'node_modules'), join(work, 'node_modules'), 'dir');
  const packages = readdirSync(join(root, 'packages'))
    .filter((name) => existsSync(join(root, 'packages', name, 'package.json')))
    .sort();
  for (const name of packages) {
    mkdirSync(join(work, 'packages', name), { recursive: true });
    for (const file of ['package.json', 'CHANGELOG.md']) {
      const from = join(root, 'packages', name, file);
      if (existsSync(from)) copyFileSync(from, join(work, 'packages', name, file));
    }
  }

  const requested = requestedBumps(join(work, '.changeset'));
  const before = new Map(
    packages.map((name) => [name, readJson(join(work, 'packages', name, 'package.json'))]),
  );
  for (const pkg of requested.keys()) {
    if (![...before.values()].some((m) => m.name === pkg)) {
      problems.push(`.changeset names '${pkg}', which is not a package of this workspace`);
    }
  }

  const cli = join(root, 'node_modules', '@changesets', 'cli', 'bin.js');
  const r = spawnSync(process.execPath, [cli, 'version'], { cwd: work, encoding: 'utf8' });
  const output = `${r.stdout ?? ''}${r.stderr ?? ''}`.trim();
  if (r.status !== 0) problems.push(`changeset version exited ${r.status}:\n${output}`);

  const left = readdirSync(join(work, '.changeset')).filter(
    (f) => f.endsWith('.md') && f !== 'README.md',
  );
  if (r.status === 0 && left.length > 0) {
    problems.push(`changeset version left these changesets unconsumed: ${left.join(', ')}`);
  }

  console.log('package            requested  version');
  for (const name of packages) {
    const old = before.get(name)!;
    const dir = join(work, 'packages', name);
    let now: Manifest;
    try {
      now = readJson(join(dir, 'package.json'));
    } catch (err) {
      problems.push(`packages/${name}/package.json is not valid JSON after version: ${err}`);
      continue;
    }
    const asked = requested.get(old.name) ?? 'none';
    const got = bumpBetween(old.version, now.version);
    console.log(`${old.name.padEnd(19)}${asked.padEnd(11)}${old.version} -> ${now.version}`);
    if (r.status === 0 && got === 'none' && asked !== 'none' && !old.private) {
      problems.push(`${old.name}: a ${asked} changeset is pending but the version stayed`);
    }
    if (got !== 'none') {
      const log = join(dir, 'CHANGELOG.md');
      if (!existsSync(log) || !readFileSync(log, 'utf8').includes(`## ${now.version}`)) {
        problems.push(`packages/${name}/CHANGELOG.md has no '## ${now.version}' entry`);
      }
    }
    if (BUMPS.indexOf(got) > BUMPS.indexOf(asked)) {
      console.log(
        `  warning: ${old.name} gets a ${got} bump though its changesets ask ${asked} ` +
          '(a dependency, or a peer dependency given a minor or major bump, pulled it up)',
      );
    }
  }
} finally {
  rmSync(work, { recursive: true, force: true });
}

if (problems.length > 0) {
  for (const p of problems) console.log(`FAIL  ${p.replaceAll('\n', '\n      ')}`);
  process.exit(1);
}
console.log('changeset:dry-run: `changeset version` succeeds; this tree was not changed');
