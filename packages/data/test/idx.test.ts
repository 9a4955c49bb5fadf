import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { afterAll, describe, expect, it } from 'vitest';
import { parseIdx, readIdx } from '@disco/data';

const dir = mkdtempSync(join(tmpdir(), 'disco-idx-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

/** Builds IDX bytes by hand: magic, big-endian dims, then the given body bytes. */
function idxBytes(typeCode: number, shape: number[], body: number[]): Uint8Array {
  const header = [0, 0, typeCode, shape.length];
  for (const d of shape) header.push((d >>> 24) & 255, (d >>> 16) & 255, (d >>> 8) & 255, d & 255);
  return Uint8Array.from([...header, ...body]);
}

function write(name: string, bytes: Uint8Array): string {
  const path = join(dir, name);
  writeFileSync(path, bytes);
  return path;
}

describe('readIdx', () => {
  const values = [0, 1, 2, 127, 128, 255, 9, 8, 7, 6, 5, 4];
  const bytes = idxBytes(0x08, [2, 3, 2], values);

  it('reads a plain uint8 file with its shape and values', () => {
    const arr = readIdx(write('plain-idx3-ubyte', bytes));
    expect(arr.dtype).toBe('uint8');
    expect(arr.shape).toEqual([2, 3, 2]);
    expect([...arr.data]).toEqual(values);
  });

  it('reads the same file gzipped', () => {
    const arr = readIdx(write('gz-idx3-ubyte.gz', gzipSync(bytes)));
    expect(arr.shape).toEqual([2, 3, 2]);
    expect([...arr.data]).toEqual(values);
  });

  it('decodes big-endian int16, int32, float32 and float64 values', () => {
    // int16 -2 = ff fe, 300 = 01 2c
    const i16 = readIdx(write('i16', idxBytes(0x0b, [2], [0xff, 0xfe, 0x01, 0x2c])));
    expect(i16.dtype).toBe('int16');
    expect([...i16.data]).toEqual([-2, 300]);
    // int32 -70000 = ff fe ee 90
    const i32 = readIdx(write('i32', idxBytes(0x0c, [1], [0xff, 0xfe, 0xee, 0x90])));
    expect([...i32.data]).toEqual([-70000]);
    // float32 1.5 = 3f c0 00 00, -0.25 = be 80 00 00
    const f32 = readIdx(write('f32', idxBytes(0x0d, [2, 1], [0x3f, 0xc0, 0, 0, 0xbe, 0x80, 0, 0])));
    expect(f32.dtype).toBe('float32');
    expect(f32.shape).toEqual([2, 1]);
    expect([...f32.data]).toEqual([1.5, -0.25]);
    // float64 -2.5 = c0 04 00 00 00 00 00 00
    const f64 = parseIdx(idxBytes(0x0e, [1], [0xc0, 0x04, 0, 0, 0, 0, 0, 0]), 'f64');
    expect([...f64.data]).toEqual([-2.5]);
    // int8 -1 = ff
    expect([...parseIdx(idxBytes(0x09, [2], [0xff, 0x05]), 'i8').data]).toEqual([-1, 5]);
  });

  it('refuses a truncated file, naming it and both byte counts', () => {
    const path = write('short-idx3-ubyte', bytes.subarray(0, bytes.length - 2));
    // header 4 + 3 * 4 = 16 bytes, body 12: expected 28, the file holds 26.
    expect(() => readIdx(path)).toThrow(path);
    expect(() => readIdx(path)).toThrow(/truncated.*expected 28 bytes, actual 26 bytes/);
    const gz = write('short-idx3-ubyte.gz', gzipSync(bytes.subarray(0, 20)));
    expect(() => readIdx(gz)).toThrow(/short-idx3-ubyte\.gz is truncated.*expected 28.*actual 20/);
  });

  it('refuses trailing bytes and a cut gzip stream', () => {
    const long = write('long', Uint8Array.from([...bytes, 0]));
    expect(() => readIdx(long)).toThrow(/trailing bytes.*expected 28 bytes, actual 29/);
    const gz = gzipSync(bytes);
    const cut = write('cut.gz', gz.subarray(0, gz.length - 12));
    expect(() => readIdx(cut)).toThrow(/cannot decompress gzipped IDX file .*cut\.gz/);
  });

  it('refuses a wrong magic', () => {
    const notZero = Uint8Array.from(bytes);
    notZero[0] = 1;
    expect(() => readIdx(write('magic0', notZero))).toThrow(/not an IDX file.*got 01 00 08 03/);
    expect(() => parseIdx(idxBytes(0x0a, [1], [0]), 'badtype')).toThrow(/got 00 00 0a 01/);
    expect(() => parseIdx(Uint8Array.from([0, 0, 8, 0]), 'nodims')).toThrow(/ndim >= 1/);
    expect(() => parseIdx(Uint8Array.from([0, 0]), 'tiny')).toThrow(/too short.*2 bytes/);
  });

  it('refuses an absurd declared size before allocating', () => {
    const huge = idxBytes(0x0d, [0xffffffff, 0xffffffff, 1000], [1, 2, 3, 4]);
    expect(() => parseIdx(huge, 'huge')).toThrow(
      /huge declares shape \[4294967295.*over the limit/,
    );
    expect(() => parseIdx(bytes, 'small', { maxBytes: 8 })).toThrow(
      /12 bytes, over the limit of 8/,
    );
  });

  it('names a missing file', () => {
    expect(() => readIdx(join(dir, 'nope.gz'))).toThrow(/cannot read IDX file .*nope\.gz/);
  });
});
