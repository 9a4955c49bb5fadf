// kNN of an encoder file with eval-mode BN vs batch-statistics BN (diagnostic).
import { initBackend, type Encoder } from '../packages/core/src/index.js';
import { FASHION_MNIST_MEAN, FASHION_MNIST_STD } from '../packages/data/src/index.js';
import { loadModelFile } from '../packages/cli/src/model-file.js';
import { evaluateBackbone } from '../packages/cli/src/evaluate.js';
import { loadData } from '../packages/cli/src/train.js';

await initBackend();
const m = loadModelFile(process.argv[2]!);
const { train, test } = loadData({});
const opts = {
  imageSize: m.info.imageSize,
  mean: FASHION_MNIST_MEAN,
  std: FASHION_MNIST_STD,
  linearEpochs: 30,
};
const a = await evaluateBackbone(m.backbone, train, test, opts);
console.log(
  `eval BN: kNN ${(100 * a.knnTop1).toFixed(2)} linear ${(100 * a.linearTop1).toFixed(2)}`,
);
const batchStats: Encoder = {
  ...m.backbone,
  apply: (x) => m.backbone.net.apply(m.backbone.params, x, { training: true }),
};
const b = await evaluateBackbone(batchStats, train, test, opts);
console.log(
  `batch-stat BN: kNN ${(100 * b.knnTop1).toFixed(2)} linear ${(100 * b.linearTop1).toFixed(2)}`,
);
