/**
 * A restricted unpickler: the binary opcodes of pickle protocols 2 to 5 (CPython's
 * `Lib/pickletools.py` documents each one), run as a stack machine that only ever builds
 * plain data. Python values become JS ones: dict -> Map, list and tuple -> array (tuples
 * frozen), set -> Set, int -> number (bigint beyond 2^53), float -> number, str -> string,
 * bytes -> Uint8Array, None -> null.
 *
 * Everything that would touch Python objects (GLOBAL, REDUCE, NEWOBJ, BUILD, persistent ids)
 * is delegated to an `UnpicklePolicy`, which decides what a name means; nothing read from
 * the file is ever called. The text opcodes of protocols 0-1, INST/OBJ, the extension
 * registry and out-of-band buffers are refused.
 */
import { PthFormatError, PthUnsupportedError } from './errors.js';
import { OP, REFUSED, opcodeName } from './opcodes.js';

/** What the unpickler asks of its caller for the opcodes that involve Python objects. */
export interface UnpicklePolicy {
  /** The value GLOBAL / STACK_GLOBAL `module.name` stands for; throws to refuse it. */
  global(module: string, name: string, offset: number): unknown;
  /** The object a persistent id (BINPERSID) refers to. */
  persistentLoad(pid: unknown, offset: number): unknown;
  /** The result of REDUCE: `callable(*args)`, for the callables `global` returned. */
  reduce(callable: unknown, args: readonly unknown[], offset: number): unknown;
  /** The result of NEWOBJ: `cls.__new__(cls, *args)`. */
  newObject(cls: unknown, args: readonly unknown[], offset: number): unknown;
  /** BUILD: applies `state` to `target` (the object's `__setstate__`). */
  build(target: unknown, state: unknown, offset: number): void;
}

/** Deepest container nesting accepted; real checkpoints stay far below it. */
export const MAX_NESTING = 1000;
/** Largest LONG4 integer accepted, in bytes. */
const MAX_LONG_BYTES = 1024;
const HIGHEST_PROTOCOL = 5;

/**
 * Runs the pickle in `data` and returns the object its STOP opcode leaves.
 * @param source names the file in errors; offsets in errors are positions in `data`.
 * @throws PthFormatError on truncated or inconsistent data, PthUnsupportedError on refused
 *   opcodes, and whatever `policy` throws (e.g. PthForbiddenGlobalError).
 */
