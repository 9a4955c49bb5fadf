/**
 * Classification metrics over predicted and true class indices: top-1 accuracy and the
 * confusion matrix. Plain JavaScript over small integer arrays; no tensors.
 */
import { checkInt, checkLabels, type Labels } from './validate.js';

/**
 * Top-1 accuracy: the fraction (in [0, 1], not percent) of rows whose prediction equals
 * the label.
 * @param predictions predicted class per row `[n]`
 * @param labels true class per row `[n]`
 * @throws when the lengths differ or are zero
 */
export function top1Accuracy(predictions: Labels, labels: Labels): number {
  if (predictions.length !== labels.length) {
    throw new Error(
      `top1Accuracy: predictions (${predictions.length}) and labels (${labels.length}) ` +
        'must have the same length',
    );
  }
  if (labels.length === 0) throw new Error('top1Accuracy: needs at least one label, got 0');
  let hits = 0;
  for (let i = 0; i < labels.length; i++) if (predictions[i] === labels[i]) hits++;
  return hits / labels.length;
}

/**
 * Confusion matrix `[numClasses, numClasses]`, row-major: entry `[y, p]` counts the rows
 * of true class `y` predicted as `p`. Its diagonal sum over `n` is the top-1 accuracy.
 * @param predictions predicted class per row `[n]`, integers in `[0, numClasses)`
 * @param labels true class per row `[n]`, integers in `[0, numClasses)`
 */
export function confusionMatrix(
  predictions: Labels,
  labels: Labels,
  numClasses: number,
): Int32Array {
  checkInt('confusionMatrix', 'numClasses', numClasses, 1);
  const y = checkLabels('confusionMatrix', 'labels', labels, labels.length, numClasses);
  const p = checkLabels('confusionMatrix', 'predictions', predictions, y.length, numClasses);
  const out = new Int32Array(numClasses * numClasses);
  for (let i = 0; i < y.length; i++) out[y[i]! * numClasses + p[i]!]!++;
  return out;
}

/**
 * Accuracy of each class: the diagonal of the confusion matrix over its row sums, `[numClasses]`;
 * `NaN` for a class with no labelled rows.
 */
export function perClassAccuracy(
  predictions: Labels,
  labels: Labels,
  numClasses: number,
): Float64Array {
  const cm = confusionMatrix(predictions, labels, numClasses);
  const out = new Float64Array(numClasses);
  for (let c = 0; c < numClasses; c++) {
    let total = 0;
    for (let p = 0; p < numClasses; p++) total += cm[c * numClasses + p]!;
    out[c] = total === 0 ? NaN : cm[c * numClasses + c]! / total;
  }
  return out;
}
