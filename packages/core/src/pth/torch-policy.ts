/**
 * What the names in a `torch.save` pickle may mean: an allowlist of Python globals, each
 * mapped to a small builder written here. A name off the list is refused the moment its
 * GLOBAL opcode is read; a listed name is only ever matched against this table, so nothing
 * from the file is called. Persistent ids `('storage', type, key, location, numel)` are
 * resolved to the `<archive>/data/<key>` entries of the ZIP container.
 */
import { PthForbiddenGlobalError, PthFormatError } from './errors.js';
import {
  PTH_ELEMENT_BYTES,
  PthStorage,
  PthTensor,
  rebuildTensor,
  type PthDtype,
} from './tensor.js';
import { describe, type UnpicklePolicy } from './unpickle.js';
import type { ZipArchive } from './zip.js';

/** What an allowlisted global is to the reader: a container type, a tensor builder, a storage class or a dtype. */
export type PthGlobalKind =
  | 'ordered-dict'
  | 'set'
  | 'frozenset'
  | 'namespace'
  | 'torch-size'
  | 'codecs-encode'
  | 'rebuild-tensor'
  | 'rebuild-tensor-v2'
  | 'rebuild-parameter'
  | 'rebuild-parameter-with-state'
  | 'storage'
  | 'dtype';

/**
 * An allowlisted Python global as it can appear in the object tree, e.g. the dtype
 * `torch.float16` stored as a value. It is a name only: nothing can be called through it.
 */
export class PthGlobal {
  constructor(
    /** The Python module, e.g. `torch`. */
    readonly module: string,
    /** The attribute name, e.g. `float16`. */
    readonly name: string,
    /** What the reader takes it to be. */
    readonly kind: PthGlobalKind,
    /** For storage classes and dtypes, the element type. */
    readonly dtype?: PthDtype,
  ) {
    Object.freeze(this);
  }

  /** `module.name`, e.g. `torch.float16`. */
  get qualname(): string {
    return `${this.module}.${this.name}`;
  }
}

const ALLOWED = new Map<string, PthGlobal>();
function allow(module: string, name: string, kind: PthGlobalKind, dtype?: PthDtype): void {
  // Keyed on module and name apart, so `torch` + `_utils._rebuild_tensor_v2` is not a match.
  ALLOWED.set(`${module}\n${name}`, new PthGlobal(module, name, kind, dtype));
}
allow('collections', 'OrderedDict', 'ordered-dict');
// Protocol 2 pickles written by Python 3 name builtins by their Python 2 module.
for (const builtins of ['builtins', '__builtin__']) {
  allow(builtins, 'set', 'set');
  allow(builtins, 'frozenset', 'frozenset');
}
allow('argparse', 'Namespace', 'namespace');
allow('torch', 'Size', 'torch-size');
allow('_codecs', 'encode', 'codecs-encode'); // how protocol 2 spells a bytes object
allow('torch._utils', '_rebuild_tensor', 'rebuild-tensor');
allow('torch._utils', '_rebuild_tensor_v2', 'rebuild-tensor-v2');
allow('torch._utils', '_rebuild_parameter', 'rebuild-parameter');
allow('torch._utils', '_rebuild_parameter_with_state', 'rebuild-parameter-with-state');
// TODO(numpy): numpy scalars (`numpy.core.multiarray.scalar` with a `numpy.dtype`), which
// some training scripts store as a checkpoint's best metric, are refused with the rest.
const STORAGES: [string, PthDtype][] = [
  ['DoubleStorage', 'F64'],
  ['FloatStorage', 'F32'],
  ['HalfStorage', 'F16'],
  ['BFloat16Storage', 'BF16'],
  ['LongStorage', 'I64'],
  ['IntStorage', 'I32'],
  ['ShortStorage', 'I16'],
  ['CharStorage', 'I8'],
  ['ByteStorage', 'U8'],
  ['BoolStorage', 'BOOL'],
];
for (const [name, dtype] of STORAGES) allow('torch', name, 'storage', dtype);
const DTYPES: [string, PthDtype][] = [
  ['float64', 'F64'],
  ['double', 'F64'],
  ['float32', 'F32'],
  ['float', 'F32'],
  ['float16', 'F16'],
  ['half', 'F16'],
  ['bfloat16', 'BF16'],
  ['int64', 'I64'],
  ['long', 'I64'],
  ['int32', 'I32'],
  ['int', 'I32'],
  ['int16', 'I16'],
  ['short', 'I16'],
  ['int8', 'I8'],
  ['uint8', 'U8'],
  ['bool', 'BOOL'],
];
for (const [name, dtype] of DTYPES) allow('torch', name, 'dtype', dtype);

