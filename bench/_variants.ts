import { bindEncoder, initBackend } from '../packages/core/src/index.js';
import { FASHION_MNIST_MEAN, FASHION_MNIST_STD } from '../packages/data/src/index.js';
import { createBackbone } from '../packages/backbones/src/index.js';
import { loadModelFile } from '../packages/cli/src/model-file.js';
import { preprocessFor } from '../packages/cli/src/evaluate.js';
import { loadData } from '../packages/cli/src/train.js';
import { extractFeatures, knnClassify } from '../packages/eval/src/index.js';
await initBackend();
const m = loadModelFile(process.argv[2]!);
const { train, test } = loadData({});
const pre = preprocessFor({ imageSize: 28, mean: FASHION_MNIST_MEAN, std: FASHION_MNIST_STD });
const pooledNet = createBackbone(m.info.spec.arch, { ...m.info.spec.backbone, output: 'pooled' });
for (const [label, enc] of [
  ['as trained', m.backbone],
  ['pooled', bindEncoder(pooledNet, pooledNet.featureDim, m.encoder.params)],
] as const) {
  const f = async (s: typeof train) =>
    extractFeatures(enc, s.images, {
      count: s.count,
      height: 28,
      width: 28,
      channels: 1,
      preprocess: pre,
    });
  const tr = await f(train);
  const te = await f(test);
  const dim = enc.outDim;
  const mean = new Float64Array(dim);
  for (let i = 0; i < train.count; i++)
    for (let j = 0; j < dim; j++) mean[j] += tr[i * dim + j]! / train.count;
  const c = (a: Float32Array) => a.map((v, i) => v - mean[i % dim]!);
  const raw = await knnClassify({
    trainFeatures: tr,
    trainLabels: train.labels,
    testFeatures: te,
    testLabels: test.labels,
    numClasses: 10,
    dim,
  });
  const cen = await knnClassify({
    trainFeatures: c(tr),
    trainLabels: train.labels,
    testFeatures: c(te),
    testLabels: test.labels,
    numClasses: 10,
    dim,
  });
  const k20 = await knnClassify({
    trainFeatures: tr,
    trainLabels: train.labels,
    testFeatures: te,
    testLabels: test.labels,
    numClasses: 10,
    dim,
    k: 20,
  });
  console.log(`${label} (${dim}-d): raw kNN ${raw.top1}, centred ${cen.top1}, k=20 ${k20.top1}`);
}
