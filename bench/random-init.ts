// kNN / linear top-1 of backbones with random initial weights on the shipped subset.
// Usage: npx tsx bench/random-init.ts <arch> [imageSize] [pooled|head] [preciseBn 1|0]
import { initBackend, Rng } from '../packages/core/src/index.js';
import { FASHION_MNIST_MEAN, FASHION_MNIST_STD } from '../packages/data/src/index.js';
import { buildEncoder } from '../packages/cli/src/model-file.js';
import { evaluateBackbone } from '../packages/cli/src/evaluate.js';
import { loadData } from '../packages/cli/src/train.js';

const [arch = 'mobilenet_v3_small', size = '28', output = 'pooled', precise = '1'] =
  process.argv.slice(2);
await initBackend();
const { train, test } = loadData({});
const built = buildEncoder(
  {
    arch,
    backbone: { inChannels: 1, ...(output === 'head' ? { output: 'head' as const } : {}) },
    hiddenDim: 2048,
    dim: 128,
  },
  new Rng(0).fork('init'),
);
const t0 = Date.now();
const opts0 = { imageSize: Number(size), mean: FASHION_MNIST_MEAN, std: FASHION_MNIST_STD };
const r = await evaluateBackbone(built.backbone, train, test, {
  ...opts0,
  preciseBn: precise === '1' ? { bnGroupSize: 32 } : false,
});
console.log(
  `${arch}@${size} ${output} preciseBn=${precise} random init: kNN ${(100 * r.knnTop1).toFixed(2)}%, linear ${(100 * r.linearTop1).toFixed(2)}%, dim ${r.featureDim}, ${(Date.now() - t0) / 1000}s`,
);
