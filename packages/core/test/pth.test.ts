/**
 * The `.pth` reader against PyTorch's own files (test/fixtures/pth, see its README and
 * make_fixtures.py): the MobileNetV3 state dict and MoCo checkpoint must give exactly the
 * tensors of the safetensors copy of the same weights, every dtype and view of `mixed.pth`
 * its hand-known values, and every malformed or hostile input a typed error.
 */
import { existsSync, readFileSync, statSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { describe, expect, it, vi } from 'vitest';
import {
  Params,
  PthError,
  PthForbiddenGlobalError,
  PthFormatError,
  PthGlobal,
  PthStateDictError,
  PthTensor,
  PthUnsupportedError,
  extractStateDict,
  loadTorchStateDict,
  parsePth,
  readPth,
  readSafetensors,
  tf,
  type PthValue,
  type RawTensor,
} from '@disco/core';
import { TorchPolicy } from '../src/pth/torch-policy.js';
import { crc32 } from '../src/pth/zip.js';

const fixture = (name: string): string =>
  fileURLToPath(new URL(`./fixtures/pth/${name}`, import.meta.url));
// The same MobileNetV3-Small weights as F16 safetensors (the backbones parity fixture).
const SAFETENSORS = fileURLToPath(
  new URL('../../backbones/test/fixtures/mobilenet_v3_small/', import.meta.url),
);

/** True when both tensors have the same dtype, shape and bit-identical values. */
function sameTensor(a: RawTensor, b: RawTensor): boolean {
  if (a.dtype !== b.dtype || a.shape.join() !== b.shape.join()) return false;
  if (a.values.constructor !== b.values.constructor) return false;
  const bytes = (v: Float32Array | Int32Array) => Buffer.from(v.buffer, v.byteOffset, v.byteLength);
  return bytes(a.values).equals(bytes(b.values));
}

function expectSameTensors(actual: Map<string, RawTensor>, expected: Map<string, RawTensor>) {
  expect([...actual.keys()].sort()).toEqual([...expected.keys()].sort());
  const differing = [...expected].filter(([name, t]) => !sameTensor(actual.get(name)!, t));
  expect(differing.map(([name]) => name)).toEqual([]);
}

/** The tree as plain data (tensors as dtype/shape/values), to compare two readings. */
function plain(v: PthValue): unknown {
  if (v instanceof PthTensor)
    return { dtype: v.storedDtype, shape: v.shape, values: [...v.values] };
  if (v instanceof PthGlobal) return `global ${v.qualname}`;
  if (v instanceof Map) return [...v].map(([k, x]) => [plain(k), plain(x)]);
  if (v instanceof Set) return { set: [...v].map(plain) };
  if (Array.isArray(v)) return v.map(plain);
  if (v instanceof Uint8Array) return { bytes: [...v] };
  if (typeof v === 'bigint') return `${v}n`;
  if (typeof v === 'object' && v !== null) return Object.entries(v).map(([k, x]) => [k, plain(x)]);
  return v;
}

function get(v: PthValue, ...path: (string | number)[]): PthValue {
  for (const key of path) v = (v as Map<PthValue, PthValue>).get(key)!;
  return v;
}

// --- Building test inputs: a pickle assembler and a ZIP writer -------------------------

type Part = number | string | Uint8Array | Part[];
const enc = new TextEncoder();

/** Concatenates opcodes: numbers are bytes, strings are latin-1 text, arrays nest. */
function bytesOf(...parts: Part[]): Uint8Array {
  const out: number[] = [];
  const add = (p: Part): void => {
    if (typeof p === 'number') out.push(p);
    else if (typeof p === 'string') for (const c of p) out.push(c.charCodeAt(0));
    else if (p instanceof Uint8Array) out.push(...p);
    else p.forEach(add);
  };
  parts.forEach(add);
  return Uint8Array.from(out);
}
const u32 = (n: number): number[] => [n & 0xff, (n >>> 8) & 0xff, (n >>> 16) & 0xff, n >>> 24];
const BINUNICODE = (s: string): Part => [0x58, u32(enc.encode(s).length), enc.encode(s)];
const GLOBAL = (module: string, name: string): Part => ['c', module, '\n', name, '\n'];
const INT = (n: number): Part => (n >= 0 && n < 256 ? [0x4b, n] : [0x4a, u32(n)]);
const TUPLE = (...items: Part[]): Part => [0x28, items, 0x74];
const PROTO2 = [0x80, 2];
const STOP = 0x2e;
const EMPTY_DICT = 0x7d;
const EMPTY_LIST = 0x5d;
const SETITEM = 0x73;
const APPEND = 0x61;
const REDUCE = 0x52;
/** `_rebuild_tensor_v2(storage key, offset, size, stride)` over a FloatStorage of `numel`. */
const TENSOR = (key: string, numel: number, offset: number, size: number[], stride: number[]) => [
  GLOBAL('torch._utils', '_rebuild_tensor_v2'),
  TUPLE(
    [
      TUPLE(
        BINUNICODE('storage'),
        GLOBAL('torch', 'FloatStorage'),
        BINUNICODE(key),
        BINUNICODE('cpu'),
        INT(numel),
      ),
      0x51,
    ],
    INT(offset),
    TUPLE(...size.map(INT)),
    TUPLE(...stride.map(INT)),
    0x89,
    [GLOBAL('collections', 'OrderedDict'), 0x29, REDUCE],
  ),
  REDUCE,
];
/** `{name: value}` pickled. */
const DICT1 = (name: string, value: Part): Uint8Array =>
  bytesOf(PROTO2, EMPTY_DICT, BINUNICODE(name), value, SETITEM, STOP);

/** A ZIP of stored entries, optionally with ZIP64 records and extra fields throughout. */
function makeZip(entries: [string, Uint8Array][], opts: { zip64?: boolean } = {}): Uint8Array {
  const chunks: Uint8Array[] = [];
  const central: Uint8Array[] = [];
  let offset = 0;
  for (const [name, data] of entries) {
    const nameBytes = enc.encode(name);
    const local = Buffer.alloc(30);
    local.writeUInt32LE(0x04034b50, 0);
    local.writeUInt16LE(20, 4);
    local.writeUInt32LE(crc32(data), 14);
    local.writeUInt32LE(data.length, 18);
    local.writeUInt32LE(data.length, 22);
    local.writeUInt16LE(nameBytes.length, 26);
    const extra = Buffer.alloc(opts.zip64 ? 28 : 0);
    if (opts.zip64) {
      extra.writeUInt16LE(1, 0);
      extra.writeUInt16LE(24, 2);
      extra.writeBigUInt64LE(BigInt(data.length), 4);
      extra.writeBigUInt64LE(BigInt(data.length), 12);
      extra.writeBigUInt64LE(BigInt(offset), 20);
    }
    const dir = Buffer.alloc(46);
    dir.writeUInt32LE(0x02014b50, 0);
    dir.writeUInt16LE(45, 4);
    dir.writeUInt16LE(45, 6);
    dir.writeUInt32LE(crc32(data), 16);
    dir.writeUInt32LE(opts.zip64 ? 0xffffffff : data.length, 20);
    dir.writeUInt32LE(opts.zip64 ? 0xffffffff : data.length, 24);
    dir.writeUInt16LE(nameBytes.length, 28);
    dir.writeUInt16LE(extra.length, 30);
    dir.writeUInt32LE(opts.zip64 ? 0xffffffff : offset, 42);
    central.push(dir, nameBytes, extra);
    chunks.push(local, nameBytes, data);
    offset += 30 + nameBytes.length + data.length;
  }
  const dirBytes = Buffer.concat(central);
  const tail: Buffer[] = [];
  if (opts.zip64) {
    const end64 = Buffer.alloc(56);
    end64.writeUInt32LE(0x06064b50, 0);
    end64.writeBigUInt64LE(44n, 4);
    end64.writeBigUInt64LE(BigInt(entries.length), 24);
    end64.writeBigUInt64LE(BigInt(entries.length), 32);
    end64.writeBigUInt64LE(BigInt(dirBytes.length), 40);
    end64.writeBigUInt64LE(BigInt(offset), 48);
    const locator = Buffer.alloc(20);
    locator.writeUInt32LE(0x07064b50, 0);
    locator.writeBigUInt64LE(BigInt(offset + dirBytes.length), 8);
    locator.writeUInt32LE(1, 16);
    tail.push(end64, locator);
  }
  const eocd = Buffer.alloc(22);
  eocd.writeUInt32LE(0x06054b50, 0);
  eocd.writeUInt16LE(opts.zip64 ? 0xffff : entries.length, 8);
  eocd.writeUInt16LE(opts.zip64 ? 0xffff : entries.length, 10);
  eocd.writeUInt32LE(opts.zip64 ? 0xffffffff : dirBytes.length, 12);
  eocd.writeUInt32LE(opts.zip64 ? 0xffffffff : offset, 16);
  return Buffer.concat([...chunks, dirBytes, ...tail, eocd]);
}

/** A torch.save-shaped archive around `pickle`, with float32 storages by key. */
function torchZip(pickle: Uint8Array, storages: Record<string, number[]> = {}): Uint8Array {
  return makeZip([
    ['archive/data.pkl', pickle],
    ...Object.entries(storages).map(([key, values]): [string, Uint8Array] => [
      `archive/data/${key}`,
      new Uint8Array(Float32Array.from(values).buffer),
    ]),
    ['archive/version', enc.encode('3\n')],
  ]);
}

/** The entries of a fixture's zip, for rebuilding it changed. */
function entriesOf(file: string): [string, Uint8Array][] {
  const buf = readFileSync(fixture(file));
  const out: [string, Uint8Array][] = [];
  let at = buf.length - 22;
  while (buf.readUInt32LE(at) !== 0x06054b50) at--;
  let dir = buf.readUInt32LE(at + 16);
  for (let i = buf.readUInt16LE(at + 10); i > 0; i--) {
    const nameLen = buf.readUInt16LE(dir + 28);
    const size = buf.readUInt32LE(dir + 24);
    const local = buf.readUInt32LE(dir + 42);
    const start = local + 30 + buf.readUInt16LE(local + 26) + buf.readUInt16LE(local + 28);
    out.push([
      buf.toString('utf8', dir + 46, dir + 46 + nameLen),
      buf.subarray(start, start + size),
    ]);
    dir += 46 + nameLen + buf.readUInt16LE(dir + 30) + buf.readUInt16LE(dir + 32);
  }
  return out;
}

/** Parses `buf` and decodes every tensor; returns the error thrown, if any. */
function outcome(buf: Uint8Array, verifyCrc = true): unknown {
  try {
    const file = parsePth(buf, { source: 'mutant.pth', verifyCrc });
    const seen = new Set<unknown>();
    const visit = (v: unknown): void => {
      if (typeof v !== 'object' || v === null || seen.has(v)) return;
      seen.add(v);
      if (v instanceof PthTensor) void v.values;
      else if (v instanceof Map) {
        for (const [k, x] of v) {
          visit(k);
          visit(x);
        }
      } else if (v instanceof Set || Array.isArray(v)) for (const x of v) visit(x);
      else if (!ArrayBuffer.isView(v)) for (const x of Object.values(v)) visit(x);
    };
    visit(file.root);
    return undefined;
  } catch (err) {
    return err;
  }
}

// --- The tests ---------------------------------------------------------------------------

describe('readPth on PyTorch files', () => {
  const weights = readSafetensors(`${SAFETENSORS}weights.safetensors`).tensors;

  it('reads the torch.save(state_dict) of MobileNetV3-Small bit-identical to its safetensors', () => {
    const file = readPth(fixture('mobilenet_v3_small.state_dict.pth'));
    expect(file.archive).toBe('mobilenet_v3_small.state_dict');
    expect(file.version).toBe('3');
    const sd = extractStateDict(file);
    expect(sd.prefix).toBe('');
    expect(sd.location).toBe('');
    expect(sd.dropped).toEqual([]);
    expect(sd.tensors.size).toBe(244);
    expectSameTensors(sd.tensors, weights);
    // num_batches_tracked buffers stay, as I64 scalars.
    const tracked = sd.tensors.get('features.0.1.num_batches_tracked')!;
    expect([tracked.dtype, tracked.shape, tracked.values.constructor]).toEqual([
      'I64',
      [],
      Int32Array,
    ]);
  });

  it('finds the state dict of a MoCo checkpoint, strips module.encoder_q. and keeps epoch/arch', () => {
    const file = readPth(fixture('mobilenet_v3_small.moco_checkpoint.pth.tar'));
    expect(get(file.root, 'epoch')).toBe(200);
    expect(get(file.root, 'arch')).toBe('mobilenet_v3_small');
    expect(plain(get(file.root, 'optimizer', 'param_groups'))).toEqual([
      [
        ['lr', 0],
        ['momentum', 0.9],
      ],
    ]);
    const sd = extractStateDict(file);
    expect(sd.prefix).toBe('module.encoder_q.');
    expect(sd.location).toBe('state_dict');
    expectSameTensors(sd.tensors, weights);
  });

  it('reads the float32 pooled features as torch.load does, close to expected.safetensors', () => {
    const pooled = get(readPth(fixture('mobilenet_v3_small.expected_pooled.pth')).root, 'pooled');
    expect(pooled).toBeInstanceOf(PthTensor);
    const { shape } = pooled as PthTensor;
    const values = [...(pooled as PthTensor).values];
    expect(shape).toEqual([2, 576]);
    // Values and float64 sum printed by torch.load of the same file.
    expect([values[0], values[1], values[576 + 575], values[576 + 300]]).toEqual([
      -0.2198607325553894, 0.6430610418319702, 0.1598110795021057, -0.23642149567604065,
    ]);
    expect(values.reduce((a, b) => a + b, 0)).toBeCloseTo(196.29174951370806, 9);
    // The safetensors reference comes from another forward pass: equal to float32 rounding.
    const expected = readSafetensors(`${SAFETENSORS}expected.safetensors`).tensors.get('pooled')!;
    const gap = values.reduce((m, v, i) => Math.max(m, Math.abs(v - expected.values[i]!)), 0);
    expect(gap).toBeLessThan(1e-5);
  });

  it('hands its tensors to loadTorchStateDict in PyTorch layout', () => {
    const { tensors } = extractStateDict(readPth(fixture('mobilenet_v3_small.state_dict.pth')));
    const params = new Params();
    params.add('features.0.0.weight', tf.zeros([3, 3, 3, 16]), { layout: 'conv2d' });
    params.add('classifier.3.bias', tf.zeros([1000]));
    const loaded = loadTorchStateDict(params, tensors, { strict: false });
    expect(loaded).toEqual(['features.0.0.weight', 'classifier.3.bias']);
    // torch [out=16, in=3, kh=3, kw=3] -> tfjs [kh, kw, in, out]: w[o,i,h,x] lands at [h,x,i,o].
    const torch = weights.get('features.0.0.weight')!.values;
    const tfjs = params.get('features.0.0.weight').dataSync();
    expect(tfjs[((2 * 3 + 1) * 3 + 0) * 16 + 5]).toBe(torch[((5 * 3 + 0) * 3 + 2) * 3 + 1]);
    expect(params.get('classifier.3.bias').dataSync()[999]).toBe(
      weights.get('classifier.3.bias')!.values[999],
    );
    params.dispose();
  });
});

describe('readPth on every dtype, view and Python value (mixed.pth)', () => {
  const file = readPth(fixture('mixed.pth'));
  const t = (name: string) => get(file.root, name) as PthTensor;
  const base = Array.from({ length: 24 }, (_, i) => i / 8); // torch.arange(24).reshape(4, 6) / 8

  it('widens each dtype to float32 or int32', () => {
    const cases: [string, string, string, number[], number[]][] = [
      ['f32', 'F32', 'F32', [2, 2], [1.5, -2.25, 3, 0.125]],
      ['f16', 'F16', 'F16', [3], [0.5, -65504, 2 ** -24]],
      ['bf16', 'BF16', 'BF16', [3], [1, -0.5, 3.140625]],
      ['f64', 'F64', 'F32', [3], [0.25, -2, Infinity]], // 1e300 overflows float32
      ['i64', 'I64', 'I64', [4], [-(2 ** 31), 2 ** 31 - 1, 0, 7]],
      ['i32', 'I32', 'I32', [2], [-5, 6]],
      ['i16', 'I16', 'I32', [2], [-32768, 32767]],
      ['i8', 'I8', 'I32', [2], [-128, 127]],
      ['u8', 'U8', 'U8', [2], [0, 255]],
      ['bool', 'BOOL', 'I32', [3], [1, 0, 1]],
      ['scalar', 'I64', 'I64', [], [42]],
    ];
    for (const [name, stored, dtype, shape, values] of cases) {
      const x = t(name);
      expect([name, x.storedDtype, x.dtype, x.shape, [...x.values]]).toEqual([
        name,
        stored,
        dtype,
        shape,
        values,
      ]);
      expect(x.values).toBeInstanceOf(
        dtype.startsWith('F') || dtype === 'BF16' ? Float32Array : Int32Array,
      );
    }
  });

  it('materialises transposed, sliced, broadcast and empty views through their strides', () => {
    expect([...t('base').values]).toEqual(base);
    const transposed = t('transposed');
    expect([transposed.shape, transposed.stride]).toEqual([
      [6, 4],
      [1, 6],
    ]);
    expect([...transposed.values]).toEqual(
      Array.from({ length: 24 }, (_, k) => base[(k % 4) * 6 + Math.floor(k / 4)]),
    );
    const sliced = t('sliced'); // base[1:, ::2]
    expect([sliced.shape, sliced.stride, sliced.storageOffset]).toEqual([[3, 3], [6, 2], 6]);
    expect([...sliced.values]).toEqual([0.75, 1, 1.25, 1.5, 1.75, 2, 2.25, 2.5, 2.75]);
    expect([t('expanded').stride, [...t('expanded').values]]).toEqual([
      [0, 1],
      [5, 6, 5, 6, 5, 6],
    ]);
    expect([t('empty').shape, t('empty').values.length]).toEqual([[0, 3], 0]);
    // The three views of `base` share one storage, read once.
    expect(transposed.storage).toBe(t('base').storage);
    expect(sliced.storage).toBe(t('base').storage);
    expect(file.storages.size).toBe(15);
  });

  it('gives Parameters, nested containers, big ints, bytes, dtypes and Namespaces as plain JS', () => {
    expect([t('param').requiresGrad, [...t('param').values]]).toEqual([true, [1, 2]]);
    const nested = get(file.root, 'nested') as Map<PthValue, PthValue>;
    expect(nested.get('list')).toEqual([1, 2.5, 'three', null, true, false]);
    expect(nested.get('tuple')).toEqual([1, [2, 3]]);
    expect(Object.isFrozen(nested.get('tuple'))).toBe(true);
    expect(nested.get('int_keys')).toEqual(
      new Map<PthValue, PthValue>([
        [1, 'one'],
        [-2, 'minus two'],
      ]),
    );
    expect(nested.get('set')).toEqual(new Set([4, 5]));
    expect(nested.get('bytes')).toEqual(Uint8Array.from([0, 255, 97, 98]));
    expect(nested.get('big')).toBe(2n ** 70n);
    expect(nested.get('negative_big')).toBe(-(2n ** 63n));
    expect((nested.get('dtype') as PthGlobal).qualname).toBe('torch.float16');
    const args = nested.get('args') as Record<string, PthValue>;
    expect(Object.getPrototypeOf(args)).toBe(null);
    expect({ ...args }).toEqual({ lr: 0.03, arch: 'resnet50' });
  });

  it('reads the same tree from protocol 4, deflated and ZIP64 containers', () => {
    const expected = plain(file.root);
    expect(plain(readPth(fixture('mixed.proto4.pth')).root)).toEqual(expected);
    expect(plain(readPth(fixture('mixed.deflated.pth')).root)).toEqual(expected);
    const zip64 = makeZip(entriesOf('mixed.pth'), { zip64: true });
    expect(plain(parsePth(zip64).root)).toEqual(expected);
  });

  it('refuses an int64 value beyond int32 when the tensor is used, naming it', () => {
    const big = get(readPth(fixture('int64_overflow.pth')).root, 'big') as PthTensor;
    expect(big.shape).toEqual([2]);
    expect(() => big.values).toThrow(PthUnsupportedError);
    expect(() => big.values).toThrow(/int64_overflow\.pth.*1099511627776/);
  });
});

describe('readPth refuses hostile files', () => {
  it('refuses os.system in forbidden_global.pth at its GLOBAL opcode, running nothing', () => {
    const marker = '/tmp/disco-pwned'; // what the pickled shell command would create
    const before = existsSync(marker) ? statSync(marker).mtimeMs : undefined;
    const reduce = vi.spyOn(TorchPolicy.prototype, 'reduce');
    let error: unknown;
    try {
      readPth(fixture('forbidden_global.pth'));
    } catch (err) {
      error = err;
    }
    expect(error).toBeInstanceOf(PthForbiddenGlobalError);
    const forbidden = error as PthForbiddenGlobalError;
    expect(forbidden.global).toBe('posix.system');
    expect(forbidden.message).toMatch(/forbidden_global\.pth.*'posix\.system'/);
    // Byte 18 is the GLOBAL opcode; the REDUCE that would call it is at byte 87.
    expect(forbidden.offset).toBe(18);
    expect(reduce).not.toHaveBeenCalled();
    reduce.mockRestore();
    expect(existsSync(marker) ? statSync(marker).mtimeMs : undefined).toBe(before);
  });

  it('refuses other globals, however they are spelled, before building anything', () => {
    const cases: [Part, string][] = [
      [GLOBAL('builtins', 'eval'), 'builtins.eval'],
      [GLOBAL('__builtin__', 'getattr'), '__builtin__.getattr'],
      [GLOBAL('collections', '__proto__'), 'collections.__proto__'],
      [GLOBAL('torch', '_utils._rebuild_tensor_v2'), 'torch._utils._rebuild_tensor_v2'],
      [GLOBAL('torch', 'load'), 'torch.load'],
      [GLOBAL('numpy.core.multiarray', 'scalar'), 'numpy.core.multiarray.scalar'],
      [[0x8c, 2, 'os', 0x8c, 6, 'system', 0x93], 'os.system'], // protocol 4 STACK_GLOBAL
    ];
    for (const [global, name] of cases) {
      const pickle = DICT1('x', [global, TUPLE(BINUNICODE('true')), REDUCE]);
      const err = outcome(torchZip(pickle));
      expect(err).toBeInstanceOf(PthForbiddenGlobalError);
      expect((err as PthForbiddenGlobalError).global).toBe(name);
    }
  });

  it('never calls what is not an allowlisted callable', () => {
    const cases: [Part, RegExp][] = [
      [[BINUNICODE('os.system'), TUPLE(), REDUCE], /the string 'os\.system' is not callable/],
      [[GLOBAL('torch', 'FloatStorage'), TUPLE(), REDUCE], /torch\.FloatStorage cannot be called/],
      [
        [GLOBAL('torch', 'float16'), TUPLE(), 0x81],
        /NEWOBJ: cannot create the global torch\.float16 from 0 arguments/,
      ],
      [[EMPTY_LIST, EMPTY_DICT, 0x62], /BUILD: cannot set the state of the list \[\]/],
      [[TUPLE(BINUNICODE('storage')), 0x51], /persistent id is the tuple \('storage'\), not/],
    ];
    for (const [value, message] of cases) {
      const err = outcome(torchZip(DICT1('x', value)));
      expect(err).toBeInstanceOf(PthFormatError);
      expect((err as Error).message).toMatch(message);
    }
  });

  it('refuses legacy, TorchScript, safetensors and non-checkpoint files with a clear message', () => {
    expect(() => readPth(fixture('legacy.pth'))).toThrow(PthUnsupportedError);
    expect(() => readPth(fixture('legacy.pth'))).toThrow(/legacy.*re-save it with a newer PyTorch/);
    expect(() => readPth(`${SAFETENSORS}expected.safetensors`)).toThrow(/readSafetensors/);
    const script = makeZip([
      ['m/data.pkl', DICT1('x', [0x4e])],
      ['m/constants.pkl', bytesOf(PROTO2, 0x29, STOP)],
    ]);
    expect(() => parsePth(script)).toThrow(/TorchScript archive/);
    const wrongMagic = Uint8Array.from(readFileSync(fixture('mixed.pth')));
    wrongMagic[0] = 0x51;
    expect(() => parsePth(wrongMagic, { source: 'w.pth' })).toThrow(
      /pth w\.pth: not a PyTorch checkpoint: it starts with bytes \[51 4b 03 04\]/,
    );
    expect(() => readPth(fixture('missing.pth'))).toThrow(/missing\.pth: cannot read/);
  });

  it('turns corrupt containers and pickles into typed errors naming the file and offset', () => {
    const cases: [Uint8Array, typeof PthError, RegExp][] = [
      // Pickle level.
      [torchZip(bytesOf(PROTO2, EMPTY_DICT)), PthFormatError, /without a STOP opcode/],
      [
        torchZip(bytesOf(PROTO2, 0x85, STOP)),
        PthFormatError,
        /TUPLE1: stack underflow \(at byte 2\)/,
      ],
      [torchZip(bytesOf(PROTO2, 0x68, 7, STOP)), PthFormatError, /memo index 7 was never stored/],
      [torchZip(bytesOf(PROTO2, 0x74, STOP)), PthFormatError, /TUPLE: no MARK/],
      [
        torchZip(bytesOf(PROTO2, 0x58, u32(0xfffffff0), 'ab', STOP)),
        PthFormatError,
        /BINUNICODE: needs 4294967280 more bytes but only 3 remain/,
      ],
      [
        torchZip(bytesOf(PROTO2, 0x8e, [0, 0, 0, 0, 0, 0, 0, 0x40], STOP)),
        PthFormatError,
        /BINBYTES8: declares 4611686018427387904 bytes/,
      ],
      [torchZip(bytesOf(PROTO2, 0x8b, u32(1 << 30), STOP)), PthFormatError, /LONG4: integer of/],
      [torchZip(bytesOf(0x80, 9, STOP)), PthUnsupportedError, /pickle protocol 9/],
      [torchZip(bytesOf(PROTO2, 'I1\n', STOP)), PthUnsupportedError, /INT \(protocol 0 text\)/],
      [torchZip(bytesOf(PROTO2, 0x97, STOP)), PthUnsupportedError, /NEXT_BUFFER/],
      [
        torchZip(bytesOf(PROTO2, 0x58, u32(2), 0xff, 0xfe, STOP)),
        PthFormatError,
        /not valid UTF-8/,
      ],
      [
        torchZip(bytesOf(PROTO2, new Array(2000).fill(0x28), STOP)),
        PthFormatError,
        /MARKs nest deeper than 1000/,
      ],
      [
        torchZip(
          bytesOf(PROTO2, new Array(1500).fill(EMPTY_LIST), new Array(1499).fill(APPEND), STOP),
        ),
        PthFormatError,
        /containers nest deeper than 1000 levels/,
      ],
      // Tensors that do not fit their storage.
      [
        torchZip(DICT1('w', TENSOR('0', 4, 1, [2, 2], [2, 1])), { 0: [1, 2, 3, 4] }),
        PthFormatError,
        /storage '0' \(size \[2,2\], stride \[2,1\], offset 1\) reaches element 4 of a storage of 4/,
      ],
      [
        torchZip(DICT1('w', TENSOR('0', 4, 0, [2], [1, 1])), { 0: [1, 2, 3, 4] }),
        PthFormatError,
        /as many strides as dimensions/,
      ],
      [
        torchZip(DICT1('w', TENSOR('0', 4, 0, [2, -1], [1, 1])), { 0: [1, 2, 3, 4] }),
        PthFormatError,
        /tensor size is the tuple \(2, -1\)/,
      ],
      [
        torchZip(DICT1('w', TENSOR('0', 5, 0, [2], [1])), { 0: [1, 2, 3, 4] }),
        PthFormatError,
        /declares 5 F32 elements for 'archive\/data\/0', which has 16 bytes/,
      ],
      [
        torchZip(DICT1('w', TENSOR('9', 4, 0, [2], [1])), { 0: [1, 2, 3, 4] }),
        PthFormatError,
        /refers to 'archive\/data\/9', which the zip lacks/,
      ],
      [
        torchZip(DICT1('w', TENSOR('0', 4, 0, [65535, 65535], [0, 0])), { 0: [1, 2, 3, 4] }),
        PthUnsupportedError,
        /4294836225 elements, more than the 268435456/,
      ],
      // Container level.
      [makeZip([['a.txt', enc.encode('hi')]]), PthFormatError, /no <archive>\/data\.pkl/],
    ];
    for (const [buf, type, message] of cases) {
      const err = outcome(buf);
      expect(err, String(message)).toBeInstanceOf(type);
      expect((err as Error).message).toMatch(/^pth mutant\.pth: /);
      expect((err as Error).message).toMatch(message);
    }
  });

  it('rejects a truncated, byte-flipped or overlong-declared file with typed errors', () => {
    const good = readFileSync(fixture('mixed.pth'));
    for (let cut = 0; cut < good.length; cut += 7) {
      expect(outcome(good.subarray(0, cut))).toBeInstanceOf(PthFormatError);
    }
    // Any flipped byte inside an entry fails its CRC; in headers, it fails or is harmless.
    let refused = 0;
    for (let at = 0; at < good.length; at += 3) {
      const flipped = Uint8Array.from(good);
      flipped[at]! ^= 0xff;
      const err = outcome(flipped);
      if (err !== undefined) {
        expect(err).toBeInstanceOf(PthError);
        refused++;
      }
    }
    expect(refused).toBeGreaterThan(good.length / 3 / 2);
    // The central directory claims data.pkl is 4 GiB.
    const huge = Uint8Array.from(good);
    const dir = good.readUInt32LE(good.length - 22 + 16);
    new DataView(huge.buffer).setUint32(dir + 20, 0xfffffff0, true);
    new DataView(huge.buffer).setUint32(dir + 24, 0xfffffff0, true);
    expect((outcome(huge) as Error).message).toMatch(/data of 'mixed\/data\.pkl' spans bytes/);
  });

  it('survives 400 seeded random mutations with a valid result or a typed error', () => {
    let seed = 12345; // mulberry32
    const random = (): number => {
      seed = (seed + 0x6d2b79f5) | 0;
      let x = Math.imul(seed ^ (seed >>> 15), 1 | seed);
      x = (x + Math.imul(x ^ (x >>> 7), 61 | x)) ^ x;
      return ((x ^ (x >>> 14)) >>> 0) / 2 ** 32;
    };
    const entries = entriesOf('mixed.pth');
    const pickle = entries.find(([name]) => name.endsWith('data.pkl'))![1];
    const counts = { ok: 0, error: 0 };
    for (let i = 0; i < 400; i++) {
      // Mutate the pickle and re-zip it with a good CRC, so the unpickler sees the damage.
      const mutant = Uint8Array.from(pickle);
      const edits = 1 + Math.floor(random() * 4);
      for (let e = 0; e < edits; e++) {
        const at = Math.floor(random() * mutant.length);
        const kind = random();
        if (kind < 0.5) mutant[at] = Math.floor(random() * 256);
        else if (kind < 0.8) mutant[at]! ^= 1 << Math.floor(random() * 8);
        else mutant[at] = [0x28, 0x2e, 0x52, 0x68, 0x74, 0x58][Math.floor(random() * 6)]!;
      }
      const cut = random() < 0.1 ? Math.floor(random() * mutant.length) : mutant.length;
      const zip = makeZip(
        entries.map(([name, data]) => [
          name,
          name.endsWith('data.pkl') ? mutant.subarray(0, cut) : data,
        ]),
      );
      const err = outcome(zip, false);
      if (err === undefined) counts.ok++;
      else {
        expect(err).toBeInstanceOf(PthError);
        counts.error++;
      }
    }
    expect(counts.error).toBeGreaterThan(100); // the mutations did reach the unpickler
  });
});

describe('extractStateDict', () => {
  const file = readPth(fixture('mixed.pth'));
  const a = get(file.root, 'f32') as PthTensor;
  const b = get(file.root, 'base') as PthTensor;
  const dict = (entries: [string, PthValue][]): Map<PthValue, PthValue> => new Map(entries);

  it('selects the MoCo query encoder beside the momentum encoder and the queue', () => {
    const moco = dict([
      [
        'state_dict',
        dict([
          ['module.encoder_q.conv.weight', a],
          ['module.encoder_k.conv.weight', b],
          ['module.queue', b],
        ]),
      ],
    ]);
    const sd = extractStateDict(moco);
    expect([sd.prefix, sd.location, [...sd.tensors.keys()], sd.dropped]).toEqual([
      'module.encoder_q.',
      'state_dict',
      ['conv.weight'],
      ['module.encoder_k.conv.weight', 'module.queue'],
    ]);
    expect(sd.tensors.get('conv.weight')).toBe(a);
  });

  it('takes an explicit location and prefix over detection, and drops non-tensors', () => {
    const dino = dict([
      [
        'student',
        dict([
          ['backbone.w', a],
          ['head.w', b],
        ]),
      ],
      [
        'teacher',
        dict([
          ['backbone.w', b],
          ['head.w', a],
          ['step', 3],
        ]),
      ],
      ['epoch', 100],
    ]);
    const auto = extractStateDict(dino);
    expect([auto.location, auto.prefix, [...auto.tensors.keys()]]).toEqual([
      'student',
      '',
      ['backbone.w', 'head.w'],
    ]);
    const teacher = extractStateDict(dino, { at: 'teacher', prefix: 'backbone.' });
    expect([teacher.location, teacher.prefix, teacher.dropped]).toEqual([
      'teacher',
      'backbone.',
      ['step', 'head.w'],
    ]);
    expect(teacher.tensors).toEqual(new Map([['w', b]]));
    const none = extractStateDict(dict([['module.w', a]]), { prefix: '' });
    expect([...none.tensors.keys()]).toEqual(['module.w']);
  });

  it('says what it found when there is no state dict, or no key with the prefix', () => {
    expect(() => extractStateDict(dict([['epoch', 1]]))).toThrow(PthStateDictError);
    expect(() => extractStateDict(dict([['epoch', 1]]))).toThrow(
      /no state dict found.*top-level keys: epoch/,
    );
    expect(() => extractStateDict(file, { at: ['nested', 'x'] })).toThrow(
      /mixed\.pth: no dict at 'nested\.x'/,
    );
    expect(() => extractStateDict(dict([['w', a]]), { prefix: 'encoder.' })).toThrow(
      /no tensor name at '' starts with prefix 'encoder\.' \(first names: w\)/,
    );
  });
});
