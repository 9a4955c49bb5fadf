/**
 * Linear probe on frozen features: one fully connected layer `dim -> numClasses` trained
 * with softmax cross-entropy on precomputed features, then top-1 on the test features.
 *
 * The papers' protocol (MoCo, He et al. 2020, https://arxiv.org/abs/1911.05722; DisCo,
 * Gao et al. 2022, https://arxiv.org/abs/2207.11075) trains the classifier on frozen,
 * BN-eval features with SGD, lr 3.0 (MoCo v2: 30 for 100 epochs with two tenfold drops; DisCo
 * students: lr 3.0 halved on a schedule), weight decay 0, over augmented images. Here the
 * features are computed once without augmentation, z-scored with the train statistics, and
 * the layer is trained with Adam (betas 0.9, 0.999) and a cosine-decayed learning rate: on
 * z-scored features Adam's step does not depend on the feature width, so one default
 * (lr 1e-3, 100 epochs, batch 256) converges on a few thousand samples of any width where
 * plain SGD needs its lr tuned to the width. The gradient of the loss is taken in closed
 * form: d/dlogits of mean softmax cross-entropy is (softmax - onehot) / batch.
 */
import { Linear, Params, tf, type Rng } from '@disco/core';
import { top1Accuracy } from './metrics.js';
import {
  asTensor,
  checkInt,
  checkLabels,
  checkPositive,
  featureShape,
  inferDim,
  type FeatureMatrix,
  type Labels,
} from './validate.js';

export interface LinearProbeOptions {
  /** Train features `[nTrain, dim]`; a tensor here is read, not disposed. */
  trainFeatures: FeatureMatrix;
  /** Class of each train row `[nTrain]`, integers in `[0, numClasses)`. */
  trainLabels: Labels;
  /** Test features `[nTest, dim]`; a tensor here is read, not disposed. */
  testFeatures: FeatureMatrix;
  /** Class of each test row `[nTest]`. */
  testLabels: Labels;
  numClasses: number;
  /** Feature width; inferred from `trainFeatures` and `trainLabels`, checked when given. */
  dim?: number;
  /** Passes over the train features (default 100; cheap, the features are precomputed). */
  epochs?: number;
  /** Peak Adam learning rate, cosine-decayed to 0 over the run (default 1e-3). */
  lr?: number;
  /** Rows per step (default 256); the last step of an epoch takes the remainder. */
  batchSize?: number;
  /** Draws the layer's initial weights, then each epoch's shuffle. */
  rng: Rng;
}

/** A trained probe: logits = ((x - mean) / std) x weight + bias. */
export interface LinearProbeWeights {
  /** `[dim, numClasses]`, row-major (tfjs layout; PyTorch's `fc.weight` is its transpose). */
  weight: Float32Array;
  /** `[numClasses]`. */
  bias: Float32Array;
  /** Train feature mean `[dim]`. */
  mean: Float32Array;
  /** Train feature standard deviation `[dim]` (population, floored at 1e-6). */
  std: Float32Array;
}

export interface LinearProbeResult {
  /** Test top-1 accuracy, a fraction in [0, 1]. */
  top1: number;
  /** Train top-1 accuracy after the last epoch. */
  trainTop1: number;
  /** Mean softmax cross-entropy on the train features after the last epoch. */
  trainLoss: number;
  /** Predicted class of each test row `[nTest]`. */
  predictions: Int32Array;
  weights: LinearProbeWeights;
}

const BETA1 = 0.9;
const BETA2 = 0.999;
const ADAM_EPS = 1e-8;
const STD_FLOOR = 1e-6;

/**
 * Trains a linear classifier on frozen features and reports its top-1 accuracy. The layer
 * is core's `Linear` named `fc` (init N(0, 0.01), bias 0, as MoCo's linear evaluation). No
 * tensor outlives the call; the weights come back as plain arrays.
 * @throws on mismatched dims or label counts, labels outside `[0, numClasses)`, a size
 *   that is not a positive integer, or an lr that is not positive
 */
