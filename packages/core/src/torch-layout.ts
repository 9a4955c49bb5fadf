/**
 * Conversion between PyTorch's tensor layouts and the tfjs layouts `Params` stores
 * (see `Layout`): convolution weights `[out, in, kh, kw]` <-> `[kh, kw, in, out]`,
 * depthwise `[c, 1, kh, kw]` <-> `[kh, kw, c, 1]`, linear `[out, in]` <-> `[in, out]`.
 */
import type { Layout, Params } from './params.js';
import type { RawTensor, TensorToWrite } from './safetensors.js';
import { rawToTensor } from './safetensors.js';
import { tf } from './tf.js';

const TO_TFJS: Record<Layout, number[] | null> = {
  conv2d: [2, 3, 1, 0],
  depthwise: [2, 3, 0, 1],
  linear: [1, 0],
  plain: null,
};
const TO_TORCH: Record<Layout, number[] | null> = {
  conv2d: [3, 2, 0, 1],
  depthwise: [2, 3, 0, 1],
  linear: [1, 0],
  plain: null,
};

/** The PyTorch shape of a tfjs-layout tensor of `shape` stored with `layout`. */
export function torchShape(shape: readonly number[], layout: Layout): number[] {
  const perm = TO_TORCH[layout];
  return perm ? perm.map((axis) => shape[axis]!) : [...shape];
}

/** A PyTorch-layout tensor converted to tfjs layout. */
export function fromTorchLayout(t: tf.Tensor, layout: Layout): tf.Tensor {
  const perm = TO_TFJS[layout];
  return perm ? tf.transpose(t, perm) : t.clone();
}

/** A tfjs-layout tensor converted to PyTorch layout. */
export function toTorchLayout(t: tf.Tensor, layout: Layout): tf.Tensor {
  const perm = TO_TORCH[layout];
  return perm ? tf.transpose(t, perm) : t.clone();
}

/**
 * Loads a PyTorch state dict (torchvision names, PyTorch layouts) into `params`.
 * Entries named `*.num_batches_tracked` are ignored; with `strict`, unknown or missing
 * names throw naming them. Returns the names that were loaded.
 */
export function loadTorchStateDict(
  params: Params,
  tensors: Map<string, RawTensor>,
  opts: { strict?: boolean; source?: string } = {},
): string[] {
  const where = opts.source ?? '<state dict>';
  const strict = opts.strict ?? true;
  const loaded: string[] = [];
  const values = new Map<string, tf.Tensor>();
  try {
    for (const [name, raw] of tensors) {
      if (name.endsWith('num_batches_tracked')) continue;
      if (!params.has(name)) {
        if (strict) throw new Error(`loadTorchStateDict ${where}: unexpected tensor '${name}'`);
        continue;
      }
      const t = rawToTensor(raw);
      values.set(name, fromTorchLayout(t, params.layout(name)));
      t.dispose();
      loaded.push(name);
    }
    params.load(values, { strict, source: where });
  } finally {
    for (const t of values.values()) t.dispose();
  }
  return loaded;
}

/** The params as a PyTorch state dict ready for `writeSafetensors` (names unchanged). */
export function toTorchStateDict(
  params: Params,
  opts: { dtype?: 'F32' | 'F16' } = {},
): Map<string, TensorToWrite> {
  const out = new Map<string, TensorToWrite>();
  for (const name of params.names()) {
    const t = toTorchLayout(params.get(name), params.layout(name));
    out.set(name, {
      shape: t.shape,
      values: t.dataSync() as Float32Array,
      dtype: opts.dtype ?? 'F32',
    });
    t.dispose();
  }
  return out;
}
