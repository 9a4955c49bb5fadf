#!/usr/bin/env node
/**
 * Writes the class-balanced Fashion-MNIST subset shipped in
 * packages/data/assets/fashion-mnist-subset/: 500 train images per class drawn from the train
 * split and 200 test images per class from the test split, chosen with a seeded generator,
 * kept in their original order, as gzipped IDX files with the standard names. Also writes the
 * chosen source indices (indices.json), the MIT licence of Fashion-MNIST and a README.
 *
 * Usage: node packages/data/scripts/make-subset.mjs [--src DIR] [--out DIR] [--seed N]
 * Defaults: --src /usr/share/datasets/fashion-mnist (Debian package dataset-fashion-mnist),
 * --out the assets folder next to this script, --seed 2022.
 */
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { gunzipSync, gzipSync } from 'node:zlib';

const PER_CLASS = { train: 500, test: 200 };
const FILES = {
  train: ['train-images-idx3-ubyte.gz', 'train-labels-idx1-ubyte.gz'],
  test: ['t10k-images-idx3-ubyte.gz', 't10k-labels-idx1-ubyte.gz'],
};
const CLASSES = 10;

function parseArgs(argv) {
  const here = dirname(fileURLToPath(import.meta.url));
  const args = {
    src: '/usr/share/datasets/fashion-mnist',
    out: resolve(here, '../assets/fashion-mnist-subset'),
    seed: 2022,
  };
  for (let i = 0; i < argv.length; i += 2) {
    const key = argv[i]?.replace(/^--/, '');
    const value = argv[i + 1];
    if (!(key in args) || value === undefined) {
      throw new Error(`make-subset: unknown or incomplete option ${argv[i]}`);
    }
    args[key] = key === 'seed' ? Number(value) : resolve(value);
  }
  if (!Number.isInteger(args.seed)) throw new Error(`make-subset: --seed must be an integer`);
  return args;
}

/** mulberry32: a small seeded generator, enough to pick a subset repeatably. */
function mulberry32(seed) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Reads a gzipped uint8 IDX file: { shape, data, header }. */
function readIdxU8(path) {
  const bytes = gunzipSync(readFileSync(path));
  if (bytes[0] !== 0 || bytes[1] !== 0 || bytes[2] !== 0x08) {
    throw new Error(`make-subset: ${path} is not a uint8 IDX file`);
  }
  const ndim = bytes[3];
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const shape = [];
  for (let d = 0; d < ndim; d++) shape.push(view.getUint32(4 + 4 * d, false));
  const headerBytes = 4 + 4 * ndim;
  const expected = headerBytes + shape.reduce((a, b) => a * b, 1);
  if (bytes.length !== expected) {
    throw new Error(`make-subset: ${path} holds ${bytes.length} bytes, expected ${expected}`);
  }
  return { shape, data: bytes.subarray(headerBytes) };
}

/** Encodes a uint8 IDX file and gzips it (no timestamp in the header, so output is stable). */
function writeIdxU8(path, shape, data) {
  const header = new Uint8Array(4 + 4 * shape.length);
  const view = new DataView(header.buffer);
  header[2] = 0x08;
  header[3] = shape.length;
  shape.forEach((d, i) => view.setUint32(4 + 4 * i, d, false));
  const whole = new Uint8Array(header.length + data.length);
  whole.set(header, 0);
  whole.set(data, header.length);
  writeFileSync(path, gzipSync(whole, { level: 9 }));
}

/** Per class, a seeded shuffle of that class's indices, first `perClass` kept; sorted. */
function balancedIndices(labels, perClass, random) {
  const byClass = Array.from({ length: CLASSES }, () => []);
  labels.forEach((label, i) => byClass[label].push(i));
  const chosen = [];
  for (const [label, list] of byClass.entries()) {
    if (list.length < perClass) {
      throw new Error(`make-subset: class ${label} has ${list.length} images, need ${perClass}`);
    }
    for (let i = list.length - 1; i > 0; i--) {
      const j = Math.floor(random() * (i + 1));
      [list[i], list[j]] = [list[j], list[i]];
    }
    chosen.push(...list.slice(0, perClass));
  }
  return chosen.sort((a, b) => a - b);
}

