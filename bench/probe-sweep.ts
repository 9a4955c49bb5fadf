// Linear-probe sweep on one encoder file: features once (precise BN first), then the probe
// with several weight decays; prints test and train top-1 for each.
// Usage: npx tsx bench/probe-sweep.ts <encoder.safetensors> [wd,wd,...]
import { Rng, initBackend } from '../packages/core/src/index.js';
import { FASHION_MNIST_MEAN, FASHION_MNIST_STD } from '../packages/data/src/index.js';
import { extractFeatures, linearProbe } from '../packages/eval/src/index.js';
import { loadModelFile } from '../packages/cli/src/model-file.js';
import { preprocessFor } from '../packages/cli/src/evaluate.js';
import { preciseBatchNorm } from '../packages/cli/src/precise-bn.js';
import { loadData } from '../packages/cli/src/train.js';

await initBackend();
const m = loadModelFile(process.argv[2]!);
const wds = (process.argv[3] ?? '0,1e-4,1e-3,3e-3,1e-2,3e-2,1e-1').split(',').map(Number);
const { train, test } = loadData({});
const opts = { imageSize: m.info.imageSize, mean: FASHION_MNIST_MEAN, std: FASHION_MNIST_STD };
const preprocess = preprocessFor(opts);
preciseBatchNorm(m.backbone, train, { bnGroupSize: 32, preprocess });
const feats = (s: typeof train) =>
  extractFeatures(m.backbone, s.images, {
    count: s.count,
    height: s.height,
    width: s.width,
    channels: s.channels,
    batchSize: 250,
    preprocess,
  });
const trainFeatures = await feats(train);
const testFeatures = await feats(test);
const out: string[] = [];
for (const wd of wds) {
  const r = await linearProbe({
    trainFeatures,
    trainLabels: train.labels,
    testFeatures,
    testLabels: test.labels,
    numClasses: 10,
    dim: m.backbone.outDim,
    weightDecay: wd,
    rng: new Rng(0),
  });
  out.push(`wd ${wd}: test ${(100 * r.top1).toFixed(2)}  train ${(100 * r.trainTop1).toFixed(2)}`);
}
console.log(`${process.argv[2]}\n  ${out.join('\n  ')}`);
