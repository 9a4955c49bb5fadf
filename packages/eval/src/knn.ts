/**
 * Weighted k-nearest-neighbour classifier on frozen features, the monitor of InstDisc
 * (Wu et al., CVPR 2018, https://arxiv.org/abs/1805.01978) that MoCo and DisCo report:
 * cosine similarity to every train feature, the k most similar vote for their class with
 * weight exp(similarity / t), and the class with the largest total wins.
 *
 * Batched: the L2-normalised train features are stored once as a bank `[dim, nTrain]`, so
 * each chunk of test queries is one plain matMul `[chunk, dim] x [dim, nTrain]` (no
 * transpose at run time; a transposed matMul is about 10x slower on the wasm backend),
 * then one `tf.topk`; the vote over the small `[chunk, k]` arrays runs in JavaScript. Each
 * chunk is uploaded from a JavaScript array (slicing a big tensor copies all of it on wasm).
 */
import { l2Normalize, tf } from '@disco/core';
import { top1Accuracy } from './metrics.js';
import {
  asTensor,
  checkInt,
  checkLabels,
  checkPositive,
  featureShape,
  inferDim,
  readRows,
  type FeatureMatrix,
  type Labels,
} from './validate.js';

/** The features, labels and vote settings of `knnClassify`. */
export interface KnnOptions {
  /** Train (memory bank) features `[nTrain, dim]`; a tensor here is read, not disposed. */
  trainFeatures: FeatureMatrix;
  /** Class of each train row `[nTrain]`, integers in `[0, numClasses)`. */
  trainLabels: Labels;
  /** Query features `[nTest, dim]`; a tensor here is read, not disposed. */
  testFeatures: FeatureMatrix;
  /** Class of each query `[nTest]`; when given, `top1` is reported. */
  testLabels?: Labels;
  /** Number of classes: labels and predictions are in `[0, numClasses)`. */
  numClasses: number;
  /** Feature width; inferred from `trainFeatures` and `trainLabels`, checked when given. */
  dim?: number;
  /** Neighbours that vote (default 200). Larger than `nTrain`: clamped to `nTrain`. */
  k?: number;
  /** Temperature of the vote weights exp(sim / t) (default 0.1). */
  t?: number;
  /** Queries per matMul (default 256); memory is about `chunkSize * nTrain` floats. */
  chunkSize?: number;
}

/** What `knnClassify` returns. */
export interface KnnResult {
  /** Predicted class of each query `[nTest]`. */
  predictions: Int32Array;
  /** Top-1 accuracy as a fraction in [0, 1], when `testLabels` were given. */
  top1?: number;
  /** The number of neighbours that voted: `min(k, nTrain)`. */
  k: number;
}

/**
 * Classifies each test feature by a weighted vote of its `k` nearest train features under
 * cosine similarity: weight exp(sim / t), class score the sum of its neighbours' weights,
 * prediction the highest-scoring class (the lowest class index on an exact tie). Weights are
 * computed as exp((sim - maxSim) / t), which scales every class score of a query alike and
 * so changes no prediction, but cannot overflow for a small `t`.
 *
 * `k > nTrain` is clamped to `nTrain` (a monitor on a small subset still runs); the `k`
 * used is returned. No tensor outlives the call.
 * @throws on mismatched dims or label counts, labels outside `[0, numClasses)`, `k` or
 *   `chunkSize` not a positive integer, `t` not positive
 */
export async function knnClassify(opts: KnnOptions): Promise<KnnResult> {
  const fn = 'knnClassify';
  const { trainFeatures, testFeatures, numClasses } = opts;
  const k = opts.k ?? 200;
  const t = opts.t ?? 0.1;
  const chunkSize = opts.chunkSize ?? 256;
  checkInt(fn, 'numClasses', numClasses, 1);
  checkInt(fn, 'k', k, 1);
  checkPositive(fn, 't', t);
  checkInt(fn, 'chunkSize', chunkSize, 1);
  const nTrain = opts.trainLabels.length;
  if (nTrain === 0) throw new Error(`${fn}: needs at least one train feature, got 0 labels`);
  const dim = inferDim(fn, 'trainFeatures', trainFeatures, nTrain, opts.dim);
  const nTest = featureShape(fn, 'testFeatures', testFeatures, dim);
  const trainY = checkLabels(fn, 'trainLabels', opts.trainLabels, nTrain, numClasses);
  const testY =
    opts.testLabels === undefined
      ? undefined
      : checkLabels(fn, 'testLabels', opts.testLabels, nTest, numClasses);
  const kUsed = Math.min(k, nTrain);

  const queries = await readRows(testFeatures);

  // The bank: unit-length train features, one column each, [dim, nTrain].
  const bank = tf.tidy(() =>
    tf.transpose(l2Normalize(asTensor(trainFeatures, nTrain, dim))),
  ) as tf.Tensor2D;
  const predictions = new Int32Array(nTest);
  const scores = new Float64Array(numClasses);
  try {
    for (let start = 0; start < nTest; start += chunkSize) {
      const size = Math.min(chunkSize, nTest - start);

      // Cosine similarities [size, nTrain], then the kUsed largest per query [size, kUsed].
      const [values, indices] = tf.tidy(() => {
        const rows = queries.subarray(start * dim, (start + size) * dim);
        const q = l2Normalize(tf.tensor2d(rows, [size, dim]));
        const top = tf.topk(tf.matMul(q, bank), kUsed, true);
        return [top.values, top.indices];
      });
      let sims: Float32Array;
      let idx: Int32Array;
      try {
        sims = (await values.data()) as Float32Array;
        idx = (await indices.data()) as Int32Array;
      } finally {
        values.dispose();
        indices.dispose();
      }

      // The vote: each neighbour adds exp((sim - maxSim) / t) to its class.
      for (let i = 0; i < size; i++) {
        scores.fill(0);
        const row = i * kUsed;
        const maxSim = sims[row]!;
        for (let j = 0; j < kUsed; j++) {
          scores[trainY[idx[row + j]!]!]! += Math.exp((sims[row + j]! - maxSim) / t);
        }
        let best = 0;
        for (let c = 1; c < numClasses; c++) if (scores[c]! > scores[best]!) best = c;
        predictions[start + i] = best;
      }
    }
  } finally {
    bank.dispose();
  }

  const result: KnnResult = { predictions, k: kUsed };
  if (testY !== undefined && nTest > 0) result.top1 = top1Accuracy(predictions, testY);
  return result;
}
