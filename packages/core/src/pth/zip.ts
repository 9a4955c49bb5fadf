/**
 * A minimal ZIP reader, enough for the containers `torch.save` writes (PKWARE APPNOTE 6.3:
 * end of central directory record, central directory, local headers; ZIP64 records and extra
 * fields). Entries may be stored (what PyTorch writes) or deflated (a re-zipped checkpoint).
 * Every offset and length is checked against the buffer before it is used, and each entry's
 * CRC-32 is checked when it is read.
 */
import { inflateRawSync } from 'node:zlib';
import { PthFormatError, PthUnsupportedError } from './errors.js';

/** One file inside the archive, as the central directory describes it. */
export interface ZipEntry {
  name: string;
  /** 0 stored, 8 deflated. */
  method: number;
  crc32: number;
  compressedSize: number;
  size: number;
  /** Offset of the entry's local header in the file. */
  headerOffset: number;
}

const EOCD_SIGNATURE = 0x06054b50;
const ZIP64_LOCATOR_SIGNATURE = 0x07064b50;
const ZIP64_EOCD_SIGNATURE = 0x06064b50;
const CENTRAL_SIGNATURE = 0x02014b50;
const LOCAL_SIGNATURE = 0x04034b50;
const EOCD_BYTES = 22;
const MAX_COMMENT_BYTES = 0xffff;

/** The archive's entries by name, and a checked reader of their bytes. */
export class ZipArchive {
  readonly entries = new Map<string, ZipEntry>();
  private readonly view: DataView;

  constructor(
    private readonly buf: Uint8Array,
    private readonly source: string,
    private readonly verifyCrc = true,
  ) {
    this.view = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
    this.readCentralDirectory();
  }

  /** The bytes of entry `name`, uncompressed; a view into the file for stored entries. */
  read(name: string): Uint8Array {
    const entry = this.entries.get(name);
    if (!entry) throw new PthFormatError(this.source, `zip has no entry '${name}'`);
    const at = entry.headerOffset;
    this.need(at, 30, `local header of '${name}'`);
    if (this.view.getUint32(at, true) !== LOCAL_SIGNATURE) {
      throw new PthFormatError(this.source, `local header of '${name}' has a bad signature`, at);
    }
    const start = at + 30 + this.view.getUint16(at + 26, true) + this.view.getUint16(at + 28, true);
    this.need(start, entry.compressedSize, `data of '${name}'`);
    const raw = this.buf.subarray(start, start + entry.compressedSize);

    let data: Uint8Array;
    if (entry.method === 0) {
      if (entry.compressedSize !== entry.size) {
        throw new PthFormatError(
          this.source,
          `stored entry '${name}' has compressed size ${entry.compressedSize} != size ${entry.size}`,
          at,
        );
      }
      data = raw;
    } else {
      try {
        // maxOutputLength stops a deflate bomb at the size the directory declared.
        data = inflateRawSync(raw, { maxOutputLength: Math.max(1, entry.size) });
      } catch (err) {
        throw new PthFormatError(
          this.source,
          `deflated entry '${name}' does not inflate to its declared ${entry.size} bytes ` +
            `(${(err as Error).message})`,
          start,
        );
      }
      if (data.byteLength !== entry.size) {
        throw new PthFormatError(
          this.source,
          `deflated entry '${name}' inflates to ${data.byteLength} bytes, declared ${entry.size}`,
          start,
        );
      }
    }
    if (this.verifyCrc) {
      const crc = crc32(data);
      if (crc !== entry.crc32) {
        throw new PthFormatError(
          this.source,
          `entry '${name}' fails its CRC-32 check (stored ${hex(entry.crc32)}, computed ` +
            `${hex(crc)}): the file is corrupt`,
          start,
        );
      }
    }
    return data;
  }

  private readCentralDirectory(): void {
    const eocd = this.findEndOfCentralDirectory();
    let count = this.view.getUint16(eocd + 10, true);
    let size = this.view.getUint32(eocd + 12, true);
    let offset = this.view.getUint32(eocd + 16, true);
    if (this.view.getUint16(eocd + 4, true) !== 0 || this.view.getUint16(eocd + 6, true) !== 0) {
      throw new PthUnsupportedError(this.source, 'zip archives split over several disks', eocd);
    }
    if (count === 0xffff || size === 0xffffffff || offset === 0xffffffff) {
      [count, size, offset] = this.readZip64End(eocd);
    }
    this.need(offset, size, 'central directory');
    // Each central header takes at least 46 bytes: a count the directory cannot hold is a lie.
    if (count * 46 > size) {
      throw new PthFormatError(
        this.source,
        `central directory declares ${count} entries in ${size} bytes`,
        eocd,
      );
    }

    let at = offset;
    const end = offset + size;
    for (let i = 0; i < count; i++) {
      if (at + 46 > end || this.view.getUint32(at, true) !== CENTRAL_SIGNATURE) {
        throw new PthFormatError(this.source, `central directory entry ${i} is malformed`, at);
      }
      const flags = this.view.getUint16(at + 8, true);
      const nameLen = this.view.getUint16(at + 28, true);
      const extraLen = this.view.getUint16(at + 30, true);
      const commentLen = this.view.getUint16(at + 32, true);
      if (at + 46 + nameLen + extraLen + commentLen > end) {
        throw new PthFormatError(this.source, `central directory entry ${i} overruns it`, at);
      }
      const name = new TextDecoder().decode(this.buf.subarray(at + 46, at + 46 + nameLen));
      const entry: ZipEntry = {
        name,
        method: this.view.getUint16(at + 10, true),
        crc32: this.view.getUint32(at + 16, true),
        compressedSize: this.view.getUint32(at + 20, true),
        size: this.view.getUint32(at + 24, true),
        headerOffset: this.view.getUint32(at + 42, true),
      };
      this.applyZip64Extra(entry, at + 46 + nameLen, extraLen);
      if (flags & 1) {
        throw new PthUnsupportedError(this.source, `zip entry '${name}' is encrypted`, at);
      }
      if (entry.method !== 0 && entry.method !== 8) {
        throw new PthUnsupportedError(
          this.source,
          `zip entry '${name}' uses compression method ${entry.method} (only stored and deflate)`,
          at,
        );
      }
      if (this.entries.has(name)) {
        throw new PthFormatError(this.source, `zip entry '${name}' appears twice`, at);
      }
      this.entries.set(name, entry);
      at += 46 + nameLen + extraLen + commentLen;
    }
  }

