/**
 * The student in the browser: `exportTfjs` writes a Layers model that stock TensorFlow.js
 * loads, in Node and in headless Chromium (Debian's `chromium`), and the page in
 * examples/browser predicts on its bundled image what our own eval-mode forward predicts.
 */
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { extname, join, normalize, sep } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import sharp from 'sharp';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { Backbone } from '@disco/backbones';
import { Rng, tf } from '@disco/core';
import {
  FASHION_MNIST_CLASSES,
  FASHION_MNIST_MEAN,
  FASHION_MNIST_STD,
  loadFashionMnist,
} from '@disco/data';
import { buildEncoder, saveModelFile, type EncoderSpec } from '../src/model-file.js';
import {
  buildTfjsModel,
  exportTfjs,
  fitTfjsHead,
  TFJS_FILES,
  type TfjsHead,
  type TfjsSource,
} from '../src/tfjs-export.js';
import { LayersGraph } from '../src/tfjs-graph.js';
import { disco } from './helpers.js';

const root = fileURLToPath(new URL('../../../', import.meta.url));
const pageDir = join(root, 'examples/browser');

// Stock @tensorflow/tfjs (the union package @disco/core depends on): its Layers API and the
// browser bundle the page loads.
const coreRequire = createRequire(join(root, 'packages/core/package.json'));
const TF_MIN_JS = join(
  coreRequire.resolve('@tensorflow/tfjs/package.json').replace(/package\.json$/, ''),
  'dist/tf.min.js',
);
interface LayersModelApi {
  loadLayersModel(handler: { load(): Promise<unknown> }): Promise<{
    predict(x: tf.Tensor): tf.Tensor;
    layers: unknown[];
    dispose(): void;
  }>;
}
let stock: LayersModelApi;

/** The image the page classifies: Fashion-MNIST test image 0, an ankle boot. */
const SAMPLE = join(pageDir, 'sample.png');

let work: string;

beforeAll(async () => {
  work = mkdtempSync(join(tmpdir(), 'disco-browser-'));
  stock = (await import(pathToFileURL(coreRequire.resolve('@tensorflow/tfjs')).href)) as never;
});
afterAll(() => rmSync(work, { recursive: true, force: true }));

/**
 * `n` images for a model: the first of a Fashion-MNIST split, normalised, for a one-channel
 * 28x28 model (its BN statistics from these make the features vary from image to image as a
 * trained model's do; with statistics of noise the deep features hardly depend on the image
 * and a probe on them reads float32 rounding); N(0, 1) noise for the others.
 */
function images(split: 'train' | 'test', n: number, channels: number, size: number, rng: Rng) {
  if (channels === 1 && size === 28) {
    const set = loadFashionMnist({ split, limit: n });
    const x = tf.tensor4d(
      Float32Array.from(set.images, (v) => v / 255),
      [n, 28, 28, 1],
    );
    return tf.div(tf.sub(x, FASHION_MNIST_MEAN[0]!), FASHION_MNIST_STD[0]!) as tf.Tensor4D;
  }
  return tf.tensor4d(rng.normalArray(n * size * size * channels, 0, 1), [n, size, size, channels]);
}

