/**
 * Inputs shared by the evaluators: feature matrices given as row-major floats or tensors,
 * integer class labels, positive sizes. Each check throws an Error that names the calling
 * function, the rule and the value received.
 */
import { tf } from '@disco/core';

/** A feature matrix `[n, dim]`: row-major floats (as `extractFeatures` returns) or a tensor. */
export type FeatureMatrix = Float32Array | tf.Tensor2D;

/** Class labels, one integer in `[0, numClasses)` per row. */
export type Labels = ArrayLike<number>;

/** Throws unless `value` is an integer >= `min`. */
export function checkInt(fn: string, name: string, value: number, min: number): void {
  if (!Number.isInteger(value) || value < min) {
    throw new Error(`${fn}: ${name} must be an integer >= ${min}, got ${value}`);
  }
}

/** Throws unless `value` is a finite number > 0. */
export function checkPositive(fn: string, name: string, value: number): void {
  if (!Number.isFinite(value) || value <= 0) {
    throw new Error(`${fn}: ${name} must be a finite number > 0, got ${value}`);
  }
}

/** Throws unless `labels` has `count` integers in `[0, numClasses)`; returns them as Int32Array. */
export function checkLabels(
  fn: string,
  name: string,
  labels: Labels,
  count: number,
  numClasses: number,
): Int32Array {
  if (labels.length !== count) {
    throw new Error(`${fn}: ${name} must have one label per row (${count}), got ${labels.length}`);
  }
  const out = new Int32Array(count);
  for (let i = 0; i < count; i++) {
    const y = labels[i]!;
    if (!Number.isInteger(y) || y < 0 || y >= numClasses) {
      throw new Error(
        `${fn}: ${name}[${i}] must be an integer class in [0, ${numClasses}), got ${y}`,
      );
    }
    out[i] = y;
  }
  return out;
}

/** Rows and width of a feature matrix; a flat array needs `dim` to be read as a matrix. */
export function featureShape(
  fn: string,
  name: string,
  features: FeatureMatrix,
  dim: number,
): number {
  if (features instanceof Float32Array) {
    if (features.length % dim !== 0) {
      throw new Error(
        `${fn}: ${name} has ${features.length} values, not a whole number of rows of dim ${dim}`,
      );
    }
    return features.length / dim;
  }
  if (features.rank !== 2 || features.shape[1] !== dim) {
    throw new Error(`${fn}: ${name} must be a tensor [n, ${dim}], got [${features.shape}]`);
  }
  return features.shape[0];
}

/**
 * The feature width: the tensor's second axis, or `features.length / rows` for a flat array
 * (checked against an explicit `dim` when one is given).
 */
export function inferDim(
  fn: string,
  name: string,
  features: FeatureMatrix,
  rows: number,
  dim?: number,
): number {
  if (dim !== undefined) checkInt(fn, 'dim', dim, 1);
  let found: number;
  if (features instanceof Float32Array) {
    if (rows === 0 || features.length % rows !== 0) {
      throw new Error(
        `${fn}: ${name} has ${features.length} values, ` +
          `not a whole number per label (${rows} labels)`,
      );
    }
    found = features.length / rows;
  } else {
    if (features.rank !== 2) {
      throw new Error(`${fn}: ${name} must be a tensor [n, dim], got [${features.shape}]`);
    }
    if (features.shape[0] !== rows) {
      throw new Error(`${fn}: ${name} has ${features.shape[0]} rows but there are ${rows} labels`);
    }
    found = features.shape[1];
  }
  if (found < 1) throw new Error(`${fn}: ${name} has no feature columns`);
  if (dim !== undefined && found !== dim) {
    throw new Error(`${fn}: ${name} has dim ${found}, but dim ${dim} was given`);
  }
  return found;
}

/** The matrix as a tensor `[rows, dim]`: a new one for a flat array, else the caller's own. */
export function asTensor(features: FeatureMatrix, rows: number, dim: number): tf.Tensor2D {
  return features instanceof Float32Array ? tf.tensor2d(features, [rows, dim]) : features;
}

/** The rows of a feature matrix as a Float32Array (the caller's own array, or a download). */
export async function readRows(features: FeatureMatrix): Promise<Float32Array> {
  return features instanceof Float32Array ? features : ((await features.data()) as Float32Array);
}
