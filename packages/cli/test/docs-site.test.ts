/**
 * The API docs site as a reader gets it: `docs/api` (typedoc over the eight packages, with the
 * guides) served over HTTP on 127.0.0.1 and opened in headless Chromium (Debian's `chromium`
 * package). The front page must list every package and guide, a class page and a function
 * page must render their signatures and the navigation the site's script builds, no page may
 * ask for a file the site lacks, and a screenshot is taken of the class page.
 *
 * The site is built with `pnpm run docs` when it is missing or older than one of its sources
 * (CI builds it in a step of its own just before the tests, so it is reused there); the build
 * reads the packages' sources, not their builds, and takes about 30-45 s on 2 cores. Chromium
 * or a site that does not build fails the test with a message saying what to do; nothing is
 * skipped. `DOCS_SCREENSHOT=<file.png>` keeps the screenshot (default: a temporary folder);
 * `CHROMIUM=<binary>` overrides the browser found on PATH.
 */
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import {
  createReadStream,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
} from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { delimiter, dirname, extname, join, normalize, sep } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

const repo = fileURLToPath(new URL('../../../', import.meta.url));
const site = join(repo, 'docs/api');
const PACKAGES = ['backbones', 'cli', 'core', 'data', 'distill', 'eval', 'heads', 'moco'];
const GUIDES = [
  ['Getting_started', 'Getting started'],
  ['The_DisCo_method_in_brief', 'The DisCo method in brief'],
  ['Recipe__distil_a_PyTorch_teacher', 'Recipe: distil a PyTorch teacher'],
  ['Recipe__train_on_an_image_folder', 'Recipe: train on an image folder'],
  ['Recipe__export_to_the_browser', 'Recipe: export to the browser'],
] as const;
const CHROMIUM_HELP =
  "install Debian's Chromium (`apt-get install -y chromium`, as .ci/run does in its apt " +
  'block) or set CHROMIUM to a Chromium binary';
const WINDOW = { width: 1280, height: 900 };

const TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.svg': 'image/svg+xml',
  '.png': 'image/png',
  '.json': 'application/json',
};

/** Every file under `dir`, recursively. */
function filesUnder(dir: string): string[] {
  if (!existsSync(dir)) return [];
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) =>
    e.isDirectory() ? filesUnder(join(dir, e.name)) : [join(dir, e.name)],
  );
}

/** The files the site is built from: the config, the guides, the packages' sources and READMEs. */
function siteSources(): string[] {
  return [
    join(repo, 'typedoc.json'),
    join(repo, 'docs/README.md'),
    ...filesUnder(join(repo, 'docs/guides')),
    ...PACKAGES.flatMap((p) => [
      join(repo, 'packages', p, 'README.md'),
      ...filesUnder(join(repo, 'packages', p, 'src')),
    ]),
  ].filter((f) => existsSync(f));
}

/** Builds the site with `pnpm run docs` unless it is newer than every source. */
function ensureSite(): void {
  const index = join(site, 'index.html');
  if (existsSync(index)) {
    const built = statSync(index).mtimeMs;
    const newer = siteSources().find((f) => statSync(f).mtimeMs > built);
    if (newer === undefined) return;
  }
  const r = spawnSync('pnpm', ['run', 'docs'], { cwd: repo, encoding: 'utf8', timeout: 280_000 });
  if (r.error || r.status !== 0 || !existsSync(index)) {
    const out = `${r.stdout ?? ''}\n${r.stderr ?? ''}`.trim().split('\n').slice(-25).join('\n');
    throw new Error(
      `docs-site: \`pnpm run docs\` failed (${r.error?.message ?? `exit ${r.status}`}): the ` +
        `site in ${site} is missing or out of date. Fix what typedoc reports below (warnings ` +
        `are errors: an undocumented export, a broken {@link}); in CI, .ci/run runs ` +
        `\`pnpm run docs\` before \`pnpm test\`.\n${out}`,
    );
  }
}

/** The Chromium binary: `CHROMIUM`, else `chromium` or `chromium-browser` on PATH. */
function findChromium(): string {
  const given = process.env.CHROMIUM;
  if (given) {
    if (!existsSync(given)) throw new Error(`docs-site: CHROMIUM=${given} does not exist`);
    return given;
  }
  for (const dir of (process.env.PATH ?? '').split(delimiter)) {
    for (const name of ['chromium', 'chromium-browser']) {
      if (dir && existsSync(join(dir, name))) return join(dir, name);
    }
  }
  throw new Error(`docs-site: no chromium on PATH; ${CHROMIUM_HELP}`);
}