export function unpickle(data: Uint8Array, source: string, policy: UnpicklePolicy): unknown {
  const view = new DataView(data.buffer, data.byteOffset, data.byteLength);
  const utf8 = new TextDecoder('utf-8', { fatal: true });
  const memo = new Map<number, unknown>();
  const depths = new WeakMap<object, number>();
  const metastack: unknown[][] = [];
  let stack: unknown[] = [];
  let pos = 0;
  let op = 0; // offset of the opcode being run
  let opName = '';

  const fail = (why: string): never => {
    throw new PthFormatError(source, `data.pkl: ${opName}: ${why}`, op);
  };
  const need = (n: number): number => {
    if (n > data.byteLength - pos) {
      fail(`needs ${n} more bytes but only ${data.byteLength - pos} remain (truncated?)`);
    }
    const at = pos;
    pos += n;
    return at;
  };
  const pop = (): unknown => {
    if (stack.length === 0) fail('stack underflow');
    return stack.pop();
  };
  const top = (): unknown => {
    if (stack.length === 0) fail('stack underflow');
    return stack[stack.length - 1];
  };
  const popMark = (): unknown[] => {
    const items = stack;
    const below = metastack.pop();
    if (!below) fail('no MARK to pop to');
    stack = below!;
    return items;
  };
  const depthOf = (v: unknown): number =>
    typeof v === 'object' && v !== null ? (depths.get(v) ?? 0) : 0;
  // Records that `container` now holds `items`, refusing nesting past MAX_NESTING.
  const contains = <T extends object>(container: T, items: readonly unknown[]): T => {
    let depth = depthOf(container);
    for (const item of items) depth = Math.max(depth, depthOf(item) + 1);
    if (depth > MAX_NESTING) fail(`containers nest deeper than ${MAX_NESTING} levels`);
    if (depth > 0) depths.set(container, depth);
    return container;
  };
  const tuple = (items: unknown[]): readonly unknown[] => Object.freeze(contains(items, items));
  const text = (at: number, n: number): string => {
    try {
      return utf8.decode(data.subarray(at, at + n));
    } catch {
      return fail('string is not valid UTF-8');
    }
  };
  const bytes = (n: number): Uint8Array => {
    const at = need(n);
    return Uint8Array.from(data.subarray(at, at + n)); // a copy, and never a Node Buffer
  };
  const length64 = (): number => {
    const n = view.getBigUint64(need(8), true);
    if (n > BigInt(data.byteLength)) fail(`declares ${n} bytes, more than the whole pickle`);
    return Number(n);
  };
  const memoGet = (index: number): unknown => {
    if (!memo.has(index)) fail(`memo index ${index} was never stored (memo has ${memo.size})`);
    return memo.get(index);
  };
  const line = (): string => {
    const end = data.indexOf(0x0a, pos);
    if (end < 0 || end - pos > 1024) fail('name is not a newline-terminated line');
    const s = text(pos, end - pos);
    pos = end + 1;
    return s;
  };
  const setItems = (target: unknown, items: unknown[]): void => {
    if (items.length % 2 !== 0) fail(`odd number of items (${items.length}) for a dict`);
    if (!(target instanceof Map)) fail(`target is ${describe(target)}, not a dict`);
    const map = target as Map<unknown, unknown>;
    for (let i = 0; i < items.length; i += 2) map.set(items[i], items[i + 1]);
    contains(map, items);
  };
  const appendItems = (target: unknown, items: unknown[]): void => {
    if (!Array.isArray(target) || Object.isFrozen(target)) {
      fail(`target is ${describe(target)}, not a list`);
    }
    const list = target as unknown[];
    for (const item of items) list.push(item);
    contains(list, items);
  };
  const addItems = (target: unknown, items: unknown[]): void => {
    if (!(target instanceof Set) || Object.isFrozen(target)) {
      fail(`target is ${describe(target)}, not a set`);
    }
    for (const item of items) (target as Set<unknown>).add(item);
    contains(target as Set<unknown>, items);
  };
  const asTuple = (v: unknown): readonly unknown[] => {
    if (!Array.isArray(v)) fail(`expects a tuple of arguments, got ${describe(v)}`);
    return v as readonly unknown[];
  };

  for (;;) {
    op = pos;
    if (pos >= data.byteLength) {
      opName = 'end of data';
      fail('the pickle ends without a STOP opcode (truncated?)');
    }
    const code = data[pos++]!;
    opName = opcodeName(code);
    switch (code) {
      case OP.PROTO: {
        const protocol = data[need(1)]!;
        if (protocol > HIGHEST_PROTOCOL) {
          throw new PthUnsupportedError(source, `data.pkl: pickle protocol ${protocol}`, op);
        }
        break;
      }
      case OP.FRAME: // a length prefix for buffering; the framed opcodes follow inline
        if (length64() > data.byteLength - pos) fail('frame runs past the end of the data');
        break;
      case OP.STOP:
        return pop();

      case OP.MARK:
        if (metastack.length >= MAX_NESTING) fail(`MARKs nest deeper than ${MAX_NESTING}`);
        metastack.push(stack);
        stack = [];
        break;
      case OP.POP:
        if (stack.length > 0) stack.pop();
        else popMark();
        break;
      case OP.POP_MARK:
        popMark();
        break;
      case OP.DUP:
        stack.push(top());
        break;

      case OP.NONE:
        stack.push(null);
        break;
      case OP.NEWTRUE:
        stack.push(true);
        break;
      case OP.NEWFALSE:
        stack.push(false);
        break;
      case OP.BININT:
        stack.push(view.getInt32(need(4), true));
        break;
      case OP.BININT1:
        stack.push(data[need(1)]!);
        break;
      case OP.BININT2:
        stack.push(view.getUint16(need(2), true));
        break;
      case OP.LONG1: {
        const n = data[need(1)]!;
        stack.push(long(data, need(n), n));
        break;
      }
      case OP.LONG4: {
        const n = view.getInt32(need(4), true);
        if (n < 0 || n > MAX_LONG_BYTES) fail(`integer of ${n} bytes (at most ${MAX_LONG_BYTES})`);
        stack.push(long(data, need(n), n));
        break;
      }
      case OP.BINFLOAT:
        stack.push(view.getFloat64(need(8), false)); // BINFLOAT is big-endian
        break;

      case OP.BINUNICODE: {
        const n = view.getUint32(need(4), true);
        stack.push(text(need(n), n));
        break;
      }
      case OP.SHORT_BINUNICODE: {
        const n = data[need(1)]!;
        stack.push(text(need(n), n));
        break;
      }
      case OP.BINUNICODE8: {
        const n = length64();
        stack.push(text(need(n), n));
        break;
      }
      case OP.SHORT_BINSTRING: {
        // Python 2 str: bytes whose text Python 3 reads as latin-1 (the `encoding` default
        // for numpy-free checkpoints is 'ASCII'; latin-1 is its superset).
        const n = data[need(1)]!;
        stack.push(latin1(bytes(n)));
        break;
      }
      case OP.BINSTRING: {
        const n = view.getInt32(need(4), true);
        if (n < 0) fail(`negative length ${n}`);
        stack.push(latin1(bytes(n)));
        break;
      }
      case OP.SHORT_BINBYTES:
        stack.push(bytes(data[need(1)]!));
        break;
      case OP.BINBYTES:
        stack.push(bytes(view.getUint32(need(4), true)));
        break;
      case OP.BINBYTES8:
      case OP.BYTEARRAY8:
        stack.push(bytes(length64()));
        break;

      case OP.EMPTY_TUPLE:
        stack.push(Object.freeze([]));
        break;
      case OP.TUPLE1:
        stack.push(tuple([pop()]));
        break;
      case OP.TUPLE2: {
        const b = pop();
        stack.push(tuple([pop(), b]));
        break;
      }
      case OP.TUPLE3: {
        const c = pop();
        const b = pop();
        stack.push(tuple([pop(), b, c]));
        break;
      }
      case OP.TUPLE: {
        const items = popMark(); // before `stack.` is read: popMark replaces the stack
        stack.push(tuple(items));
        break;
      }
      case OP.EMPTY_LIST:
        stack.push([]);
        break;
      case OP.LIST: {
        const items = popMark();
        stack.push(contains(items, items));
        break;
      }
      case OP.EMPTY_DICT:
        stack.push(new Map());
        break;
      case OP.DICT: {
        const items = popMark();
        const map = new Map();
        stack.push(map);
        setItems(map, items);
        break;
      }
      case OP.EMPTY_SET:
        stack.push(new Set());
        break;
      case OP.FROZENSET: {
        const items = popMark();
        const set = new Set(items);
        stack.push(Object.freeze(contains(set, items)));
        break;
      }
      case OP.APPEND: {
        const item = pop();
        appendItems(top(), [item]);
        break;
      }
      case OP.APPENDS: {
        const items = popMark();
        appendItems(top(), items);
        break;
      }
      case OP.SETITEM: {
        const value = pop();
        const key = pop();
        setItems(top(), [key, value]);
        break;
      }
      case OP.SETITEMS: {
        const items = popMark();
        setItems(top(), items);
        break;
      }
      case OP.ADDITEMS: {
        const items = popMark();
        addItems(top(), items);
        break;
      }

      case OP.BINPUT:
        memo.set(data[need(1)]!, top());
        break;
      case OP.LONG_BINPUT:
        memo.set(view.getUint32(need(4), true), top());
        break;
      case OP.MEMOIZE:
        memo.set(memo.size, top());
        break;
      case OP.BINGET:
        stack.push(memoGet(data[need(1)]!));
        break;
      case OP.LONG_BINGET:
        stack.push(memoGet(view.getUint32(need(4), true)));
        break;

      case OP.GLOBAL: {
        const module = line();
        const name = line();
        stack.push(policy.global(module, name, op));
        break;
      }
      case OP.STACK_GLOBAL: {
        const name = pop();
        const module = pop();
        if (typeof module !== 'string' || typeof name !== 'string') {
          fail(`module and name must be strings, got ${describe(module)} and ${describe(name)}`);
        }
        stack.push(policy.global(module as string, name as string, op));
        break;
      }
      case OP.REDUCE: {
        const args = asTuple(pop());
        stack.push(policy.reduce(pop(), args, op));
        break;
      }
      case OP.NEWOBJ: {
        const args = asTuple(pop());
        stack.push(policy.newObject(pop(), args, op));
        break;
      }
      case OP.BUILD: {
        const state = pop();
        policy.build(top(), state, op);
        break;
      }
      case OP.BINPERSID:
        stack.push(policy.persistentLoad(pop(), op));
        break;

      default:
        throw new PthUnsupportedError(
          source,
          `data.pkl: ${REFUSED[code] ?? `unknown opcode 0x${code.toString(16).padStart(2, '0')}`}` +
            ' is not supported (torch.save writes binary pickles of protocol 2 or higher)',
          op,
        );
    }
  }
}

