/**
 * The errors the `.pth` reader throws. Every one names the file it was reading and, where a
 * position is known, the byte offset (into the file for ZIP errors, into `data.pkl` for
 * pickle errors), so a message alone tells where to look.
 */

/** Base class of every error the `.pth` reader throws. */
export class PthError extends Error {
  /** The file (or `<buffer>` name) being read. */
  readonly source: string;
  /** Byte offset of the problem: in the file for ZIP errors, in `data.pkl` for pickle errors. */
  readonly offset: number | undefined;

  constructor(source: string, message: string, offset?: number) {
    super(`pth ${source}: ${message}${offset === undefined ? '' : ` (at byte ${offset})`}`);
    this.name = new.target.name;
    this.source = source;
    this.offset = offset;
  }
}

/**
 * The file is malformed: truncated data, an offset or length outside the file, a memo index
 * never stored, a stack underflow, a bad CRC, an argument of the wrong type, nesting past the
 * limit.
 */
export class PthFormatError extends PthError {}

/**
 * The pickle names a global (a Python module attribute) that is not on the reader's
 * allowlist, e.g. `posix.system`. Thrown as the GLOBAL / STACK_GLOBAL opcode is read, before
 * anything in the file is built.
 */
export class PthForbiddenGlobalError extends PthError {
  /** The refused global as `module.name`, e.g. `posix.system`. */
  readonly global: string;

  constructor(source: string, global: string, offset: number) {
    super(
      source,
      `refusing global '${global}': it is not on the allowlist of names a checkpoint may use ` +
        `(tensors, storages, dtypes, OrderedDict, set, argparse.Namespace)`,
      offset,
    );
    this.global = global;
  }
}

/**
 * The file is well formed but uses something this reader does not handle: the legacy
 * (pre-1.6) container, a TorchScript archive, a big-endian file, an opcode outside the binary
 * protocols, an int64 value that does not fit in int32, a tensor past the size limit.
 */
export class PthUnsupportedError extends PthError {}

/** `extractStateDict` found no state dict, or the `at` / `prefix` asked for is absent. */
export class PthStateDictError extends PthError {}
