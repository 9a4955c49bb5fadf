import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import {
  floatToHalf,
  halfToFloat,
  parseSafetensors,
  readSafetensors,
  writeSafetensors,
} from '@disco/core';

describe('safetensors', () => {
  it('round-trips F32, F16 and I32 tensors with metadata', () => {
    const dir = mkdtempSync(join(tmpdir(), 'disco-st-'));
    const path = join(dir, 'a.safetensors');
    const tensors = new Map([
      ['w', { shape: [2, 3], values: Float32Array.from([1, -2.5, 3.25, 0, 1e-3, 7]) }],
      ['h', { shape: [3], values: Float32Array.from([0.5, -1, 65504]), dtype: 'F16' as const }],
      ['n', { shape: [], values: Int32Array.from([42]) }],
    ]);
    writeSafetensors(path, tensors, { format: 'pt' });
    const back = readSafetensors(path);
    expect(back.metadata).toEqual({ format: 'pt' });
    expect([...back.tensors.get('w')!.values]).toEqual([1, -2.5, 3.25, 0, Math.fround(1e-3), 7]);
    expect(back.tensors.get('h')!.dtype).toBe('F16');
    expect([...back.tensors.get('h')!.values]).toEqual([0.5, -1, 65504]);
    expect([...back.tensors.get('n')!.values]).toEqual([42]);
    // Data starts 8-byte aligned.
    const raw = readFileSync(path);
    expect((8 + Number(raw.readBigUInt64LE(0))) % 8).toBe(0);
  });

  it('converts half precision exactly for representable values and rounds to nearest', () => {
    for (const v of [0, 1, -2, 0.333251953125, 6.103515625e-5, 5.960464477539063e-8]) {
      expect(halfToFloat(floatToHalf(v))).toBe(v);
    }
    expect(halfToFloat(floatToHalf(1 + 2 ** -11))).toBe(1); // tie to even
    expect(halfToFloat(floatToHalf(1e6))).toBe(Infinity);
  });

  it('reads the PyTorch fixture input written by the reference script', () => {
    const file = readSafetensors(
      fileURLToPath(new URL('../../backbones/test/fixtures/input.safetensors', import.meta.url)),
    );
    const x = file.tensors.get('input_nhwc')!;
    expect(x.shape).toEqual([2, 64, 64, 3]);
    // x[n,c,h,w] = 1.5 sin(0.05 (h*64 + w) + 1.3 c + 2.1 n), stored NHWC.
    const n = 1,
      h = 5,
      w = 7,
      c = 2;
    const expected = 1.5 * Math.sin(0.05 * (h * 64 + w) + 1.3 * c + 2.1 * n);
    expect(x.values[((n * 64 + h) * 64 + w) * 3 + c]).toBeCloseTo(expected, 6);
  });

  it('refuses truncated files and absurd header lengths, naming the file', () => {
    const dir = mkdtempSync(join(tmpdir(), 'disco-st-'));
    const path = join(dir, 'b.safetensors');
    writeSafetensors(path, new Map([['w', { shape: [4], values: new Float32Array(4) }]]));
    const buf = readFileSync(path);
    writeFileSync(path, buf.subarray(0, buf.length - 3));
    expect(() => readSafetensors(path)).toThrow(/b\.safetensors.*offsets/);
    const huge = Buffer.alloc(16);
    huge.writeBigUInt64LE(2n ** 60n, 0);
    expect(() => parseSafetensors(huge, 'huge.st')).toThrow(/huge\.st: header declares/);
    expect(() => parseSafetensors(new Uint8Array(3), 'tiny.st')).toThrow(/tiny\.st/);
  });
});
