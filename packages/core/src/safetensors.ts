/**
 * Reading and writing the safetensors format (huggingface/safetensors): an 8-byte
 * little-endian header length, a JSON header `{name: {dtype, shape, data_offsets}}` with an
 * optional `__metadata__` string map, then the raw little-endian tensor bytes.
 * F32, F16 and BF16 are read as float32 tensors; I64/I32 as int32 values.
 */
import { closeSync, fsyncSync, openSync, readFileSync, renameSync, writeSync } from 'node:fs';
import { dirname } from 'node:path';
import { tf } from './tf.js';

/** A raw tensor as stored: dtype name, shape and its values widened to a JS typed array. */
export interface RawTensor {
  /** The dtype as the file names it. */
  dtype: 'F32' | 'F16' | 'BF16' | 'I64' | 'I32' | 'U8';
  /** The shape as stored (PyTorch's layout for a PyTorch file). */
  shape: number[];
  /** Float tensors as Float32Array; integer tensors as Int32Array (I64 must fit in 32 bits). */
  values: Float32Array | Int32Array;
}

/** A parsed safetensors file. */
export interface SafetensorsFile {
  /** The tensors by name, in the header's order. */
  tensors: Map<string, RawTensor>;
  /** The header's `__metadata__` strings; empty when it has none. */
  metadata: Record<string, string>;
}

const ELEMENT_BYTES: Record<RawTensor['dtype'], number> = {
  F32: 4,
  F16: 2,
  BF16: 2,
  I64: 8,
  I32: 4,
  U8: 1,
};

/** Largest header accepted, to refuse absurd declared lengths before allocating. */
const MAX_HEADER_BYTES = 100 * 1024 * 1024;

/** IEEE half -> float. */
export function halfToFloat(h: number): number {
  const sign = h & 0x8000 ? -1 : 1;
  const exp = (h >> 10) & 0x1f;
  const frac = h & 0x3ff;
  if (exp === 0) return sign * frac * 2 ** -24;
  if (exp === 31) return frac ? NaN : sign * Infinity;
  return sign * (1 + frac / 1024) * 2 ** (exp - 15);
}

const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);

/** float -> IEEE half, rounding to nearest even. */
export function floatToHalf(value: number): number {
  f32[0] = value;
  const x = u32[0]!;
  const sign = (x >>> 16) & 0x8000;
  const exp = (x >>> 23) & 0xff;
  let mant = x & 0x7fffff;
  if (exp === 0xff) return sign | 0x7c00 | (mant ? 0x200 : 0);
  let e = exp - 127 + 15;
  if (e >= 31) return sign | 0x7c00;
  if (e <= 0) {
    if (e < -10) return sign;
    mant |= 0x800000;
    const shift = 14 - e;
    let half = mant >> shift;
    const rem = mant & ((1 << shift) - 1);
    const mid = 1 << (shift - 1);
    if (rem > mid || (rem === mid && half & 1)) half++;
    return sign | half;
  }
  let half = (e << 10) | (mant >> 13);
  const rem = mant & 0x1fff;
  if (rem > 0x1000 || (rem === 0x1000 && half & 1)) half++;
  e = half >> 10;
  return sign | half;
}

/**
 * Parses a safetensors buffer. `source` names the file in error messages.
 * @throws on a short file, a bad header, an unknown dtype or offsets outside the data.
 */