/** A model with seeded weights whose BatchNorm layers carry non-trivial running statistics. */
function seededModel(spec: EncoderSpec, size: number, seed: number): TfjsSource {
  const built = buildEncoder(spec, new Rng(seed));
  const net = built.backbone.net as Backbone;
  const params = built.backbone.params;
  // Running statistics of one training-mode batch (momentum 1), the variances floored at 1e-2
  // so that no channel divides by a near-zero deviation (where float32 rounding alone moves
  // the output: ours on cpu and on wasm then differ by ~1e-3) and scaled by U(0.8, 1.25),
  // gamma and beta drawn: every BN layer shifts and scales, with activations of a trained
  // network's size.
  const rng = new Rng(seed + 1);
  tf.tidy(() => {
    net.apply(params, images('train', 16, net.inChannels, size, rng), {
      training: true,
      bnMomentum: 1,
    });
  });
  for (const name of params.names().filter((n) => n.endsWith('.running_mean'))) {
    const bn = name.slice(0, -'.running_mean'.length);
    const c = params.get(name).shape[0]!;
    tf.tidy(() => {
      params.get(`${bn}.weight`).assign(tf.tensor1d(rng.uniformArray(c, 0.5, 1.5)));
      params.get(`${bn}.bias`).assign(tf.tensor1d(rng.uniformArray(c, -0.2, 0.2)));
      const variance = params.get(`${bn}.running_var`);
      variance.assign(
        tf.mul(tf.maximum(variance, 1e-2), tf.tensor1d(rng.uniformArray(c, 0.8, 1.25))),
      );
    });
  }
  const mean = net.inChannels === 1 ? [...FASHION_MNIST_MEAN] : [0.485, 0.456, 0.406];
  const std = net.inChannels === 1 ? [...FASHION_MNIST_STD] : [0.229, 0.224, 0.225];
  return { ...built, info: { spec, imageSize: size, mean, std } };
}

/** Our own prediction: eval-mode `apply`, then the probe as @disco/eval defines it. */
function ours(m: TfjsSource, x: tf.Tensor4D, head?: TfjsHead): Float32Array {
  return tf.tidy(() => {
    const f = m.backbone.net.apply(m.backbone.params, x, { training: false });
    if (!head) return f.dataSync() as Float32Array;
    const { weight, bias, mean, std } = head.weights;
    const z = tf.div(tf.sub(f, tf.tensor1d(mean)), tf.tensor1d(std));
    const logits = tf.add(tf.matMul(z, tf.tensor2d(weight, [mean.length, bias.length])), bias);
    return tf.softmax(logits).dataSync() as Float32Array;
  });
}

/** `max |a - b| / max |b|`. */
function relativeError(a: ArrayLike<number>, b: ArrayLike<number>): number {
  expect(a.length).toBe(b.length);
  let diff = 0;
  let scale = 0;
  for (let i = 0; i < b.length; i++) {
    diff = Math.max(diff, Math.abs(a[i]! - b[i]!));
    scale = Math.max(scale, Math.abs(b[i]!));
  }
  return diff / scale;
}

/** Loads an export folder with stock `tf.loadLayersModel` through an io handler on its files. */
function loadExport(dir: string) {
  return stock.loadLayersModel({
    load: async () => {
      const json = JSON.parse(readFileSync(join(dir, TFJS_FILES.model), 'utf8'));
      const bin = readFileSync(join(dir, json.weightsManifest[0].paths[0]));
      return {
        modelTopology: json.modelTopology,
        format: json.format,
        weightSpecs: json.weightsManifest.flatMap((g: { weights: unknown[] }) => g.weights),
        weightData: bin.buffer.slice(bin.byteOffset, bin.byteOffset + bin.length),
      };
    },
  });
}

/** The bundled PNG as the model's input `[1, 28, 28, 1]`, and its raw pixels. */
async function sampleInput(): Promise<{ x: tf.Tensor4D; pixels: Uint8Array }> {
  expect((await sharp(SAMPLE).metadata()).channels).toBe(1); // an 8-bit grayscale PNG
  const { data, info } = await sharp(SAMPLE)
    .toColourspace('b-w')
    .raw()
    .toBuffer({ resolveWithObject: true });
  expect([info.width, info.height, info.channels]).toEqual([28, 28, 1]);
  const pixels = new Uint8Array(data);
  const x = tf.tidy(() =>
    tf.div(
      tf.sub(
        tf.div(tf.tensor4d(Float32Array.from(pixels), [1, 28, 28, 1]), 255),
        FASHION_MNIST_MEAN[0]!,
      ),
      FASHION_MNIST_STD[0]!,
    ),
  ) as tf.Tensor4D;
  return { x, pixels };
}

