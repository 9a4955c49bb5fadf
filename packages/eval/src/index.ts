/**
 * @disco/eval: evaluation of frozen features for DisCo.js. Extract features with an
 * encoder in eval mode, then score them with the weighted kNN monitor of InstDisc / MoCo
 * (k = 200, t = 0.1) or a linear probe; plus top-1 and confusion-matrix metrics.
 *
 * Features travel as row-major Float32Arrays `[n, dim]` (or tensors `[n, dim]`, read and
 * not disposed); accuracies are fractions in [0, 1].
 * @packageDocumentation
 */
export { extractFeatures, type ExtractOptions } from './features.js';
export { knnClassify, type KnnOptions, type KnnResult } from './knn.js';
export {
  linearProbe,
  type LinearProbeOptions,
  type LinearProbeResult,
  type LinearProbeWeights,
} from './linear.js';
export { confusionMatrix, perClassAccuracy, top1Accuracy } from './metrics.js';
export type { FeatureMatrix, Labels } from './validate.js';