const LICENSE = `The MIT License (MIT)

Copyright (c) 2017 Zalando SE

Permission is hereby granted, free of charge, to any person obtaining a copy
of this software and associated documentation files (the "Software"), to deal
in the Software without restriction, including without limitation the rights
to use, copy, modify, merge, publish, distribute, sublicense, and/or sell
copies of the Software, and to permit persons to whom the Software is
furnished to do so, subject to the following conditions:

The above copyright notice and this permission notice shall be included in all
copies or substantial portions of the Software.

THE SOFTWARE IS PROVIDED "AS IS", WITHOUT WARRANTY OF ANY KIND, EXPRESS OR
IMPLIED, INCLUDING BUT NOT LIMITED TO THE WARRANTIES OF MERCHANTABILITY,
FITNESS FOR A PARTICULAR PURPOSE AND NONINFRINGEMENT. IN NO EVENT SHALL THE
AUTHORS OR COPYRIGHT HOLDERS BE LIABLE FOR ANY CLAIM, DAMAGES OR OTHER
LIABILITY, WHETHER IN AN ACTION OF CONTRACT, TORT OR OTHERWISE, ARISING FROM,
OUT OF OR IN CONNECTION WITH THE SOFTWARE OR THE USE OR OTHER DEALINGS IN THE
SOFTWARE.
`;

function readme(seed, counts) {
  return `# Fashion-MNIST subset

A small, class-balanced subset of [Fashion-MNIST](https://github.com/zalandoresearch/fashion-mnist)
(Xiao, Rasul and Vollgraf, 2017: 28x28 grayscale images of 10 clothing classes), shipped with
@disco/data so tests and quick runs work without downloading the full set.

| split | images | per class | drawn from |
| --- | --- | --- | --- |
| train | ${counts.train} | ${PER_CLASS.train} | the 60000 train images |
| test | ${counts.test} | ${PER_CLASS.test} | the 10000 test images |

Files: \`train-images-idx3-ubyte.gz\`, \`train-labels-idx1-ubyte.gz\`, \`t10k-images-idx3-ubyte.gz\`,
\`t10k-labels-idx1-ubyte.gz\` (gzipped IDX, the same names and format as the full set), and
\`indices.json\`: for each split, the index in the full split of every subset image, in order.

## How it was made

From the full set of the Debian package \`dataset-fashion-mnist\`
(\`/usr/share/datasets/fashion-mnist\`), run from the repository root:

\`\`\`
node packages/data/scripts/make-subset.mjs --seed ${seed}
\`\`\`

For each split and class, the indices of that class are shuffled with a seeded generator
(mulberry32, seed ${seed}, train first, then test) and the first ${PER_CLASS.train} (train) or
${PER_CLASS.test} (test) are kept; the chosen images keep their original relative order.

## Licence

Fashion-MNIST is released under the MIT licence, Copyright (c) 2017 Zalando SE; see LICENSE.
`;
}

function main() {
  const args = parseArgs(process.argv.slice(2));
  mkdirSync(args.out, { recursive: true });
  const random = mulberry32(args.seed);
  const indices = {};
  const counts = {};
  for (const split of ['train', 'test']) {
    const [imagesName, labelsName] = FILES[split];
    const images = readIdxU8(join(args.src, imagesName));
    const labels = readIdxU8(join(args.src, labelsName));
    const [n, h, w] = images.shape;
    if (labels.shape[0] !== n) {
      throw new Error(`make-subset: ${split} has ${n} images but ${labels.shape[0]} labels`);
    }
    const chosen = balancedIndices(labels.data, PER_CLASS[split], random);
    const pixels = h * w;
    const outImages = new Uint8Array(chosen.length * pixels);
    const outLabels = new Uint8Array(chosen.length);
    chosen.forEach((src, k) => {
      outImages.set(images.data.subarray(src * pixels, (src + 1) * pixels), k * pixels);
      outLabels[k] = labels.data[src];
    });
    writeIdxU8(join(args.out, imagesName), [chosen.length, h, w], outImages);
    writeIdxU8(join(args.out, labelsName), [chosen.length], outLabels);
    indices[split] = chosen;
    counts[split] = chosen.length;
    console.log(`make-subset: ${split}: ${chosen.length} of ${n} images -> ${args.out}`);
  }
  writeFileSync(join(args.out, 'indices.json'), JSON.stringify({ seed: args.seed, ...indices }));
  writeFileSync(join(args.out, 'LICENSE'), LICENSE);
  writeFileSync(join(args.out, 'README.md'), readme(args.seed, counts));
}

main();