// The pipeline's student (a projection head whose tensors the export must leave out) and
// the other family shapes: plain and bottleneck ResNets, the small stem, width multipliers,
// RGB input, EfficientNet's SiLU and sigmoid gates.
const CASES: { label: string; spec: EncoderSpec; size: number }[] = [
  {
    label: 'mobilenet_v3_small, head feature, 1 channel',
    spec: {
      arch: 'mobilenet_v3_small',
      backbone: { inChannels: 1, output: 'head' },
      hiddenDim: 64,
      dim: 16,
    },
    size: 28,
  },
  {
    label: 'resnet18, 1 channel',
    spec: { arch: 'resnet18', backbone: { inChannels: 1 }, hiddenDim: 0, dim: 8 },
    size: 28,
  },
  {
    label: 'resnet50 x0.25, small stem',
    spec: {
      arch: 'resnet50',
      backbone: { inChannels: 1, smallStem: true, widthMultiplier: 0.25 },
      hiddenDim: 0,
      dim: 0,
      head: false,
    },
    size: 16,
  },
  {
    label: 'mobilenet_v3_large x0.5, pooled, RGB',
    spec: {
      arch: 'mobilenet_v3_large',
      backbone: { widthMultiplier: 0.5 },
      hiddenDim: 0,
      dim: 0,
      head: false,
    },
    size: 32,
  },
  {
    label: 'efficientnet_b0 x0.5, small stem, RGB',
    spec: {
      arch: 'efficientnet_b0',
      backbone: { widthMultiplier: 0.5, smallStem: true },
      hiddenDim: 0,
      dim: 0,
      head: false,
    },
    size: 32,
  },
];

describe('exportTfjs: stock tf.loadLayersModel in Node', () => {
  for (const [i, c] of CASES.entries()) {
    it(`${c.label}: the loaded model's feature equals our forward within 1e-4`, async () => {
      const m = seededModel(c.spec, c.size, 10 + i);
      const dir = join(work, `node-${i}`);
      try {
        const r = exportTfjs(m, dir, {});
        expect(r.card.output).toBe('feature');
        expect(r.card.input).toEqual([c.size, c.size, (m.backbone.net as Backbone).inChannels]);
        const loaded = await loadExport(dir);
        const n = 2;
        const x = images('test', n, r.card.input[2], c.size, new Rng(99));
        const want = ours(m, x);
        const y = loaded.predict(x);
        const got = y.dataSync();
        expect(y.shape).toEqual([n, m.backbone.outDim]);
        const err = relativeError(got, want);
        console.log(`${c.label}: ${r.layers} layers, relative error ${err.toExponential(2)}`);
        expect(err).toBeLessThan(1e-4);
        tf.dispose([x, y]);
        loaded.dispose();
      } finally {
        m.encoder.params.dispose();
      }
    });
  }

  it('writes the family epsilon into every BatchNormalization layer', () => {
    const cases: [EncoderSpec, number][] = [
      [CASES[0]!.spec, 1e-3],
      [CASES[1]!.spec, 1e-5],
    ];
    for (const [spec, eps] of cases) {
      const m = buildEncoder(spec, new Rng(0));
      try {
        const info = { spec, imageSize: 28, mean: [0.5], std: [0.5] };
        const { artifacts } = buildTfjsModel({ ...m, info });
        const layers = (
          artifacts.modelJson.modelTopology.config as {
            layers: { class_name: string; config: { epsilon?: number } }[];
          }
        ).layers;
        const bns = layers.filter((l) => l.class_name === 'BatchNormalization');
        expect(bns.length).toBeGreaterThan(10);
        expect(new Set(bns.map((l) => l.config.epsilon))).toEqual(new Set([eps]));
      } finally {
        m.encoder.params.dispose();
      }
    }
  });

  it('refuses a head that does not fit the feature and a bad input size, naming them', () => {
    const m = buildEncoder(CASES[1]!.spec, new Rng(0));
    try {
      const info = { spec: CASES[1]!.spec, imageSize: 28, mean: [0.5], std: [0.5] };
      const bad: TfjsHead = {
        weights: {
          weight: new Float32Array(511 * 3),
          bias: new Float32Array(3),
          mean: new Float32Array(511),
          std: new Float32Array(511),
        },
      };
      expect(() => buildTfjsModel({ ...m, info }, { head: bad })).toThrow(
        /head\.weights\.weight must hold 1536 values \(feature width 512, 3 classes\), got 1533/,
      );
      expect(() => buildTfjsModel({ ...m, info }, { inputSize: 0 })).toThrow(
        /inputSize must be a positive integer, got 0/,
      );
    } finally {
      m.encoder.params.dispose();
    }
  });
});