export async function linearProbe(opts: LinearProbeOptions): Promise<LinearProbeResult> {
  const fn = 'linearProbe';
  const { trainFeatures, testFeatures, numClasses, rng } = opts;
  const epochs = opts.epochs ?? 100;
  const lr = opts.lr ?? 1e-3;
  const batchSize = opts.batchSize ?? 256;
  checkInt(fn, 'numClasses', numClasses, 2);
  checkInt(fn, 'epochs', epochs, 0);
  checkPositive(fn, 'lr', lr);
  checkInt(fn, 'batchSize', batchSize, 1);
  const nTrain = opts.trainLabels.length;
  if (nTrain === 0) throw new Error(`${fn}: needs at least one train feature, got 0 labels`);
  const dim = inferDim(fn, 'trainFeatures', trainFeatures, nTrain, opts.dim);
  const nTest = featureShape(fn, 'testFeatures', testFeatures, dim);
  const trainY = checkLabels(fn, 'trainLabels', opts.trainLabels, nTrain, numClasses);
  const testY = checkLabels(fn, 'testLabels', opts.testLabels, nTest, numClasses);
  if (nTest === 0) throw new Error(`${fn}: needs at least one test feature, got 0 rows`);

  const params = new Params();
  const fc = new Linear('fc', { inFeatures: dim, outFeatures: numClasses, init: { normalStd: 0.01 } });
  fc.init(params, rng);
  const w = params.get('fc.weight');
  const b = params.get('fc.bias');
  const moments = [w, b].map((p) => ({ m: tf.variable(tf.zerosLike(p), false), v: tf.variable(tf.zerosLike(p), false) }));

  // z-score statistics of the train features, [dim] each.
  const { mean, std } = tf.tidy(() => {
    const m = tf.moments(asTensor(trainFeatures, nTrain, dim), 0);
    return { mean: m.mean, std: tf.maximum(tf.sqrt(m.variance), STD_FLOOR) };
  });
  const standardise = (x: tf.Tensor2D): tf.Tensor2D => tf.div(tf.sub(x, mean), std);
  const xTrain = tf.tidy(() => standardise(asTensor(trainFeatures, nTrain, dim)));
  const yTrain = tf.tensor1d(trainY, 'int32');

  try {
    // Mini-batch Adam over shuffled rows, lr_s = lr (1 + cos(pi s / S)) / 2.
    const stepsPerEpoch = Math.ceil(nTrain / batchSize);
    const totalSteps = epochs * stepsPerEpoch;
    let step = 0;
    for (let epoch = 0; epoch < epochs; epoch++) {
      const order = rng.permutation(nTrain);
      for (let start = 0; start < nTrain; start += batchSize) {
        const rows = order.subarray(start, Math.min(start + batchSize, nTrain));
        const lrNow = (lr * (1 + Math.cos((Math.PI * step) / totalSteps))) / 2;
        step++;
        tf.tidy(() => {
          // Forward [B, dim] -> [B, C]; gradient of the mean cross-entropy in closed form.
          const idx = tf.tensor1d(rows, 'int32');
          const xb = tf.gather(xTrain, idx) as tf.Tensor2D;
          const yb = tf.cast(tf.oneHot(tf.gather(yTrain, idx), numClasses), 'float32');
          const logits = fc.apply(params, xb);
          const g = tf.div(tf.sub(tf.softmax(logits), yb), rows.length) as tf.Tensor2D;
          const grads = [tf.matMul(xb, g, true, false), tf.sum(g, 0)];

          // Adam with bias correction.
          const c1 = 1 - BETA1 ** step;
          const c2 = 1 - BETA2 ** step;
          [w, b].forEach((p, i) => {
            const { m, v } = moments[i]!;
            m.assign(tf.add(tf.mul(m, BETA1), tf.mul(grads[i]!, 1 - BETA1)));
            v.assign(tf.add(tf.mul(v, BETA2), tf.mul(tf.square(grads[i]!), 1 - BETA2)));
            const update = tf.div(tf.div(m, c1), tf.add(tf.sqrt(tf.div(v, c2)), ADAM_EPS));
            p.assign(tf.sub(p, tf.mul(update, lrNow)));
          });
        });
      }
    }

    // Train figures, then test predictions with the train statistics.
    const [trainPred, trainLoss] = tf.tidy(() => {
      const logits = fc.apply(params, xTrain);
      const loss = tf.neg(tf.mean(tf.sum(tf.mul(tf.oneHot(yTrain, numClasses), tf.logSoftmax(logits)), 1)));
      return [tf.argMax(logits, 1), loss];
    });
    const testPred = tf.tidy(() =>
      tf.argMax(fc.apply(params, standardise(asTensor(testFeatures, nTest, dim))), 1),
    );
    const trainPredictions = (await readAndDispose(trainPred)) as Int32Array;
    const loss = (await readAndDispose(trainLoss))[0]!;
    const predictions = (await readAndDispose(testPred)) as Int32Array;
    return {
      top1: top1Accuracy(predictions, testY),
      trainTop1: top1Accuracy(trainPredictions, trainY),
      trainLoss: loss,
      predictions,
      weights: {
        weight: (await w.data()) as Float32Array,
        bias: (await b.data()) as Float32Array,
        mean: (await mean.data()) as Float32Array,
        std: (await std.data()) as Float32Array,
      },
    };
  } finally {
    for (const { m, v } of moments) {
      m.dispose();
      v.dispose();
    }
    params.dispose();
    tf.dispose([mean, std, xTrain, yTrain]);
  }
}

async function readAndDispose(t: tf.Tensor): Promise<tf.TypedArray> {
  try {
    return await t.data();
  } finally {
    t.dispose();
  }
}
