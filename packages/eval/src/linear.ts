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
 * (lr 1e-2, 100 epochs, batch 256) converges on a few thousand samples of any width where
 * plain SGD needs its lr tuned to the width. The gradient of the loss is taken in closed
 * form: d/dlogits of mean softmax cross-entropy is (softmax - onehot) / batch.
 */
import { Linear, Params, tf, type Rng } from '@disco/core';
import { top1Accuracy } from './metrics.js';
import {
  checkInt,
  checkLabels,
  checkPositive,
  featureShape,
  inferDim,
  readRows,
  type FeatureMatrix,
  type Labels,
} from './validate.js';

/** The features, labels and training settings of `linearProbe`. */
export interface LinearProbeOptions {
  /** Train features `[nTrain, dim]`; a tensor here is read, not disposed. */
  trainFeatures: FeatureMatrix;
  /** Class of each train row `[nTrain]`, integers in `[0, numClasses)`. */
  trainLabels: Labels;
  /** Test features `[nTest, dim]`; a tensor here is read, not disposed. */
  testFeatures: FeatureMatrix;
  /** Class of each test row `[nTest]`. */
  testLabels: Labels;
  /** Number of classes: labels and predictions are in `[0, numClasses)`. */
  numClasses: number;
  /** Feature width; inferred from `trainFeatures` and `trainLabels`, checked when given. */
  dim?: number;
  /** Passes over the train features (default 100; cheap, the features are precomputed). */
  epochs?: number;
  /** Peak Adam learning rate, cosine-decayed to 0 over the run (default 1e-2). */
  lr?: number;
  /** Rows per step (default 256); the last step of an epoch takes the remainder. */
  batchSize?: number;
  /**
   * L2 penalty `weightDecay / 2 * ||weight||^2` added to the loss (the bias is not
   * penalised); default 0, the papers' setting.
   */
  weightDecay?: number;
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

/** What `linearProbe` returns: its scores and the trained probe. */
export interface LinearProbeResult {
  /** Test top-1 accuracy, a fraction in [0, 1]. */
  top1: number;
  /** Train top-1 accuracy after the last epoch. */
  trainTop1: number;
  /** Mean softmax cross-entropy on the train features after the last epoch. */
  trainLoss: number;
  /** Predicted class of each test row `[nTest]`. */
  predictions: Int32Array;
  /** The trained probe, with the train-feature standardisation it applies. */
  weights: LinearProbeWeights;
}

const BETA1 = 0.9;
const BETA2 = 0.999;
const ADAM_EPS = 1e-8;
const STD_FLOOR = 1e-6;

/**
 * Trains a linear classifier on frozen features and reports its top-1 accuracy. The layer
 * is core's `Linear` named `fc` (init N(0, 0.01), bias 0, as MoCo's linear evaluation).
 * Each batch is assembled from the shuffled rows in JavaScript and uploaded, which costs
 * less than a gather or a slice of a big tensor on the wasm backend. No tensor outlives
 * the call; the weights come back as plain arrays.
 * @throws on mismatched dims or label counts, labels outside `[0, numClasses)`, fewer than
 *   2 classes, a size that is not a positive integer, or an lr that is not positive
 */
export async function linearProbe(opts: LinearProbeOptions): Promise<LinearProbeResult> {
  const fn = 'linearProbe';
  const { numClasses, rng } = opts;
  const epochs = opts.epochs ?? 100;
  const lr = opts.lr ?? 1e-2;
  const batchSize = opts.batchSize ?? 256;
  const weightDecay = opts.weightDecay ?? 0;
  checkInt(fn, 'numClasses', numClasses, 2);
  if (!(weightDecay >= 0) || !Number.isFinite(weightDecay)) {
    throw new Error(`${fn}: weightDecay must be a finite number >= 0, got ${weightDecay}`);
  }
  checkInt(fn, 'epochs', epochs, 0);
  checkPositive(fn, 'lr', lr);
  checkInt(fn, 'batchSize', batchSize, 1);
  const nTrain = opts.trainLabels.length;
  if (nTrain === 0) throw new Error(`${fn}: needs at least one train feature, got 0 labels`);
  const dim = inferDim(fn, 'trainFeatures', opts.trainFeatures, nTrain, opts.dim);
  const nTest = featureShape(fn, 'testFeatures', opts.testFeatures, dim);
  if (nTest === 0) throw new Error(`${fn}: needs at least one test feature, got 0 rows`);
  const trainY = checkLabels(fn, 'trainLabels', opts.trainLabels, nTrain, numClasses);
  const testY = checkLabels(fn, 'testLabels', opts.testLabels, nTest, numClasses);

  // z-score both sets with the train statistics.
  const trainX = await readRows(opts.trainFeatures);
  const { mean, std } = columnStats(trainX, nTrain, dim);
  const xTrain = standardise(trainX, dim, mean, std);
  const xTest = standardise(await readRows(opts.testFeatures), dim, mean, std);

  const params = new Params();
  const fc = new Linear('fc', {
    inFeatures: dim,
    outFeatures: numClasses,
    init: { normalStd: 0.01 },
  });
  fc.init(params, rng);
  const adam = new Adam([params.get('fc.weight'), params.get('fc.bias')]);
  try {
    // Mini-batch Adam over shuffled rows, lr_s = lr (1 + cos(pi s / S)) / 2.
    const totalSteps = epochs * Math.ceil(nTrain / batchSize);
    const xBatch = new Float32Array(batchSize * dim);
    const yBatch = new Float32Array(batchSize * numClasses);
    for (let epoch = 0; epoch < epochs; epoch++) {
      const order = rng.permutation(nTrain);
      for (let start = 0; start < nTrain; start += batchSize) {
        const size = Math.min(batchSize, nTrain - start);
        yBatch.fill(0);
        for (let i = 0; i < size; i++) {
          const r = order[start + i]!;
          xBatch.set(xTrain.subarray(r * dim, (r + 1) * dim), i * dim);
          yBatch[i * numClasses + trainY[r]!] = 1;
        }
        const lrNow = (lr * (1 + Math.cos((Math.PI * adam.step) / totalSteps))) / 2;
        tf.tidy(() => {
          // Forward [B, dim] -> [B, C]; d(mean cross-entropy)/dlogits = (softmax - onehot) / B.
          const xb = tf.tensor2d(xBatch.subarray(0, size * dim), [size, dim]);
          const yb = tf.tensor2d(yBatch.subarray(0, size * numClasses), [size, numClasses]);
          const g = tf.div(tf.sub(tf.softmax(fc.apply(params, xb)), yb), size) as tf.Tensor2D;

          // Weight gradient x^T g [dim, C] as a plain matMul of the transposed batch.
          const w = params.get('fc.weight');
          let gw: tf.Tensor = tf.matMul(tf.transpose(xb), g);
          if (weightDecay > 0) gw = tf.add(gw, tf.mul(w, weightDecay));
          adam.update([gw, tf.sum(g, 0)], lrNow);
        });
      }
    }

    // Train figures, then test predictions.
    const [trainPred, trainLoss] = tf.tidy(() => {
      const logits = fc.apply(params, tf.tensor2d(xTrain, [nTrain, dim]));
      const onehot = tf.oneHot(tf.tensor1d(trainY, 'int32'), numClasses);
      const loss = tf.neg(tf.mean(tf.sum(tf.mul(onehot, tf.logSoftmax(logits)), 1)));
      return [tf.argMax(logits, 1), loss];
    });
    const testPred = tf.tidy(() =>
      tf.argMax(fc.apply(params, tf.tensor2d(xTest, [nTest, dim])), 1),
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
        weight: (await params.get('fc.weight').data()) as Float32Array,
        bias: (await params.get('fc.bias').data()) as Float32Array,
        mean,
        std,
      },
    };
  } finally {
    adam.dispose();
    params.dispose();
  }
}

