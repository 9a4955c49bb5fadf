/**
 * Test helpers: reading the PyTorch reference fixtures (see fixtures/README.md) and comparing
 * tensors against them.
 */
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { rawToTensor, readSafetensors, tf } from '@disco/core';
import type { Layout, RawTensor } from '@disco/core';

/** Absolute path of a file under test/fixtures. */
export function fixturePath(relative: string): string {
  return fileURLToPath(new URL(`./fixtures/${relative}`, import.meta.url));
}

/** The tensors of a fixture safetensors file. */
export function readFixture(relative: string): Map<string, RawTensor> {
  return readSafetensors(fixturePath(relative)).tensors;
}

/** A fixture JSON file, parsed. */
export function readFixtureJson<T>(relative: string): T {
  return JSON.parse(readFileSync(fixturePath(relative), 'utf8')) as T;
}

/** One tensor of a fixture file as a tf tensor; throws naming it when absent. */
export function fixtureTensor(tensors: Map<string, RawTensor>, name: string): tf.Tensor {
  const raw = tensors.get(name);
  if (!raw) throw new Error(`fixture has no tensor '${name}'`);
  return rawToTensor(raw);
}

/** max |a - b| over all elements, checking shapes first. */
export function maxAbsDiff(a: tf.Tensor, b: tf.Tensor): number {
  if (!tf.util.arraysEqual(a.shape, b.shape)) {
    throw new Error(`maxAbsDiff: shapes differ, [${a.shape}] vs [${b.shape}]`);
  }
  return tf.tidy(() => tf.max(tf.abs(tf.sub(a, b))).dataSync()[0]!);
}

/** max |t| over all elements. */
export function maxAbs(t: tf.Tensor): number {
  return tf.tidy(() => tf.max(tf.abs(t)).dataSync()[0]!);
}

/** The PyTorch shape of a tensor stored in tfjs layout (no data moved). */
export function torchShape(shape: number[], layout: Layout): number[] {
  const [a, b, c, d] = shape;
  switch (layout) {
    case 'conv2d':
      return [d!, c!, a!, b!];
    case 'depthwise':
      return [c!, d!, a!, b!];
    case 'linear':
      return [b!, a!];
    case 'plain':
      return shape;
  }
}