describe('LayersGraph', () => {
  it('computes shapes as the layers do and refuses wiring that cannot run', () => {
    const g = new LayersGraph();
    const x = g.input('in', [5, 5, 2]);
    const kernel = (k: number, cin: number, cout: number) => ({
      shape: [k, k, cin, cout],
      values: new Float32Array(k * k * cin * cout),
    });
    const padded = g.zeroPad('pad', x, 1);
    expect(padded.shape).toEqual([7, 7, 2]);
    const y = g.conv2d('conv', padded, {
      kernel: kernel(3, 2, 4),
      stride: 2,
      padding: 'valid',
      depthwise: false,
    });
    expect(y.shape).toEqual([3, 3, 4]); // PyTorch: floor((5 + 2 - 3) / 2) + 1
    const conv = (name: string, k: number, cin: number, opts: object) =>
      g.conv2d(name, y, {
        kernel: kernel(k, cin, 4),
        stride: 1,
        padding: 'valid',
        depthwise: false,
        ...opts,
      });
    expect(() => conv('a', 3, 3, {})).toThrow(
      /'a': kernel \[3,3,3,4\] does not fit an input of 4 channels/,
    );
    expect(() => conv('b', 5, 4, {})).toThrow(/'b': a 5x5 window does not fit a 3-pixel side/);
    expect(() => conv('c', 3, 4, { stride: 2, padding: 'same' })).toThrow(/'c': 'same' padding/);
    expect(() => g.add('d', x, y)).toThrow(/'d': shapes \[5,5,2\] and \[3,3,4\] differ/);
    expect(() => g.relu('conv', y)).toThrow(/a layer named 'conv' exists already/);
  });
});

/** A tiny static server: the page, the export folders under /models/, tf.min.js. */
function serve(models: string): Promise<Server> {
  const types: Record<string, string> = {
    '.html': 'text/html',
    '.js': 'text/javascript',
    '.json': 'application/json',
    '.png': 'image/png',
    '.bin': 'application/octet-stream',
  };
  const server = createServer((req, res) => {
    const path = decodeURIComponent(new URL(req.url ?? '/', 'http://x').pathname);
    let file: string | null = null;
    if (path === '/tfjs/tf.min.js') file = TF_MIN_JS;
    else {
      const [base, rel] = path.startsWith('/models/')
        ? [models, path.slice('/models/'.length)]
        : [pageDir, path.slice(1) || 'index.html'];
      const full = normalize(join(base, rel));
      if (full.startsWith(base + sep) && existsSync(full)) file = full;
    }
    if (!file) {
      res.writeHead(404).end();
      return;
    }
    res.writeHead(200, { 'content-type': types[extname(file)] ?? 'application/octet-stream' });
    res.end(readFileSync(file));
  });
  return new Promise((ok) => server.listen(0, '127.0.0.1', () => ok(server)));
}

