/**
 * The binary pickle opcodes (protocols 2-5) the restricted unpickler runs, by the names
 * CPython's `Lib/pickletools.py` gives them, and those it recognises only to refuse.
 */

/** Opcode byte values by name. */
export const OP = {
  MARK: 0x28,
  EMPTY_TUPLE: 0x29,
  STOP: 0x2e,
  POP: 0x30,
  POP_MARK: 0x31,
  DUP: 0x32,
  BINBYTES: 0x42,
  SHORT_BINBYTES: 0x43,
  BINFLOAT: 0x47,
  BININT: 0x4a,
  BININT1: 0x4b,
  BININT2: 0x4d,
  NONE: 0x4e,
  BINPERSID: 0x51,
  REDUCE: 0x52,
  BINSTRING: 0x54,
  SHORT_BINSTRING: 0x55,
  BINUNICODE: 0x58,
  EMPTY_LIST: 0x5d,
  APPEND: 0x61,
  BUILD: 0x62,
  GLOBAL: 0x63,
  DICT: 0x64,
  APPENDS: 0x65,
  BINGET: 0x68,
  LONG_BINGET: 0x6a,
  LIST: 0x6c,
  BINPUT: 0x71,
  LONG_BINPUT: 0x72,
  SETITEM: 0x73,
  TUPLE: 0x74,
  SETITEMS: 0x75,
  EMPTY_DICT: 0x7d,
  PROTO: 0x80,
  NEWOBJ: 0x81,
  TUPLE1: 0x85,
  TUPLE2: 0x86,
  TUPLE3: 0x87,
  NEWTRUE: 0x88,
  NEWFALSE: 0x89,
  LONG1: 0x8a,
  LONG4: 0x8b,
  SHORT_BINUNICODE: 0x8c,
  BINUNICODE8: 0x8d,
  BINBYTES8: 0x8e,
  EMPTY_SET: 0x8f,
  ADDITEMS: 0x90,
  FROZENSET: 0x91,
  STACK_GLOBAL: 0x93,
  MEMOIZE: 0x94,
  FRAME: 0x95,
  BYTEARRAY8: 0x96,
} as const;

const NAMES = new Map<number, string>(Object.entries(OP).map(([name, code]) => [code, name]));

/** Opcodes refused with a reason: text forms of protocols 0-1, instance creation, extension
 * codes and out-of-band buffers. */
export const REFUSED: Record<number, string> = {
  0x46: 'FLOAT (protocol 0 text)',
  0x49: 'INT (protocol 0 text)',
  0x4c: 'LONG (protocol 0 text)',
  0x50: 'PERSID (protocol 0 text)',
  0x53: 'STRING (protocol 0 text)',
  0x56: 'UNICODE (protocol 0 text)',
  0x67: 'GET (protocol 0 text)',
  0x70: 'PUT (protocol 0 text)',
  0x69: 'INST (protocol 0 instance)',
  0x6f: 'OBJ (protocol 1 instance)',
  0x82: 'EXT1 (extension registry)',
  0x83: 'EXT2 (extension registry)',
  0x84: 'EXT4 (extension registry)',
  0x92: 'NEWOBJ_EX (keyword arguments)',
  0x97: 'NEXT_BUFFER (out-of-band buffer)',
  0x98: 'READONLY_BUFFER (out-of-band buffer)',
};

/** The name of opcode `code`, or its hex value when it is none the reader runs. */
export function opcodeName(code: number): string {
  return NAMES.get(code) ?? `opcode 0x${code.toString(16).padStart(2, '0')}`;
}
