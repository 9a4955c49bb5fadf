/**
 * The "formula weights" of the parity fixtures in fixtures/formula (see its README): every
 * convolution and linear weight and bias of a torchvision model is a closed formula of its
 * tensor number and flat index, evaluated here bit for bit as `make_formula_fixtures.py` does, so
 * only the BatchNorm tensors and the expected outputs are stored.
 */
import type { RawTensor } from '@disco/core';
import { readFixture, readFixtureJson } from './helpers.js';

/**
 * The formula's constants (the generator's, listed in meta.json). Each is odd, so multiplying
 * by it is a bijection of the 32-bit integers.
 */
export const FORMULA = {
  /** 2^32 / golden ratio, rounded to odd: the step between consecutive flat indices. */
  indexStep: 0x9e3779b9,
  /** Fractional bits of sqrt(5), rounded to odd: the step between tensor numbers. */
  tensorStep: 0x3c6ef373,
  /** Fractional bits of sqrt(2) and sqrt(3): the two multiply-xorshift mixing rounds. */
  mix: [0x6a09e667, 0xbb67ae85] as const,
  /** var(w) = gain / fanIn: He's gain 2 for weights (most feed a ReLU-like or a BatchNorm). */
  gainWeight: 2,
  gainBias: 1,
};

/**
 * The uniform number in (-1, 1) at flat index `i` of formula tensor number `t`: a 32-bit
 * integer hash (exact in both languages: `Math.imul` and `>>>` here, masked uint64 in numpy)
 * of `i * indexStep + t * tensorStep + 1`, read as `(x + 0.5) / 2^31 - 1` (exact in float64).
 */
export function formulaUniform(i: number, t: number): number {
  let x = (Math.imul(i, FORMULA.indexStep) + Math.imul(t, FORMULA.tensorStep) + 1) >>> 0;
  x ^= x >>> 15;
  x = Math.imul(x, FORMULA.mix[0]) >>> 0;
  x ^= x >>> 13;
  x = Math.imul(x, FORMULA.mix[1]) >>> 0;
  x = (x ^ (x >>> 16)) >>> 0;
  return (x + 0.5) / 2147483648 - 1;
}

/** `in_channels / groups * kh * kw` of a PyTorch conv weight, `in_features` of a linear one. */
export function fanIn(torchShape: readonly number[]): number {
  return torchShape.slice(1).reduce((a, b) => a * b, 1);
}

/**
 * Formula tensor number `t` in PyTorch layout, `torchShape` (row-major flat index `i`):
 * `w[i] = sqrt(3 gain / fanIn) * formulaUniform(i, t)` in float64, rounded to float32.
 */
export function formulaTensor(
  t: number,
  torchShape: readonly number[],
  fanInValue: number,
  gain: number,
): RawTensor {
  const n = torchShape.reduce((a, b) => a * b, 1);
  const scale = Math.sqrt((3 * gain) / fanInValue);
  const values = new Float32Array(n);
  for (let i = 0; i < n; i++) values[i] = scale * formulaUniform(i, t);
  return { dtype: 'F32', shape: [...torchShape], values };
}

/** One formula tensor of meta.json: state-dict name, torch shape, its last value (a check). */
export type FormulaEntry = [name: string, torchShape: number[], last: number];

/** One architecture's entry of fixtures/formula/meta.json. */
export interface FormulaCaseMeta {
  seed: number;
  bn_eps: number[];
  params_total: number;
  stage_rms: Record<string, number>;
  outputs: Record<string, { shape: number[]; max_abs: number; float32_vs_float64: number }>;
  /** Every conv / linear tensor in state-dict order; the position is the tensor number `t`. */
  formula_tensors: FormulaEntry[];
}

/** fixtures/formula/meta.json. */
export interface FormulaMeta {
  input: { file: string; key: string; shape_nhwc: number[] };
  archs: Record<string, FormulaCaseMeta>;
}

/** fixtures/formula/meta.json, parsed. */
export function readFormulaMeta(): FormulaMeta {
  return readFixtureJson<FormulaMeta>('formula/meta.json');
}

/**
 * The formula tensors of one case by state-dict name, in PyTorch layout, ready for core's
 * `loadTorchStateDict`. A bias takes the fan-in of the weight of the same layer.
 * @throws naming the case and the tensor when a bias has no weight listed before it.
 */
export function formulaStateDict(arch: string, entries: FormulaEntry[]): Map<string, RawTensor> {
  const shapes = new Map(entries.map(([name, shape]) => [name, shape]));
  const out = new Map<string, RawTensor>();
  entries.forEach(([name, shape], t) => {
    if (!name.endsWith('.bias')) {
      out.set(name, formulaTensor(t, shape, fanIn(shape), FORMULA.gainWeight));
      return;
    }
    const weight = shapes.get(name.replace(/bias$/, 'weight'));
    if (!weight) throw new Error(`formula/meta.json ${arch}: bias '${name}' has no weight listed`);
    out.set(name, formulaTensor(t, shape, fanIn(weight), FORMULA.gainBias));
  });
  return out;
}

/** The stored tensors of one case: BatchNorm state (F16, torchvision names) and F32 outputs. */
export function readFormulaCase(arch: string): {
  bn: Map<string, RawTensor>;
  expected: Map<string, RawTensor>;
} {
  return {
    bn: readFixture(`formula/${arch}/bn.safetensors`),
    expected: readFixture(`formula/${arch}/expected.safetensors`),
  };
}