/** Runs headless Chromium on `url` and returns the page's result JSON. */
function runChromium(url: string, profile: string): Promise<Record<string, unknown>> {
  return new Promise((ok, fail) => {
    const args = [
      '--headless=new',
      '--no-sandbox',
      '--disable-gpu',
      '--no-first-run',
      `--user-data-dir=${profile}`,
      '--virtual-time-budget=20000',
      '--dump-dom',
      url,
    ];
    const child = spawn('chromium', args, { detached: true, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout.on('data', (d) => (out += d));
    child.stderr.on('data', (d) => (err += d));
    const timer = setTimeout(() => process.kill(-child.pid!, 'SIGKILL'), 60_000);
    child.on('close', (code) => {
      clearTimeout(timer);
      const m = /<pre id="result">([\s\S]*?)<\/pre>/.exec(out);
      const text = (m?.[1] ?? '')
        .replace(/&lt;/g, '<')
        .replace(/&gt;/g, '>')
        .replace(/&quot;/g, '"')
        .replace(/&amp;/g, '&');
      if (!text) {
        fail(new Error(`chromium exited ${code} without a result; stderr:\n${err.slice(-2000)}`));
        return;
      }
      ok(JSON.parse(text) as Record<string, unknown>);
    });
  });
}

describe('the example page in headless Chromium', () => {
  let server: Server;
  let port: number;
  const models = () => join(work, 'models');

  beforeAll(async () => {
    const probe = spawnSync('chromium', ['--version'], { encoding: 'utf8' });
    if (probe.error || probe.status !== 0) {
      throw new Error(
        "chromium is not installed (the browser test runs Debian's package): apt-get install -y chromium",
      );
    }
    mkdirSync(models(), { recursive: true });
    server = await serve(models());
    port = (server.address() as AddressInfo).port;
  });
  afterAll(() => new Promise<void>((ok) => (server ? server.close(() => ok()) : ok())));

  it('the bundled image is Fashion-MNIST test image 0, unchanged', async () => {
    const test = loadFashionMnist({ split: 'test', limit: 1 });
    const { x, pixels } = await sampleInput();
    x.dispose();
    expect(FASHION_MNIST_CLASSES[test.labels[0]!]).toBe('Ankle boot');
    expect(Buffer.from(pixels).equals(Buffer.from(test.images))).toBe(true);
  });

  it('the student with a fitted probe: same class and probabilities as Node within 1e-3', async () => {
    const m = seededModel(CASES[0]!.spec, 28, 1);
    try {
      // A probe fitted on 300 train images, scored on 100 test images of the shipped subset.
      const train = loadFashionMnist({ split: 'train', limit: 300 });
      const test = loadFashionMnist({ split: 'test', limit: 100 });
      const probe = await fitTfjsHead(m, train, test, { epochs: 30, describe: 'shipped subset' });
      expect(probe.classNames).toEqual([...FASHION_MNIST_CLASSES]);
      expect(probe.fit!.trainImages).toBe(300);
      const r = exportTfjs(m, join(models(), 'student'), { head: probe });
      expect(r.card.output).toBe('probabilities');
      expect(r.card.outputDim).toBe(10);

      const { x } = await sampleInput();
      const want = ours(m, x, probe);
      const loaded = await loadExport(join(models(), 'student'));
      const y = loaded.predict(x);
      const nodeErr = relativeError(y.dataSync(), want);
      tf.dispose([x, y]);
      loaded.dispose();
      expect(nodeErr).toBeLessThan(1e-4);

      const best = want.indexOf(Math.max(...want));
      const sorted = [...want].sort((a, b) => b - a);
      expect(sorted[0]! - sorted[1]!).toBeGreaterThan(1e-3); // so that the class is well defined
      // The cpu backend, then the page's default (webgl where Chromium offers it).
      for (const backend of ['cpu', null]) {
        const query = `model=models/student/${backend ? `&backend=${backend}` : ''}`;
        const url = `http://127.0.0.1:${port}/index.html?${query}`;
        const page = await runChromium(url, join(work, `profile-student-${backend ?? 'default'}`));
        expect(page.error).toBeUndefined();
        const probs = page.probabilities as number[];
        console.log(
          `page on ${String(page.backend)}: ${JSON.stringify(page.top)}; Node ` +
            `${FASHION_MNIST_CLASSES[best]} p=${want[best]!.toFixed(6)}; probe test top-1 ` +
            `${(100 * probe.fit!.top1).toFixed(1)}%; Node vs stock tfjs ` +
            `${nodeErr.toExponential(2)}, Node vs page ${relativeError(probs, want).toExponential(2)}`,
        );
        if (backend) expect(page.backend).toBe(backend);
        expect(page.predicted).toBe(best);
        for (let k = 0; k < 10; k++) expect(Math.abs(probs[k]! - want[k]!)).toBeLessThan(1e-3);
      }
    } finally {
      m.encoder.params.dispose();
    }
  });

  it('a feature model (resnet18): the page prints the feature Node computes, within 1e-3', async () => {
    const m = seededModel(CASES[1]!.spec, 28, 2);
    try {
      exportTfjs(m, join(models(), 'resnet18'));
      const { x } = await sampleInput();
      const want = ours(m, x);
      x.dispose();
      const url = `http://127.0.0.1:${port}/index.html?model=models/resnet18&backend=cpu`;
      const page = await runChromium(url, join(work, 'profile-resnet'));
      expect(page.output).toBe('feature');
      const err = relativeError(page.feature as number[], want);
      console.log(
        `resnet18 feature [${want.length}]: Node vs page relative error ${err.toExponential(2)}`,
      );
      expect(err).toBeLessThan(1e-3);
    } finally {
      m.encoder.params.dispose();
    }
  });
});

describe('disco export --format tfjs', () => {
  it('writes the same model as exportTfjs, with a probe fitted on an image folder', async () => {
    const spec = CASES[0]!.spec;
    const m = seededModel(spec, 28, 3);
    const file = join(work, 'student.safetensors');
    try {
      saveModelFile(file, m.encoder, m.info);
      exportTfjs(m, join(work, 'api'));
    } finally {
      m.encoder.params.dispose();
    }
    // Two classes of 10 one-channel images each: 16 fitted on, 4 held out.
    const images = join(work, 'images');
    const fm = loadFashionMnist({ split: 'test', limit: 20 });
    for (let i = 0; i < 20; i++) {
      const cls = join(images, i % 2 === 0 ? 'even' : 'odd');
      mkdirSync(cls, { recursive: true });
      await sharp(Buffer.from(fm.images.subarray(i * 784, (i + 1) * 784)), {
        raw: { width: 28, height: 28, channels: 1 },
      })
        .png()
        .toFile(join(cls, `${i}.png`));
    }

    const plain = disco(['export', file, '--format', 'tfjs', '--out', join(work, 'cli')]);
    expect(plain.status, plain.all).toBe(0);
    expect(plain.stdout).toMatch(
      /exported mobilenet_v3_small for TensorFlow\.js: \d+ layers, .* output feature \[1024\]/,
    );
    const bin = (d: string) => readFileSync(join(work, d, TFJS_FILES.weights));
    expect(bin('cli').equals(bin('api'))).toBe(true);

    const fitted = disco([
      'export',
      file,
      '--format',
      'tfjs',
      '--out',
      join(work, 'cli-probe'),
      '--fit-head',
      images,
    ]);
    expect(fitted.status, fitted.all).toBe(0);
    expect(fitted.stdout).toMatch(/output probabilities \[2\].*linear probe train top-1/);
    const card = JSON.parse(readFileSync(join(work, 'cli-probe', TFJS_FILES.card), 'utf8'));
    expect(card.classNames).toEqual(['even', 'odd']);
    expect(card.head).toMatchObject({ trainImages: 16, testImages: 4 });

    const wrong = disco([
      'export',
      file,
      '--fit-head',
      images,
      '--out',
      join(work, 'x.safetensors'),
    ]);
    expect(wrong.status).not.toBe(0);
    expect(wrong.stderr).toMatch(/--fit-head needs --format tfjs/);
  });
});