/** A little-endian two's-complement integer of `n` bytes at `at`: number if safe, else bigint. */
function long(data: Uint8Array, at: number, n: number): number | bigint {
  if (n === 0) return 0;
  let value = 0n;
  for (let i = n - 1; i >= 0; i--) value = (value << 8n) | BigInt(data[at + i]!);
  if (data[at + n - 1]! & 0x80) value -= 1n << BigInt(8 * n);
  return value >= BigInt(Number.MIN_SAFE_INTEGER) && value <= BigInt(Number.MAX_SAFE_INTEGER)
    ? Number(value)
    : value;
}

function latin1(b: Uint8Array): string {
  let s = '';
  for (let i = 0; i < b.length; i++) s += String.fromCharCode(b[i]!);
  return s;
}

/** A short description of a value in Python's terms, for error messages. */
export function describe(v: unknown): string {
  if (v === null) return 'None';
  if (Array.isArray(v)) {
    const tuple = Object.isFrozen(v);
    if (v.length > 6 || !v.every((x) => x === null || typeof x !== 'object')) {
      return `a ${tuple ? 'tuple' : 'list'} of ${v.length}`;
    }
    const items = v.map((x) =>
      typeof x === 'string' ? `'${x}'` : x === null ? 'None' : String(x),
    );
    return tuple ? `the tuple (${items.join(', ')})` : `the list [${items.join(', ')}]`;
  }
  if (v instanceof Map) return `a dict of ${v.size}`;
  if (v instanceof Set) return 'a set';
  if (v instanceof Uint8Array) return `${v.length} bytes`;
  if (typeof v === 'object' && 'qualname' in v) return `the global ${String(v.qualname)}`;
  if (typeof v === 'object') return `a ${v.constructor?.name ?? 'object'}`;
  if (typeof v === 'string') return `the string '${v.length > 40 ? `${v.slice(0, 40)}...` : v}'`;
  return `the ${typeof v} ${String(v)}`;
}