/** Paths the server was asked for and could not find (the favicon aside). */
const misses: string[] = [];

/** A static file server for `dir` on 127.0.0.1, on a free port. */
function serve(dir: string): Promise<Server> {
  const server = createServer((req, res) => {
    const path = decodeURIComponent(new URL(req.url ?? '/', 'http://127.0.0.1').pathname);
    const file = normalize(join(dir, path.endsWith('/') ? `${path}index.html` : path));
    if (!file.startsWith(dir + sep) || !existsSync(file) || !statSync(file).isFile()) {
      if (path !== '/favicon.ico') misses.push(path);
      res.writeHead(404, { 'content-type': 'text/plain' }).end(`not found: ${path}`);
      return;
    }
    res.writeHead(200, { 'content-type': TYPES[extname(file)] ?? 'application/octet-stream' });
    createReadStream(file).pipe(res);
  });
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve(server));
  });
}

const running = new Set<ChildProcess>();

/** Kills a Chromium we started, with the processes it started (its own process group). */
function kill(child: ChildProcess): void {
  if (child.pid !== undefined && child.exitCode === null && child.signalCode === null) {
    try {
      process.kill(-child.pid, 'SIGKILL');
    } catch {
      // Already gone.
    }
  }
  running.delete(child);
}

/** Runs headless Chromium on `url` with `mode` (`--dump-dom` or `--screenshot=...`). */
function chromium(bin: string, profile: string, mode: string, url: string): Promise<string> {
  const args = [
    '--headless=new',
    '--no-sandbox',
    '--disable-gpu',
    '--disable-dev-shm-usage',
    '--no-first-run',
    '--no-default-browser-check',
    `--user-data-dir=${profile}`,
    `--window-size=${WINDOW.width},${WINDOW.height}`,
    '--virtual-time-budget=5000',
    mode,
    url,
  ];
  return new Promise((resolve, reject) => {
    const child = spawn(bin, args, { detached: true, stdio: ['ignore', 'pipe', 'pipe'] });
    running.add(child);
    let stdout = '';
    let stderr = '';
    child.stdout!.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
    const timer = setTimeout(() => {
      kill(child);
      reject(new Error(`docs-site: chromium ${mode} ${url} did not finish in 60 s\n${stderr}`));
    }, 60_000);
    child.on('error', (err) => {
      clearTimeout(timer);
      running.delete(child);
      reject(new Error(`docs-site: cannot start ${bin}: ${err.message}; ${CHROMIUM_HELP}`));
    });
    child.on('close', (code) => {
      clearTimeout(timer);
      running.delete(child);
      if (code === 0) resolve(stdout);
      else reject(new Error(`docs-site: chromium ${mode} ${url} exited ${code}\n${stderr}`));
    });
  });
}

/** The visible text of an HTML document: scripts and styles dropped, tags removed, entities
 * decoded, whitespace collapsed. */
