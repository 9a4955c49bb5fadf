/**
 * IDX reader: the array file format of MNIST and Fashion-MNIST (LeCun et al.,
 * http://yann.lecun.com/exdb/mnist/). A file is a 4-byte magic (two zero bytes, a type code,
 * the number of dimensions), one big-endian uint32 per dimension, then the values in row-major
 * order, big-endian. Files may be gzipped (detected by the gzip magic 1f 8b).
 */
import { readFileSync } from 'node:fs';
import { gunzipSync } from 'node:zlib';

/** The element types IDX knows, by type code. */
const IDX_TYPES = {
  0x08: { dtype: 'uint8', bytes: 1 },
  0x09: { dtype: 'int8', bytes: 1 },
  0x0b: { dtype: 'int16', bytes: 2 },
  0x0c: { dtype: 'int32', bytes: 4 },
  0x0d: { dtype: 'float32', bytes: 4 },
  0x0e: { dtype: 'float64', bytes: 8 },
} as const;

/** One IDX array of element type `D`, its values in the typed array `A`. */
export interface IdxOf<D extends string, A> {
  /** The element type declared in the header. */
  dtype: D;
  /** Dimensions as declared in the header, e.g. `[60000, 28, 28]` for MNIST images. */
  shape: number[];
  /** The values in row-major order, in host byte order. */
  data: A;
}

/** One IDX array; `dtype` tells which typed array `data` is. */
export type IdxArray =
  | IdxOf<'uint8', Uint8Array>
  | IdxOf<'int8', Int8Array>
  | IdxOf<'int16', Int16Array>
  | IdxOf<'int32', Int32Array>
  | IdxOf<'float32', Float32Array>
  | IdxOf<'float64', Float64Array>;

/** The element type names of `IdxArray`. */
export type IdxDtype = IdxArray['dtype'];

/** Limits of `readIdx` and `parseIdx`. */
export interface ReadIdxOptions {
  /**
   * The largest decompressed size accepted, in bytes (default 2 GiB). Guards against a
   * corrupt header or a gzip bomb asking for more memory than the machine has.
   */
  maxBytes?: number;
}

const DEFAULT_MAX_BYTES = 2 ** 31;

/**
 * Reads an IDX file, gzipped or plain.
 * @param path the file, e.g. `train-images-idx3-ubyte.gz`.
 * @returns the header's shape and the values; for MNIST images `shape` is `[N, 28, 28]`.
 * @throws when the file cannot be read or decompressed, or is not a valid IDX file (see
 *   `parseIdx`); the message names the file.
 */
export function readIdx(path: string, opts: ReadIdxOptions = {}): IdxArray {
  const maxBytes = opts.maxBytes ?? DEFAULT_MAX_BYTES;
  if (!(maxBytes > 0)) {
    throw new Error(`readIdx: maxBytes must be a positive number, got ${maxBytes}`);
  }
  let raw: Buffer;
  try {
    raw = readFileSync(path);
  } catch (err) {
    throw new Error(`readIdx: cannot read IDX file ${path}: ${(err as Error).message}`);
  }
  let bytes: Uint8Array = raw;
  if (raw.length >= 2 && raw[0] === 0x1f && raw[1] === 0x8b) {
    try {
      bytes = gunzipSync(raw, { maxOutputLength: maxBytes });
    } catch (err) {
      throw new Error(
        `readIdx: cannot decompress gzipped IDX file ${path} ` +
          `(truncated, corrupt or larger than ${maxBytes} bytes): ${(err as Error).message}`,
      );
    }
  }
  return parseIdx(bytes, path, opts);
}

/**
 * Parses IDX bytes (already decompressed).
 * @param bytes the whole file.
 * @param name how errors refer to the data, usually its path.
 * @throws when the magic is wrong (nonzero first bytes, unknown type code, no dimensions), when
 *   the declared size is absurd (over `maxBytes`), or when the byte count does not match the
 *   header (a truncated file or trailing bytes); the message gives both byte counts.
 */
export function parseIdx(bytes: Uint8Array, name: string, opts: ReadIdxOptions = {}): IdxArray {
  const maxBytes = opts.maxBytes ?? DEFAULT_MAX_BYTES;
  if (bytes.length < 4) {
    throw new Error(`parseIdx: ${name} is too short for an IDX header: ${bytes.length} bytes`);
  }
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const code = bytes[2]!;
  const ndim = bytes[3]!;
  const type = IDX_TYPES[code as keyof typeof IDX_TYPES];
  if (bytes[0] !== 0 || bytes[1] !== 0 || type === undefined || ndim === 0) {
    const magic = [...bytes.subarray(0, 4)].map((b) => b.toString(16).padStart(2, '0'));
    throw new Error(
      `parseIdx: ${name} is not an IDX file: magic must be 00 00 <type 08|09|0b|0c|0d|0e> ` +
        `<ndim >= 1>, got ${magic.join(' ')}`,
    );
  }

  const headerBytes = 4 + 4 * ndim;
  if (bytes.length < headerBytes) {
    throw new Error(
      `parseIdx: ${name} is truncated: the header of ${ndim} dimensions needs ` +
        `${headerBytes} bytes, the file holds ${bytes.length}`,
    );
  }
  const shape: number[] = [];
  for (let d = 0; d < ndim; d++) shape.push(view.getUint32(4 + 4 * d, false));
  const count = shape.reduce((a, b) => a * b, 1);
  const dataBytes = count * type.bytes;
  if (dataBytes > maxBytes) {
    throw new Error(
      `parseIdx: ${name} declares shape [${shape.join(', ')}] of ${type.dtype}, ` +
        `${dataBytes} bytes, over the limit of ${maxBytes} bytes`,
    );
  }
  const expected = headerBytes + dataBytes;
  if (bytes.length !== expected) {
    const what = bytes.length < expected ? 'is truncated' : 'has trailing bytes';
    throw new Error(
      `parseIdx: ${name} ${what}: header declares shape [${shape.join(', ')}] of ` +
        `${type.dtype}, expected ${expected} bytes, actual ${bytes.length} bytes`,
    );
  }

  const body = bytes.subarray(headerBytes);
  switch (type.dtype) {
    case 'uint8':
      return { dtype: 'uint8', shape, data: body.slice() };
    case 'int8':
      return {
        dtype: 'int8',
        shape,
        data: new Int8Array(body.buffer, body.byteOffset, count).slice(),
      };
    case 'int16': {
      const data = new Int16Array(count);
      for (let i = 0; i < count; i++) data[i] = view.getInt16(headerBytes + 2 * i, false);
      return { dtype: 'int16', shape, data };
    }
    case 'int32': {
      const data = new Int32Array(count);
      for (let i = 0; i < count; i++) data[i] = view.getInt32(headerBytes + 4 * i, false);
      return { dtype: 'int32', shape, data };
    }
    case 'float32': {
      const data = new Float32Array(count);
      for (let i = 0; i < count; i++) data[i] = view.getFloat32(headerBytes + 4 * i, false);
      return { dtype: 'float32', shape, data };
    }
    case 'float64': {
      const data = new Float64Array(count);
      for (let i = 0; i < count; i++) data[i] = view.getFloat64(headerBytes + 8 * i, false);
      return { dtype: 'float64', shape, data };
    }
  }
}