export function parseSafetensors(buf: Uint8Array, source = '<buffer>'): SafetensorsFile {
  if (buf.byteLength < 8) {
    throw new Error(
      `safetensors ${source}: file is ${buf.byteLength} bytes, shorter than its header`,
    );
  }
  const view = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
  const headerLen = Number(view.getBigUint64(0, true));
  if (headerLen > MAX_HEADER_BYTES || 8 + headerLen > buf.byteLength) {
    throw new Error(
      `safetensors ${source}: header declares ${headerLen} bytes, file has ${buf.byteLength - 8}`,
    );
  }
  let header: unknown;
  try {
    header = JSON.parse(new TextDecoder().decode(buf.subarray(8, 8 + headerLen)));
  } catch (err) {
    throw new Error(`safetensors ${source}: header is not JSON (${(err as Error).message})`);
  }
  if (typeof header !== 'object' || header === null || Array.isArray(header)) {
    throw new Error(`safetensors ${source}: header is ${JSON.stringify(header)}, not an object`);
  }
  const data = buf.subarray(8 + headerLen);
  const tensors = new Map<string, RawTensor>();
  let metadata: Record<string, string> = {};
  for (const [name, entry] of Object.entries(header as Record<string, unknown>)) {
    if (name === '__metadata__') {
      if (typeof entry !== 'object' || entry === null || Array.isArray(entry)) {
        throw new Error(`safetensors ${source}: '__metadata__' is not an object of strings`);
      }
      metadata = entry as Record<string, string>;
      continue;
    }
    const e = checkEntry(entry, name, source);
    const dtype = e.dtype as RawTensor['dtype'];
    const bytes = ELEMENT_BYTES[dtype];
    if (bytes === undefined) {
      throw new Error(`safetensors ${source}: tensor '${name}' has unsupported dtype '${e.dtype}'`);
    }
    const [begin, end] = e.data_offsets;
    const count = e.shape.reduce((a, b) => a * b, 1);
    if (!(begin >= 0 && end <= data.byteLength && end - begin === count * bytes)) {
      throw new Error(
        `safetensors ${source}: tensor '${name}' offsets [${begin}, ${end}] do not fit ` +
          `shape [${e.shape}] of ${dtype} in ${data.byteLength} data bytes`,
      );
    }
    tensors.set(name, { dtype, shape: e.shape, values: decode(data, begin, count, dtype) });
  }
  return { tensors, metadata };
}

/** A header entry with its fields checked: dims and offsets non-negative safe integers. */
function checkEntry(
  entry: unknown,
  name: string,
  source: string,
): { dtype: string; shape: number[]; data_offsets: [number, number] } {
  const bad = (what: string) =>
    new Error(`safetensors ${source}: tensor '${name}' ${what} (entry ${JSON.stringify(entry)})`);
  if (typeof entry !== 'object' || entry === null || Array.isArray(entry)) {
    throw bad('is not an object');
  }
  const e = entry as Record<string, unknown>;
  const index = (v: unknown) => typeof v === 'number' && Number.isSafeInteger(v) && v >= 0;
  if (typeof e.dtype !== 'string') throw bad("has no string 'dtype'");
  if (!Array.isArray(e.shape) || !e.shape.every(index)) {
    throw bad("'shape' is not a list of integers >= 0");
  }
  const off = e.data_offsets;
  if (!Array.isArray(off) || off.length !== 2 || !off.every(index)) {
    throw bad("'data_offsets' is not a pair of integers >= 0");
  }
  return e as { dtype: string; shape: number[]; data_offsets: [number, number] };
}

function decode(
  data: Uint8Array,
  begin: number,
  count: number,
  dtype: RawTensor['dtype'],
): Float32Array | Int32Array {
  const view = new DataView(data.buffer, data.byteOffset + begin, count * ELEMENT_BYTES[dtype]);
  switch (dtype) {
    case 'F32': {
      const out = new Float32Array(count);
      for (let i = 0; i < count; i++) out[i] = view.getFloat32(4 * i, true);
      return out;
    }
    case 'F16': {
      const out = new Float32Array(count);
      for (let i = 0; i < count; i++) out[i] = halfToFloat(view.getUint16(2 * i, true));
      return out;
    }
    case 'BF16': {
      const out = new Float32Array(count);
      const tmp = new Uint32Array(out.buffer);
      for (let i = 0; i < count; i++) tmp[i] = view.getUint16(2 * i, true) << 16;
      return out;
    }
    case 'I64': {
      const out = new Int32Array(count);
      for (let i = 0; i < count; i++) out[i] = Number(view.getBigInt64(8 * i, true));
      return out;
    }
    case 'I32': {
      const out = new Int32Array(count);
      for (let i = 0; i < count; i++) out[i] = view.getInt32(4 * i, true);
      return out;
    }
    case 'U8':
      return Int32Array.from(data.subarray(begin, begin + count));
  }
}

