/**
 * Reading a PyTorch checkpoint (`torch.save`, PyTorch >= 1.6): a ZIP archive holding one
 * folder `<archive>/` with `data.pkl` (the pickled object, tensors replaced by persistent ids),
 * `data/<key>` (the raw little-endian bytes of each storage), `version` and optionally
 * `byteorder`. The pickle is run by the restricted unpickler; see `torch-policy.ts` for the
 * names it accepts.
 */
import { readFileSync } from 'node:fs';
import { PthFormatError, PthUnsupportedError } from './errors.js';
import type { PthGlobal } from './torch-policy.js';
import { TorchPolicy } from './torch-policy.js';
import type { PthStorage, PthTensor } from './tensor.js';
import { unpickle } from './unpickle.js';
import { ZipArchive } from './zip.js';

/**
 * A Python value from a checkpoint, as plain JS: dict -> Map, list -> array, tuple -> frozen
 * array, set -> Set, int -> number (bigint beyond 2^53), float -> number, str -> string,
 * bytes -> Uint8Array, None -> null, `argparse.Namespace` -> null-prototype object, a tensor
 * -> `PthTensor`, a dtype such as `torch.float16` -> `PthGlobal`.
 */
export type PthValue =
  | null
  | boolean
  | number
  | bigint
  | string
  | Uint8Array
  | readonly PthValue[]
  | Map<PthValue, PthValue>
  | Set<PthValue>
  | PthTensor
  | PthStorage
  | PthGlobal
  | { [attribute: string]: PthValue };

/** A checkpoint read by `readPth` / `parsePth`. */
export interface PthFile {
  /** The unpickled object, e.g. a state dict (Map of name -> PthTensor) or a checkpoint dict. */
  root: PthValue;
  /** The file name used in errors. */
  source: string;
  /** The archive folder inside the zip, e.g. `archive` or `mobilenet_v3_small.state_dict`. */
  archive: string;
  /** The serialisation format version from `<archive>/version` (PyTorch writes `3`). */
  version: string | undefined;
  /** Every storage the pickle referenced, by key. Views of one storage share it. */
  storages: Map<string, PthStorage>;
}

/** Options of `parsePth` / `readPth`. */
export interface PthReadOptions {
  /** Names the file in errors (default `<buffer>`; `readPth` uses the path). */
  source?: string;
  /** Check each ZIP entry's CRC-32 (default true). */
  verifyCrc?: boolean;
}

const ZIP_MAGIC = [0x50, 0x4b, 0x03, 0x04];
const EMPTY_ZIP_MAGIC = [0x50, 0x4b, 0x05, 0x06];
/** The start of a legacy torch.save file: PROTO 2, LONG1 of 10 bytes (torch's magic number). */
const LEGACY_MAGIC = [0x80, 0x02, 0x8a, 0x0a, 0x6c, 0xfc, 0x9c, 0x46, 0xf9, 0x20, 0x6a, 0xa8];

/**
 * Reads a checkpoint from a buffer holding a whole `.pth` / `.pth.tar` file.
 * @throws PthForbiddenGlobalError when the pickle names a global off the allowlist,
 *   PthUnsupportedError for legacy, TorchScript or big-endian files, PthFormatError for
 *   corrupt ones. Every message names `opts.source`.
 */
export function parsePth(buf: Uint8Array, opts: PthReadOptions = {}): PthFile {
  const source = opts.source ?? '<buffer>';
  checkMagic(buf, source);
  const zip = new ZipArchive(buf, source, opts.verifyCrc ?? true);

  const pickles = [...zip.entries.keys()].filter((n) => /^([^/]*\/)?data\.pkl$/.test(n));
  if (pickles.length !== 1) {
    const names = [...zip.entries.keys()].slice(0, 5).join(', ');
    throw new PthFormatError(
      source,
      pickles.length === 0
        ? `zip has no <archive>/data.pkl, so it is not a torch.save file (entries: ${names})`
        : `zip has ${pickles.length} data.pkl files (${pickles.join(', ')})`,
    );
  }
  const archive = pickles[0]!.slice(0, -'data.pkl'.length);
  if (zip.entries.has(`${archive}constants.pkl`)) {
    throw new PthUnsupportedError(
      source,
      'this is a TorchScript archive (torch.jit.save); load it in PyTorch and ' +
        'torch.save(model.state_dict(), path) instead',
    );
  }
  const byteorder = readText(zip, `${archive}byteorder`);
  if (byteorder !== undefined && byteorder.trim() !== 'little') {
    throw new PthUnsupportedError(source, `storages are stored '${byteorder.trim()}'-endian`);
  }

  const policy = new TorchPolicy(zip, archive, source);
  const root = unpickle(zip.read(pickles[0]!), source, policy) as PthValue;
  return {
    root,
    source,
    archive: archive.replace(/\/$/, ''),
    version: readText(zip, `${archive}version`)?.trim(),
    storages: policy.storages,
  };
}

/**
 * Reads a checkpoint file (`torch.save` output, `.pth` or `.pth.tar`) without running any of
 * its code. Use `extractStateDict` to get the tensors of a model from the result.
 * @throws as `parsePth`, plus a PthFormatError when the file cannot be read.
 */
export function readPth(path: string, opts: PthReadOptions = {}): PthFile {
  let buf: Buffer;
  try {
    buf = readFileSync(path);
  } catch (err) {
    throw new PthFormatError(path, `cannot read (${(err as Error).message})`);
  }
  return parsePth(buf, { ...opts, source: opts.source ?? path });
}

function checkMagic(buf: Uint8Array, source: string): void {
  const startsWith = (magic: number[]): boolean => magic.every((b, i) => buf[i] === b);
  if (startsWith(ZIP_MAGIC) || startsWith(EMPTY_ZIP_MAGIC)) return;
  if (startsWith(LEGACY_MAGIC)) {
    throw new PthUnsupportedError(
      source,
      'this is the legacy torch.save format (PyTorch < 1.6 or _use_new_zipfile_serialization=' +
        'False); re-save it with a newer PyTorch: torch.save(torch.load(old), new)',
      0,
    );
  }
  if (buf.byteLength > 262 && new TextDecoder().decode(buf.subarray(257, 262)) === 'ustar') {
    throw new PthUnsupportedError(
      source,
      'this is the tar-based torch.save format of PyTorch < 0.4; re-save it with a newer PyTorch',
      0,
    );
  }
  if (buf[8] === 0x7b) {
    throw new PthUnsupportedError(
      source,
      'this looks like a safetensors file (a JSON header at byte 8); read it with readSafetensors',
      0,
    );
  }
  const head = [...buf.subarray(0, 4)].map((b) => b.toString(16).padStart(2, '0')).join(' ');
  throw new PthFormatError(
    source,
    `not a PyTorch checkpoint: it starts with bytes [${head}], a torch.save zip starts with ` +
      `[50 4b 03 04]`,
    0,
  );
}

function readText(zip: ZipArchive, name: string): string | undefined {
  return zip.entries.has(name) ? new TextDecoder().decode(zip.read(name)) : undefined;
}
