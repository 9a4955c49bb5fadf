/**
 * Tensors of a `.pth` file: a storage (the raw little-endian bytes of one `data/<key>` entry)
 * viewed through (storage offset, size, stride), as PyTorch's `_rebuild_tensor_v2` describes
 * it. Views are checked against their storage when they are built; values are decoded on
 * first use (so an unused optimizer state costs no decoding) into a contiguous row-major
 * array: Float32Array for floating dtypes, Int32Array for integer and bool dtypes.
 */
import type { RawTensor } from '../safetensors.js';
import { halfToFloat } from '../safetensors.js';
import { PthFormatError, PthUnsupportedError } from './errors.js';

/** The element types a `.pth` storage can hold that this reader decodes. */
export type PthDtype =
  'F64' | 'F32' | 'F16' | 'BF16' | 'I64' | 'I32' | 'I16' | 'I8' | 'U8' | 'BOOL';

/** Bytes per element of each dtype. */
export const PTH_ELEMENT_BYTES: Record<PthDtype, number> = {
  F64: 8,
  F32: 4,
  F16: 2,
  BF16: 2,
  I64: 8,
  I32: 4,
  I16: 2,
  I8: 1,
  U8: 1,
  BOOL: 1,
};

/**
 * The `RawTensor` dtype each stored dtype is reported as. `RawTensor` knows no F64, I16, I8
 * or BOOL; their values are widened the same way (F64 rounded to float32, the small integers
 * and bool to int32), and `PthTensor.storedDtype` keeps the original.
 */
const RAW_DTYPE: Record<PthDtype, RawTensor['dtype']> = {
  F64: 'F32',
  F32: 'F32',
  F16: 'F16',
  BF16: 'BF16',
  I64: 'I64',
  I32: 'I32',
  I16: 'I32',
  I8: 'I32',
  U8: 'U8',
  BOOL: 'I32',
};

/** Most elements one tensor may materialise (a stride-0 view can claim far more than its storage). */
export const MAX_TENSOR_ELEMENTS = 2 ** 28;

/** One storage of the file: the bytes of `<archive>/data/<key>` and their element type. */
export class PthStorage {
  constructor(
    /** The storage key, the name of its `data/<key>` entry. */
    readonly key: string,
    /** The element type, from the storage class (`torch.HalfStorage` -> F16). */
    readonly dtype: PthDtype,
    /** Raw little-endian bytes, `numel * PTH_ELEMENT_BYTES[dtype]` of them. */
    readonly bytes: Uint8Array,
    /** The device it was saved from, e.g. `cpu` or `cuda:0` (informational). */
    readonly location: string,
    /** The file it came from, for error messages. */
    readonly source: string,
  ) {}

  /** Number of elements. */
  get numel(): number {
    return this.bytes.byteLength / PTH_ELEMENT_BYTES[this.dtype];
  }
}

/**
 * A tensor read from a `.pth` file, usable wherever a `RawTensor` is (e.g.
 * `loadTorchStateDict`). `values` is decoded on first access and then kept.
 */
export class PthTensor implements RawTensor {
  /** The dtype as `RawTensor` names it (see `storedDtype` for F64, I16, I8 and BOOL). */
  readonly dtype: RawTensor['dtype'];
  private decoded: Float32Array | Int32Array | undefined;

  constructor(
    /** The storage this tensor views (shared by every view of it). */
    readonly storage: PthStorage,
    /** Offset of element [0, ..., 0] in the storage, in elements. */
    readonly storageOffset: number,
    /** Shape in PyTorch order, e.g. `[out, in, kh, kw]` for a convolution weight. */
    readonly shape: number[],
    /** Stride of each dimension, in elements. */
    readonly stride: number[],
    /** Whether it was saved as a `requires_grad` tensor or an `nn.Parameter`. */
    readonly requiresGrad = false,
  ) {
    this.dtype = RAW_DTYPE[storage.dtype];
  }

  /** The element type as stored in the file. */
  get storedDtype(): PthDtype {
    return this.storage.dtype;
  }

  /** Number of elements. */
  get numel(): number {
    return this.shape.reduce((a, b) => a * b, 1);
  }

  /**
   * The values, contiguous row-major in `shape`: Float32Array for floats, Int32Array
   * otherwise. Decoded on first access.
   * @throws PthUnsupportedError for an int64 value outside the int32 range.
   */
  get values(): Float32Array | Int32Array {
    this.decoded ??= decodeView(this);
    return this.decoded;
  }

  /** The same view as a `requires_grad` parameter (what `_rebuild_parameter` returns). */
  withRequiresGrad(requiresGrad: boolean): PthTensor {
    return new PthTensor(this.storage, this.storageOffset, this.shape, this.stride, requiresGrad);
  }
}