/** The `UnpicklePolicy` of a `torch.save` ZIP container. */
export class TorchPolicy implements UnpicklePolicy {
  /** Storages by key, each read once however many tensors view it. */
  readonly storages = new Map<string, PthStorage>();
  private readonly namespaces = new WeakSet<object>();

  constructor(
    private readonly zip: ZipArchive,
    /** The archive's folder name, e.g. `archive`. */
    private readonly archive: string,
    private readonly source: string,
  ) {}

  global(module: string, name: string, offset: number): PthGlobal {
    const found = ALLOWED.get(`${module}\n${name}`);
    if (!found) throw new PthForbiddenGlobalError(this.source, `${module}.${name}`, offset);
    return found;
  }

  persistentLoad(pid: unknown, offset: number): PthStorage {
    const fail = (why: string): never => {
      throw new PthFormatError(this.source, `data.pkl: persistent id ${why}`, offset);
    };
    if (!Array.isArray(pid) || pid.length !== 5 || pid[0] !== 'storage') {
      fail(`is ${describe(pid)}, not ('storage', type, key, location, numel)`);
    }
    const [, type, key, location, numel] = pid as unknown[];
    if (!(type instanceof PthGlobal) || (type.kind !== 'storage' && type.kind !== 'dtype')) {
      fail(`names storage type ${describe(type)}`);
    }
    if (typeof key !== 'string' || typeof location !== 'string' || !isCount(numel)) {
      fail(`has key ${describe(key)}, location ${describe(location)}, numel ${describe(numel)}`);
    }
    const dtype = (type as PthGlobal).dtype!;
    const known = this.storages.get(key as string);
    if (known) {
      if (known.dtype !== dtype)
        fail(`reads storage '${key}' as ${dtype}, before as ${known.dtype}`);
      return known;
    }

    const entry = `${this.archive}data/${key}`;
    if (!this.zip.entries.has(entry)) fail(`refers to '${entry}', which the zip lacks`);
    const bytes = this.zip.read(entry);
    if (bytes.byteLength !== (numel as number) * PTH_ELEMENT_BYTES[dtype]) {
      fail(
        `declares ${numel} ${dtype} elements for '${entry}', which has ${bytes.byteLength} bytes`,
      );
    }
    const storage = new PthStorage(key as string, dtype, bytes, location as string, this.source);
    this.storages.set(key as string, storage);
    return storage;
  }