/** Adam (Kingma and Ba, 2015) with bias correction over a fixed list of variables. */
class Adam {
  step = 0;
  private readonly m: tf.Variable[];
  private readonly v: tf.Variable[];

  constructor(private readonly vars: tf.Variable[]) {
    const zeros = (p: tf.Variable): tf.Variable =>
      tf.tidy(() => tf.variable(tf.zeros(p.shape), false));
    this.m = vars.map(zeros);
    this.v = vars.map(zeros);
  }

  /** One step with gradients in `vars` order; call inside a tidy. */
  update(grads: tf.Tensor[], lr: number): void {
    this.step++;
    const c1 = 1 - BETA1 ** this.step;
    const c2 = 1 - BETA2 ** this.step;
    this.vars.forEach((p, i) => {
      const m = this.m[i]!;
      const v = this.v[i]!;
      const g = grads[i]!;
      m.assign(tf.add(tf.mul(m, BETA1), tf.mul(g, 1 - BETA1)));
      v.assign(tf.add(tf.mul(v, BETA2), tf.mul(tf.square(g), 1 - BETA2)));
      const update = tf.div(tf.div(m, c1), tf.add(tf.sqrt(tf.div(v, c2)), ADAM_EPS));
      p.assign(tf.sub(p, tf.mul(update, lr)));
    });
  }

  dispose(): void {
    tf.dispose([...this.m, ...this.v]);
  }
}

/** Per-column mean and population standard deviation of `[rows, dim]`, in float64. */
function columnStats(
  x: Float32Array,
  rows: number,
  dim: number,
): { mean: Float32Array; std: Float32Array } {
  const sum = new Float64Array(dim);
  for (let i = 0; i < rows; i++) for (let d = 0; d < dim; d++) sum[d]! += x[i * dim + d]!;
  const mean = sum.map((s) => s / rows);
  const sq = new Float64Array(dim);
  for (let i = 0; i < rows; i++) {
    for (let d = 0; d < dim; d++) sq[d]! += (x[i * dim + d]! - mean[d]!) ** 2;
  }
  return {
    mean: Float32Array.from(mean),
    std: Float32Array.from(sq, (s) => Math.max(Math.sqrt(s / rows), STD_FLOOR)),
  };
}

/** `(x - mean) / std` per column, into a new array. */
function standardise(x: Float32Array, dim: number, mean: Float32Array, std: Float32Array) {
  const out = new Float32Array(x.length);
  for (let i = 0; i < x.length; i++) out[i] = (x[i]! - mean[i % dim]!) / std[i % dim]!;
  return out;
}

async function readAndDispose(t: tf.Tensor): Promise<tf.TypedArray> {
  try {
    return await t.data();
  } finally {
    t.dispose();
  }
}
