// Evaluates an encoder file on the shipped subset (precise BN first, unless noPreciseBn).
// Usage: npx tsx bench/eval-file.ts <encoder.safetensors> [noPreciseBn]
import { initBackend } from '../packages/core/src/index.js';
import { FASHION_MNIST_MEAN, FASHION_MNIST_STD } from '../packages/data/src/index.js';
import { loadModelFile } from '../packages/cli/src/model-file.js';
import { evaluateBackbone } from '../packages/cli/src/evaluate.js';
import { loadData } from '../packages/cli/src/train.js';

await initBackend();
const m = loadModelFile(process.argv[2]!);
const { train, test } = loadData({});
const opts = { imageSize: m.info.imageSize, mean: FASHION_MNIST_MEAN, std: FASHION_MNIST_STD };
const r = await evaluateBackbone(m.backbone, train, test, {
  ...opts,
  preciseBn: process.argv[3] === 'noPreciseBn' ? false : { bnGroupSize: 32 },
});
console.log(
  `${process.argv[2]}: kNN ${(100 * r.knnTop1).toFixed(2)}%  linear ${(100 * r.linearTop1).toFixed(2)}%`,
);