  reduce(callable: unknown, args: readonly unknown[], offset: number): unknown {
    const fail = (why: string): never => {
      throw new PthFormatError(this.source, `data.pkl: REDUCE: ${why}`, offset);
    };
    if (!(callable instanceof PthGlobal)) return fail(`${describe(callable)} is not callable`);
    const expect = (counts: number[]): void => {
      if (!counts.includes(args.length)) {
        fail(`${callable.qualname} takes ${counts.join(' or ')} arguments, got ${args.length}`);
      }
    };
    switch (callable.kind) {
      case 'ordered-dict': {
        expect([0, 1]);
        const map = new Map<unknown, unknown>();
        for (const pair of args.length ? iterable(args[0], fail) : []) {
          if (!Array.isArray(pair) || pair.length !== 2) fail(`OrderedDict item ${describe(pair)}`);
          map.set((pair as unknown[])[0], (pair as unknown[])[1]);
        }
        return map;
      }
      case 'set':
      case 'frozenset': {
        expect([0, 1]);
        const set = new Set(args.length ? iterable(args[0], fail) : []);
        return callable.kind === 'frozenset' ? Object.freeze(set) : set;
      }
      case 'torch-size':
        expect([1]);
        return Object.freeze(counts(args[0], 'torch.Size', fail));
      case 'codecs-encode': {
        expect([1, 2]);
        const [text, encoding = 'utf-8'] = args;
        if (typeof text !== 'string') return fail(`_codecs.encode of ${describe(text)}`);
        if (encoding === 'latin1' || encoding === 'latin-1' || encoding === 'iso-8859-1') {
          const out = new Uint8Array(text.length);
          for (let i = 0; i < text.length; i++) {
            const c = text.charCodeAt(i);
            if (c > 255) fail(`_codecs.encode: character ${c} is not latin-1`);
            out[i] = c;
          }
          return out;
        }
        if (encoding === 'utf-8' || encoding === 'utf8') return new TextEncoder().encode(text);
        return fail(`_codecs.encode with encoding ${describe(encoding)}`);
      }
      case 'rebuild-tensor':
      case 'rebuild-tensor-v2': {
        expect(callable.kind === 'rebuild-tensor' ? [4] : [6, 7]);
        const [storage, storageOffset, size, stride, requiresGrad, hooks] = args;
        if (!(storage instanceof PthStorage)) return fail(`tensor storage is ${describe(storage)}`);
        if (!isCount(storageOffset)) return fail(`storage offset ${describe(storageOffset)}`);
        if (hooks !== undefined && !(hooks instanceof Map && hooks.size === 0)) {
          fail(`tensor backward hooks ${describe(hooks)} (hooks are code; only none is accepted)`);
        }
        const shape = counts(size, 'tensor size', fail);
        const strides = counts(stride, 'tensor stride', fail);
        const t = rebuildTensor(storage, storageOffset, shape, strides, offset);
        return requiresGrad === true ? t.withRequiresGrad(true) : t;
      }
      case 'rebuild-parameter':
      case 'rebuild-parameter-with-state': {
        expect(callable.kind === 'rebuild-parameter' ? [3] : [4]);
        const [data, requiresGrad, hooks] = args;
        if (!(data instanceof PthTensor)) return fail(`parameter data is ${describe(data)}`);
        if (!(hooks instanceof Map && hooks.size === 0)) {
          fail(`parameter backward hooks ${describe(hooks)} (only none is accepted)`);
        }
        // TODO(state): the state of `_rebuild_parameter_with_state` (Python attributes set on
        // the parameter) is dropped; the tensor itself is all a state dict needs.
        return data.withRequiresGrad(requiresGrad === true);
      }
      default:
        return fail(`${callable.qualname} cannot be called`);
    }
  }

  newObject(cls: unknown, args: readonly unknown[], offset: number): unknown {
    if (cls instanceof PthGlobal && cls.kind === 'namespace' && args.length === 0) {
      const namespace = Object.create(null) as Record<string, unknown>;
      this.namespaces.add(namespace);
      return namespace;
    }
    throw new PthFormatError(
      this.source,
      `data.pkl: NEWOBJ: cannot create ${describe(cls)} from ${args.length} arguments`,
      offset,
    );
  }

  build(target: unknown, state: unknown, offset: number): void {
    const fail = (why: string): never => {
      throw new PthFormatError(this.source, `data.pkl: BUILD: ${why}`, offset);
    };
    if (typeof target === 'object' && target !== null && this.namespaces.has(target)) {
      if (!(state instanceof Map)) return fail(`Namespace state is ${describe(state)}`);
      const fields = target as Record<string, unknown>;
      for (const [key, value] of state) {
        if (typeof key !== 'string') fail(`Namespace attribute name ${describe(key)}`);
        // A null-prototype object: even '__proto__' is an ordinary own property here.
        fields[key as string] = value;
      }
      return;
    }
    if (target instanceof Map) {
      // An OrderedDict's instance attributes, e.g. a state dict's `_metadata` (module
      // versions). They carry nothing a loader needs and are dropped.
      if (state !== null && !(state instanceof Map)) fail(`dict state is ${describe(state)}`);
      return;
    }
    fail(`cannot set the state of ${describe(target)}`);
  }
}

function isCount(v: unknown): v is number {
  return typeof v === 'number' && Number.isSafeInteger(v) && v >= 0;
}

function counts(v: unknown, what: string, fail: (why: string) => never): number[] {
  if (!Array.isArray(v) || !v.every(isCount)) return fail(`${what} is ${describe(v)}`);
  return [...(v as number[])];
}

function iterable(v: unknown, fail: (why: string) => never): unknown[] {
  if (Array.isArray(v)) return v;
  if (v instanceof Set) return [...v];
  return fail(`expects a list of items, got ${describe(v)}`);
}