  private findEndOfCentralDirectory(): number {
    const len = this.buf.byteLength;
    if (len < EOCD_BYTES) {
      throw new PthFormatError(this.source, `file is ${len} bytes, too short for a zip archive`);
    }
    const lowest = Math.max(0, len - EOCD_BYTES - MAX_COMMENT_BYTES);
    for (let at = len - EOCD_BYTES; at >= lowest; at--) {
      if (
        this.view.getUint32(at, true) === EOCD_SIGNATURE &&
        at + EOCD_BYTES + this.view.getUint16(at + 20, true) === len
      ) {
        return at;
      }
    }
    throw new PthFormatError(
      this.source,
      'no zip end-of-central-directory record: the file is truncated or not a zip archive',
    );
  }

  /** [count, size, offset] from the ZIP64 end record the locator before `eocd` points to. */
  private readZip64End(eocd: number): [number, number, number] {
    const locator = eocd - 20;
    if (locator < 0 || this.view.getUint32(locator, true) !== ZIP64_LOCATOR_SIGNATURE) {
      throw new PthFormatError(this.source, 'zip64 fields without a zip64 locator', eocd);
    }
    const end64 = this.u64(locator + 8, 'zip64 end record offset');
    this.need(end64, 56, 'zip64 end record');
    if (this.view.getUint32(end64, true) !== ZIP64_EOCD_SIGNATURE) {
      throw new PthFormatError(this.source, 'zip64 end record has a bad signature', end64);
    }
    return [
      this.u64(end64 + 32, 'zip64 entry count'),
      this.u64(end64 + 40, 'zip64 central directory size'),
      this.u64(end64 + 48, 'zip64 central directory offset'),
    ];
  }

  /** Replaces the 0xffffffff placeholders of `entry` by the values of its ZIP64 extra field. */
  private applyZip64Extra(entry: ZipEntry, start: number, length: number): void {
    const needs = [
      entry.size === 0xffffffff,
      entry.compressedSize === 0xffffffff,
      entry.headerOffset === 0xffffffff,
    ];
    if (!needs.includes(true)) return;
    for (let at = start; at + 4 <= start + length;) {
      const id = this.view.getUint16(at, true);
      const size = this.view.getUint16(at + 2, true);
      if (at + 4 + size > start + length) break;
      if (id === 0x0001) {
        let field = at + 4;
        const next = (what: string): number => {
          if (field + 8 > at + 4 + size) {
            throw new PthFormatError(this.source, `zip64 extra of '${entry.name}' lacks ${what}`);
          }
          const value = this.u64(field, what);
          field += 8;
          return value;
        };
        if (needs[0]) entry.size = next('size');
        if (needs[1]) entry.compressedSize = next('compressed size');
        if (needs[2]) entry.headerOffset = next('header offset');
        return;
      }
      at += 4 + size;
    }
    throw new PthFormatError(this.source, `zip entry '${entry.name}' lacks its zip64 extra field`);
  }

  private u64(at: number, what: string): number {
    const value = this.view.getBigUint64(at, true);
    if (value > BigInt(Number.MAX_SAFE_INTEGER)) {
      throw new PthFormatError(this.source, `${what} ${value} is beyond any real file`, at);
    }
    return Number(value);
  }

  /** Throws unless bytes [at, at + length) lie inside the file. */
  private need(at: number, length: number, what: string): void {
    if (!(at >= 0 && length >= 0 && at + length <= this.buf.byteLength)) {
      throw new PthFormatError(
        this.source,
        `${what} spans bytes [${at}, ${at + length}) but the file has ${this.buf.byteLength}`,
        at,
      );
    }
  }
}

let crcTable: Uint32Array | undefined;

/** CRC-32 (the reflected 0xEDB88320 polynomial ZIP uses) of `data`. */
export function crc32(data: Uint8Array): number {
  if (!crcTable) {
    crcTable = new Uint32Array(256);
    for (let n = 0; n < 256; n++) {
      let c = n;
      for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
      crcTable[n] = c >>> 0;
    }
  }
  let crc = 0xffffffff;
  for (let i = 0; i < data.length; i++) crc = crcTable[(crc ^ data[i]!) & 0xff]! ^ (crc >>> 8);
  return (crc ^ 0xffffffff) >>> 0;
}

function hex(n: number): string {
  return `0x${n.toString(16).padStart(8, '0')}`;
}