function textOf(html: string): string {
  return html
    .replace(/<(script|style)\b[\s\S]*?<\/\1>/g, ' ')
    .replace(/<[^>]+>/g, ' ')
    .replace(/&lt;/g, '<')
    .replace(/&gt;/g, '>')
    .replace(/&quot;/g, '"')
    .replace(/&nbsp;/g, ' ')
    .replace(/&#(\d+);/g, (_, code: string) => String.fromCodePoint(Number(code)))
    .replace(/&#x([0-9a-f]+);/gi, (_, code: string) => String.fromCodePoint(parseInt(code, 16)))
    .replace(/&amp;/g, '&')
    .replace(/\s+/g, ' ');
}

/** Text without any whitespace, to compare signatures whatever their line breaks. */
const squeeze = (s: string) => s.replace(/\s+/g, '');

/** The navigation list the site's script fills in (empty in the HTML file itself). */
function navigationOf(dom: string): string {
  const start = dom.indexOf('id="tsd-nav-container"');
  const end = dom.indexOf('</nav>', start);
  expect(start, 'the page has no navigation container').toBeGreaterThan(-1);
  expect(end, 'the navigation container is not closed').toBeGreaterThan(start);
  return dom.slice(start, end);
}

let server: Server;
let base: string;
let bin: string;
let profile: string;

beforeAll(async () => {
  bin = findChromium();
  ensureSite();
  server = await serve(site);
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  profile = mkdtempSync(join(tmpdir(), 'disco-docs-chromium-'));
}, 300_000);

afterAll(async () => {
  for (const child of [...running]) kill(child);
  if (server) {
    server.closeAllConnections();
    await new Promise<void>((resolve) => server.close(() => resolve()));
  }
  if (profile) rmSync(profile, { recursive: true, force: true });
});

describe('the API docs site in headless Chromium', () => {
  it('front page: every package and guide linked, and the links resolve', async () => {
    misses.length = 0;
    const dom = await chromium(bin, profile, '--dump-dom', `${base}/index.html`);
    expect(dom).toContain('<title>DisCo.js</title>');
    expect(textOf(dom)).toContain('DisCo.js documentation');
    for (const p of PACKAGES) {
      expect(dom, `front page link to @disco/${p}`).toMatch(
        new RegExp(`<a href="modules/_disco_${p}\\.html"[^>]*>@disco/${p}</a>`),
      );
    }
    for (const [file, title] of GUIDES) {
      expect(dom, `front page link to the guide ${title}`).toContain(
        `<a href="documents/${file}.html">${title}</a>`,
      );
    }
    // The pages those links name exist on the server.
    const linked = [
      ...PACKAGES.map((p) => `modules/_disco_${p}.html`),
      ...GUIDES.map(([file]) => `documents/${file}.html`),
    ];
    for (const path of linked) {
      const res = await fetch(`${base}/${path}`);
      expect(res.status, path).toBe(200);
      expect(await res.text(), path).toContain('<!DOCTYPE html>');
    }
    expect(misses, 'files the front page asked for and the site lacks').toEqual([]);
  });

  it('a class page renders its signatures, its comments and the navigation', async () => {
    misses.length = 0;
    const dom = await chromium(bin, profile, '--dump-dom', `${base}/classes/_disco_moco.MoCo.html`);
    const text = textOf(dom);
    expect(text).toContain('Class MoCo');
    expect(text).toContain('MoCo v2 training state: query and key encoders, queue, optimizer.');
    expect(squeeze(text)).toContain(
      squeeze(
        'step( view1: Tensor4D, view2: Tensor4D, lr: number, opts?: StepOptions, ): StepMetrics',
      ),
    );
    expect(squeeze(text)).toContain(
      squeeze('new MoCo(query: Encoder, rng: Rng, cfg?: MoCoConfig): MoCo'),
    );
    // Built by the site's script from its compressed index: present only if the script ran.
    const nav = navigationOf(dom);
    for (const p of PACKAGES) {
      expect(nav, `navigation entry @disco/${p}`).toMatch(
        new RegExp(`<a href="\\.\\./modules/_disco_${p}\\.html"[^>]*>.*?<span>@disco/${p}</span>`),
      );
    }
    for (const [file, title] of GUIDES) {
      expect(nav, `navigation entry ${title}`).toContain(`href="../documents/${file}.html"`);
    }
    expect(misses, 'files the class page asked for and the site lacks').toEqual([]);
  });

  it('a function page renders its signature and its documentation', async () => {
    const dom = await chromium(
      bin,
      profile,
      '--dump-dom',
      `${base}/functions/_disco_core.initBackend.html`,
    );
    const text = textOf(dom);
    expect(text).toContain('Function initBackend');
    expect(squeeze(text)).toContain(squeeze('initBackend(opts?: BackendOptions): Promise<string>'));
    expect(text).toContain('Starts the best available backend (or the forced one)');
    // The parameter's type links to its own page.
    expect(dom).toContain('href="../interfaces/_disco_core.BackendOptions.html"');
  });

  it('a screenshot of the class page', async () => {
    const file = process.env.DOCS_SCREENSHOT ?? join(profile, 'docs-screenshot.png');
    mkdirSync(dirname(file), { recursive: true });
    rmSync(file, { force: true });
    await chromium(bin, profile, `--screenshot=${file}`, `${base}/classes/_disco_moco.MoCo.html`);
    const png = readFileSync(file);
    // PNG signature, then the IHDR chunk: width and height, big-endian, at bytes 16 and 20.
    expect([...png.subarray(0, 8)]).toEqual([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);
    expect(png.toString('latin1', 12, 16)).toBe('IHDR');
    expect([png.readUInt32BE(16), png.readUInt32BE(20)]).toEqual([WINDOW.width, WINDOW.height]);
    // A blank 1280x900 page compresses to a few kB; a rendered one with text is far larger.
    expect(png.length).toBeGreaterThan(50_000);
    console.log(`docs-site: screenshot ${file} (${png.length} bytes)`);
  });
});