/**
 * Builds a tensor view, checking that every element it addresses lies in the storage.
 * @param offset position of the `_rebuild_tensor` call in `data.pkl`, for errors.
 */
export function rebuildTensor(
  storage: PthStorage,
  storageOffset: number,
  shape: number[],
  stride: number[],
  offset: number,
): PthTensor {
  const fail = (why: string): never => {
    throw new PthFormatError(
      storage.source,
      `tensor on storage '${storage.key}' (size [${shape}], stride [${stride}], offset ` +
        `${storageOffset}) ${why}`,
      offset,
    );
  };
  if (shape.length !== stride.length) fail('has as many strides as dimensions');
  let numel = 1;
  let last = storageOffset;
  for (let d = 0; d < shape.length; d++) {
    numel *= shape[d]!;
    last += (shape[d]! - 1) * stride[d]!;
  }
  if (numel > MAX_TENSOR_ELEMENTS) {
    throw new PthUnsupportedError(
      storage.source,
      `tensor on storage '${storage.key}' has ${numel} elements, more than the ` +
        `${MAX_TENSOR_ELEMENTS} this reader materialises`,
      offset,
    );
  }
  if (numel === 0 ? storageOffset > storage.numel : last >= storage.numel) {
    fail(`reaches element ${last} of a storage of ${storage.numel}`);
  }
  return new PthTensor(storage, storageOffset, shape, stride);
}

let halfTable: Float32Array | undefined;

/** float32 value of every IEEE half bit pattern, built once. */
function halves(): Float32Array {
  if (!halfTable) {
    halfTable = new Float32Array(65536);
    for (let h = 0; h < 65536; h++) halfTable[h] = halfToFloat(h);
  }
  return halfTable;
}

/** Decodes a view into a contiguous array, walking its strides. */
function decodeView(t: PthTensor): Float32Array | Int32Array {
  const { storage, shape, stride } = t;
  const bytes = storage.bytes;
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const numel = t.numel;
  const floating = t.dtype === 'F32' || t.dtype === 'F16' || t.dtype === 'BF16';
  const out = floating ? new Float32Array(numel) : new Int32Array(numel);
  const bits = new Uint32Array(out.buffer);
  const table = storage.dtype === 'F16' ? halves() : undefined;

  // Writes element `i` of the storage to slot `j` of the output.
  const copy: (j: number, i: number) => void = {
    F64: (j: number, i: number) => void (out[j] = view.getFloat64(8 * i, true)),
    F32: (j: number, i: number) => void (bits[j] = view.getUint32(4 * i, true)),
    F16: (j: number, i: number) => void (out[j] = table![view.getUint16(2 * i, true)]!),
    BF16: (j: number, i: number) => void (bits[j] = view.getUint16(2 * i, true) << 16),
    I64: (j: number, i: number) => {
      const low = view.getUint32(8 * i, true);
      const high = view.getInt32(8 * i + 4, true);
      // Fits in int32 exactly when the high word is the sign extension of the low one.
      if (high !== (low & 0x80000000 ? -1 : 0)) {
        throw new PthUnsupportedError(
          storage.source,
          `int64 storage '${storage.key}' holds ${view.getBigInt64(8 * i, true)} at element ` +
            `${i}, which does not fit in the int32 values this reader returns`,
        );
      }
      out[j] = low | 0;
    },
    I32: (j: number, i: number) => void (out[j] = view.getInt32(4 * i, true)),
    I16: (j: number, i: number) => void (out[j] = view.getInt16(2 * i, true)),
    I8: (j: number, i: number) => void (out[j] = view.getInt8(i)),
    U8: (j: number, i: number) => void (out[j] = bytes[i]!),
    BOOL: (j: number, i: number) => void (out[j] = bytes[i] ? 1 : 0),
  }[storage.dtype];

  if (isContiguous(shape, stride)) {
    for (let j = 0; j < numel; j++) copy(j, t.storageOffset + j);
    return out;
  }
  // Odometer over the indices, last dimension fastest; `at` is the storage element addressed.
  const index = new Array<number>(shape.length).fill(0);
  let at = t.storageOffset;
  for (let j = 0; j < numel; j++) {
    copy(j, at);
    for (let d = shape.length - 1; d >= 0; d--) {
      index[d]!++;
      at += stride[d]!;
      if (index[d]! < shape[d]!) break;
      at -= stride[d]! * shape[d]!;
      index[d] = 0;
    }
  }
  return out;
}

/** True when `stride` is the row-major stride of `shape` (dimensions of size 1 ignored). */
function isContiguous(shape: number[], stride: number[]): boolean {
  let expected = 1;
  for (let d = shape.length - 1; d >= 0; d--) {
    if (shape[d] !== 1 && stride[d] !== expected) return false;
    expected *= shape[d]!;
  }
  return true;
}