/** Reads a safetensors file from disk. */
export function readSafetensors(path: string): SafetensorsFile {
  let buf: Buffer;
  try {
    buf = readFileSync(path);
  } catch (err) {
    throw new Error(`safetensors ${path}: cannot read (${(err as Error).message})`);
  }
  return parseSafetensors(buf, path);
}

/** A tensor to write: values and shape, stored as F32 or F16. */
export interface TensorToWrite {
  /** The shape to record; its product must equal `values.length`. */
  shape: number[];
  /** The values, row-major. */
  values: Float32Array | Int32Array;
  /** The stored dtype; default F32 for a Float32Array, I32 for an Int32Array. */
  dtype?: 'F32' | 'F16' | 'I32';
}

/** Serialises tensors (in the given order) and string metadata to a safetensors buffer. */
export function serializeSafetensors(
  tensors: Map<string, TensorToWrite>,
  metadata: Record<string, string> = {},
): Uint8Array {
  const header: Record<string, unknown> = {};
  if (Object.keys(metadata).length > 0) header.__metadata__ = metadata;
  let offset = 0;
  const plan: [TensorToWrite, number, 'F32' | 'F16' | 'I32'][] = [];
  for (const [name, t] of tensors) {
    const dtype = t.dtype ?? (t.values instanceof Int32Array ? 'I32' : 'F32');
    const bytes = ELEMENT_BYTES[dtype] * t.values.length;
    header[name] = { dtype, shape: t.shape, data_offsets: [offset, offset + bytes] };
    plan.push([t, offset, dtype]);
    offset += bytes;
  }
  let json = JSON.stringify(header);
  // Pad the header with spaces so the data starts 8-byte aligned.
  while ((8 + Buffer.byteLength(json)) % 8 !== 0) json += ' ';
  const headerBytes = new TextEncoder().encode(json);
  const out = new Uint8Array(8 + headerBytes.length + offset);
  const view = new DataView(out.buffer);
  view.setBigUint64(0, BigInt(headerBytes.length), true);
  out.set(headerBytes, 8);
  const base = 8 + headerBytes.length;
  for (const [t, off, dtype] of plan) {
    const v = t.values;
    for (let i = 0; i < v.length; i++) {
      const at = base + off + i * ELEMENT_BYTES[dtype];
      if (dtype === 'F32') view.setFloat32(at, v[i]!, true);
      else if (dtype === 'F16') view.setUint16(at, floatToHalf(v[i]!), true);
      else view.setInt32(at, v[i]!, true);
    }
  }
  return out;
}

/**
 * Writes a file atomically: a temporary file beside it, fsync, rename over the target,
 * fsync of the folder. A crash leaves either the old file or the new one, never half.
 */
export function writeFileAtomic(path: string, data: Uint8Array | string): void {
  const tmp = `${path}.tmp-${process.pid}`;
  const fd = openSync(tmp, 'w');
  try {
    writeSync(fd, typeof data === 'string' ? Buffer.from(data) : data);
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  renameSync(tmp, path);
  try {
    const dir = openSync(dirname(path), 'r');
    fsyncSync(dir);
    closeSync(dir);
  } catch {
    // Some file systems refuse fsync on folders; the rename is still atomic.
  }
}

/** Writes tensors to a safetensors file atomically. */
export function writeSafetensors(
  path: string,
  tensors: Map<string, TensorToWrite>,
  metadata: Record<string, string> = {},
): void {
  writeFileAtomic(path, serializeSafetensors(tensors, metadata));
}

/** Makes a tf tensor from a raw tensor (float32, or int32 for integer dtypes). */
export function rawToTensor(raw: RawTensor): tf.Tensor {
  return raw.values instanceof Int32Array
    ? tf.tensor(raw.values, raw.shape, 'int32')
    : tf.tensor(raw.values, raw.shape, 'float32');
}
