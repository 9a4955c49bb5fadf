// loadImageFolder on small folders written here with sharp: known colours in, known bytes out.
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { crc32, deflateSync } from 'node:zlib';
import sharp from 'sharp';
import { afterAll, describe, expect, it } from 'vitest';
import {
  BadImagesError,
  ImageFolderError,
  loadImageFolder,
  type ImageFolderOptions,
} from '@disco/data';

const tmp = mkdtempSync(join(tmpdir(), 'image-folder-'));
afterAll(() => rmSync(tmp, { recursive: true, force: true }));

/** Writes `files` (relative path -> bytes) under a fresh folder and returns the folder. */
function folder(name: string, files: Record<string, Uint8Array | string>): string {
  const root = join(tmp, name);
  mkdirSync(root, { recursive: true });
  for (const [rel, bytes] of Object.entries(files)) {
    mkdirSync(dirname(join(root, rel)), { recursive: true });
    writeFileSync(join(root, rel), bytes);
  }
  return root;
}

type Rgb = [number, number, number];

function solid(width: number, height: number, [r, g, b]: Rgb, alpha = 1) {
  const channels = alpha === 1 ? 3 : 4;
  return sharp({ create: { width, height, channels, background: { r, g, b, alpha } } });
}

/** `width x height` RGB pixels from `f(x, y)`, as a sharp pipeline. */
function painted(width: number, height: number, f: (x: number, y: number) => Rgb) {
  const px = Buffer.alloc(width * height * 3);
  for (let y = 0; y < height; y++) {
    for (let x = 0; x < width; x++) px.set(f(x, y), (y * width + x) * 3);
  }
  return sharp(px, { raw: { width, height, channels: 3 } });
}

/** A 16-bit PNG of one value, built by hand so that the fixture does not depend on sharp. */
function png16(width: number, height: number, channels: 1 | 3, value: number): Buffer {
  const chunk = (type: string, data: Buffer) => {
    const body = Buffer.concat([Buffer.from(type, 'ascii'), data]);
    const out = Buffer.alloc(12 + data.length);
    out.writeUInt32BE(data.length, 0);
    body.copy(out, 4);
    out.writeUInt32BE(crc32(body), 8 + data.length);
    return out;
  };
  const header = Buffer.alloc(13);
  header.writeUInt32BE(width, 0);
  header.writeUInt32BE(height, 4);
  header[8] = 16; // bit depth
  header[9] = channels === 3 ? 2 : 0; // colour type: truecolour or grey
  const stride = 1 + width * channels * 2; // a filter byte, then big-endian samples
  const scan = Buffer.alloc(stride * height);
  for (let y = 0; y < height; y++) {
    for (let i = 0; i < width * channels; i++) scan.writeUInt16BE(value, y * stride + 1 + 2 * i);
  }
  const signature = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);
  const end = chunk('IEND', Buffer.alloc(0));
  return Buffer.concat([signature, chunk('IHDR', header), chunk('IDAT', deflateSync(scan)), end]);
}

/** Pixel (x, y) of image `n` of a set. */
function pixel(
  set: { images: Uint8Array; width: number; height: number; channels: number },
  n: number,
  x: number,
  y: number,
): number[] {
  const c = set.channels;
  const at = ((n * set.height + y) * set.width + x) * c;
  return [...set.images.subarray(at, at + c)];
}

const quiet: Pick<ImageFolderOptions, 'onWarning'> = { onWarning: () => {} };

describe('loadImageFolder, labelled', () => {
  it('sorts classes by code point and files by folder, then name, as torchvision does', async () => {
    const png = (rgb: Rgb) => solid(12, 12, rgb).png().toBuffer();
    const root = folder('classes', {
      'b/z.png': await png([10, 20, 30]),
      'b/a/1.png': await png([40, 50, 60]),
      'b/a-c/2.png': await png([70, 80, 90]),
      'a/x.png': await png([100, 110, 120]),
      'a/notes.txt': 'not an image',
      'a/.DS_Store': 'x',
      'a/._x.png': 'macOS resource fork',
      'B/y.PNG': await png([130, 140, 150]),
      'é/e.png': await png([160, 170, 180]),
      '\u{1F600}/s.png': await png([190, 200, 210]),
      '\uFF5E/t.png': await png([220, 230, 240]),
      'README.md': 'root files besides class folders are ignored',
    });
    const set = await loadImageFolder({ root, size: 4, channels: 3, ...quiet });

    // 'B' (U+42) < 'a' < 'b' < 'é' (U+E9) < '～' (U+FF5E) < '😀' (U+1F600); in UTF-16 units
    // '😀' (D83D DE00) would come before '～'.
    expect(set.classNames).toEqual(['B', 'a', 'b', 'é', '\uFF5E', '\u{1F600}']);
    // Within class b: its own files first, then folder 'a', then 'a-c' (a plain sort of the
    // relative paths would give a-c/2.png, a/1.png, z.png).
    const rel = set.paths.map((p) => p.slice(root.length + 1));
    expect(rel).toEqual([
      'B/y.PNG',
      'a/x.png',
      'b/z.png',
      'b/a/1.png',
      'b/a-c/2.png',
      'é/e.png',
      '\uFF5E/t.png',
      '\u{1F600}/s.png',
    ]);
    expect([...set.labels]).toEqual([0, 1, 2, 2, 2, 3, 4, 5]);
    expect([set.count, set.height, set.width, set.channels]).toEqual([8, 4, 4, 3]);
    expect(set.images.length).toBe(8 * 4 * 4 * 3);
    // Solid colours come back exactly, in path order.
    const colours = [130, 100, 10, 40, 70, 160, 220, 190];
    colours.forEach((r, n) => expect(pixel(set, n, 3, 2)).toEqual([r, r + 10, r + 20]));
    expect(set.skipped).toEqual([]);
    expect(set.ignored).toBe(4); // notes.txt, .DS_Store, ._x.png, README.md
  });

  it('resizes the shorter side and crops the centre', async () => {
    // 32x16: red columns 0..7, green 8..23, blue 24..31. Halved to 16x8, the centre 8 columns
    // are exactly the green half; squashing the whole width would keep red and blue edges.
    const wide = await painted(32, 16, (x) =>
      x < 8 ? [255, 0, 0] : x < 24 ? [0, 255, 0] : [0, 0, 255],
    )
      .png()
      .toBuffer();
    const root = folder('crop', { 'only/wide.png': wide });
    const set = await loadImageFolder({ root, size: 8, channels: 3 });
    for (let y = 0; y < 8; y++) {
      for (let x = 1; x < 7; x++) expect(pixel(set, 0, x, y)).toEqual([0, 255, 0]);
      // The edge columns' filter reaches one source pixel past the crop.
      expect(pixel(set, 0, 0, y)[1]).toBeGreaterThan(190);
      expect(pixel(set, 0, 7, y)[1]).toBeGreaterThan(190);
    }
  });

  it('applies EXIF orientation, flattens alpha on black, converts grey and 16-bit', async () => {
    // Stored 16x8, left half red, right half blue, tagged orientation 6 (rotate 90° clockwise
    // to display): shown 8x16, red on top. Without the rotation row 0 would be half blue.
    const stored = painted(16, 8, (x) => (x < 8 ? [255, 0, 0] : [0, 0, 255]));
    const rotated = await stored
      .jpeg({ quality: 100, chromaSubsampling: '4:4:4' })
      .withMetadata({ orientation: 6 })
      .toBuffer();
    expect((await sharp(rotated).metadata()).orientation).toBe(6);
    const grey = await sharp(Buffer.alloc(10 * 10, 77), {
      raw: { width: 10, height: 10, channels: 1 },
    })
      .toColourspace('b-w')
      .png()
      .toBuffer();
    expect((await sharp(grey).metadata()).channels).toBe(1);
    const root = folder('pixels', {
      'c/1-rotated.jpg': rotated,
      // alpha 0.5 is stored as 128: 200 * 128 / 255 = 100.4, 100 -> 50.2, 50 -> 25.1.
      'c/2-alpha.png': await solid(10, 10, [200, 100, 50], 0.5).png().toBuffer(),
      'c/3-grey.png': grey,
      'c/4-lossless.webp': await solid(10, 6, [12, 34, 56]).webp({ lossless: true }).toBuffer(),
      'c/5-lossy.WEBP': await solid(10, 6, [200, 30, 90]).webp({ quality: 90 }).toBuffer(),
      // 40000 / 65535 of full scale is 155.6 of 255.
      'c/6-rgb16.png': png16(6, 6, 3, 40000),
      'c/7-grey16.png': png16(6, 6, 1, 40000),
    });
    const set = await loadImageFolder({ root, size: 8, channels: 3 });
    expect(set.count).toBe(7);
    for (let x = 0; x < 8; x++) {
      const [r0, g0, b0] = pixel(set, 0, x, 0);
      const [r7, g7, b7] = pixel(set, 0, x, 7);
      expect(r0).toBeGreaterThan(240);
      expect(Math.max(g0!, b0!)).toBeLessThan(15);
      expect(b7).toBeGreaterThan(240);
      expect(Math.max(r7!, g7!)).toBeLessThan(15);
    }
    expect(pixel(set, 1, 4, 4)).toEqual([100, 50, 25]);
    expect(pixel(set, 2, 4, 4)).toEqual([77, 77, 77]);
    expect(pixel(set, 3, 4, 4)).toEqual([12, 34, 56]);
    pixel(set, 4, 4, 4).forEach((v, c) => expect(Math.abs(v - [200, 30, 90][c]!)).toBeLessThan(6));
    expect(pixel(set, 5, 4, 4)).toEqual([156, 156, 156]);
    expect(pixel(set, 6, 4, 4)).toEqual([156, 156, 156]);
  });

  it('reads RGB as one channel of ITU-R 601 luma', async () => {
    const gradient = (x: number, y: number): Rgb => [x * 16, y * 16, 255 - x * 8 - y * 8];
    const root = folder('luma', {
      'c/solid.png': await solid(8, 8, [200, 50, 100]).png().toBuffer(),
      'c/gradient.png': await painted(16, 16, gradient).png().toBuffer(),
    });
    const grey = await loadImageFolder({ root, size: 16, channels: 1 });
    const rgb = await loadImageFolder({ root, size: 16, channels: 3 });
    expect(grey.channels).toBe(1);
    expect(grey.images.length).toBe(2 * 16 * 16);
    expect(grey.paths.map((p) => p.slice(root.length))).toEqual([
      '/c/gradient.png',
      '/c/solid.png',
    ]);
    // 0.299 * 200 + 0.587 * 50 + 0.114 * 100 = 100.55.
    expect(pixel(grey, 1, 5, 5)).toEqual([101]);
    // Every gradient pixel: the luma of the RGB one, to within rounding.
    for (let y = 0; y < 16; y++) {
      for (let x = 0; x < 16; x++) {
        const [r, g, b] = pixel(rgb, 0, x, y) as Rgb;
        expect(pixel(rgb, 0, x, y)).toEqual(gradient(x, y));
        expect(
          Math.abs(pixel(grey, 0, x, y)[0]! - (0.299 * r + 0.587 * g + 0.114 * b)),
        ).toBeLessThanOrEqual(0.51);
      }
    }
  });

  it('keeps the first `limit` files and every class name', async () => {
    const png = await solid(6, 6, [1, 2, 3]).png().toBuffer();
    const root = folder('limit', {
      'a/1.png': png,
      'a/2.png': png,
      'b/1.png': png,
      'c/1.png': png,
    });
    const set = await loadImageFolder({ root, size: 2, channels: 1, limit: 3 });
    expect(set.count).toBe(3);
    expect(set.paths.map((p) => p.slice(root.length))).toEqual([
      '/a/1.png',
      '/a/2.png',
      '/b/1.png',
    ]);
    expect([...set.labels]).toEqual([0, 0, 1]);
    expect(set.classNames).toEqual(['a', 'b', 'c']);
    expect(set.images.length).toBe(3 * 2 * 2);
  });
});

describe('loadImageFolder, unlabelled', () => {
  it('reads every image at any depth when the root holds images itself', async () => {
    const png = (v: number) => solid(5, 5, [v, v, v]).png().toBuffer();
    const root = folder('unlabelled', {
      'top.png': await png(10),
      'x/mid.jpeg': await solid(5, 5, [20, 20, 20]).jpeg({ quality: 100 }).toBuffer(),
      'x/y/deep.png': await png(30),
      'x/y/skip.gif': 'ignored extension',
    });
    const set = await loadImageFolder({ root, size: 3, channels: 1 });
    expect(set.paths.map((p) => p.slice(root.length))).toEqual([
      '/top.png',
      '/x/mid.jpeg',
      '/x/y/deep.png',
    ]);
    expect([...set.labels]).toEqual([0, 0, 0]);
    expect(set.classNames).toEqual([]);
    expect([pixel(set, 0, 1, 1), pixel(set, 2, 1, 1)]).toEqual([[10], [30]]);
    expect(Math.abs(pixel(set, 1, 1, 1)[0]! - 20)).toBeLessThanOrEqual(1);
    expect(set.ignored).toBe(1);
  });

  it('reads a class layout without labels when asked', async () => {
    const png = await solid(5, 5, [9, 9, 9]).png().toBuffer();
    const root = folder('forced-unlabelled', { 'a/1.png': png, 'b/2.png': png });
    const set = await loadImageFolder({ root, size: 3, channels: 3, labelled: false });
    expect(set.count).toBe(2);
    expect(set.classNames).toEqual([]);
    expect([...set.labels]).toEqual([0, 0]);
  });
});

describe('loadImageFolder, bad files and bad folders', () => {
  const goodAndBad = async (name: string, badPrefix: string) => {
    const noise = await painted(64, 64, (x, y) => [(x * 37) & 255, (y * 91) & 255, (x * y) & 255])
      .jpeg()
      .toBuffer();
    const files: Record<string, Uint8Array | string> = {};
    for (let i = 0; i < 8; i++) {
      files[`c/good${i}.png`] = await solid(16, 16, [30 * i, 100, 250 - 30 * i])
        .png()
        .toBuffer();
    }
    files[`c/${badPrefix}truncated.jpg`] = noise.subarray(0, Math.floor(noise.length * 0.6));
    files[`c/${badPrefix}text.png`] = 'this is not a PNG';
    return folder(name, files);
  };

  it('skips a truncated JPEG and a text file with one warning each', async () => {
    const root = await goodAndBad('bad-ok', 'good3-');
    const warnings: string[] = [];
    const set = await loadImageFolder({
      root,
      size: 8,
      channels: 3,
      maxBadFraction: 0.2,
      onWarning: (line) => warnings.push(line),
    });
    expect(set.count).toBe(8);
    expect(set.paths.every((p, n) => p.endsWith(`good${n}.png`))).toBe(true);
    expect(set.images.length).toBe(8 * 8 * 8 * 3);
    expect(set.skipped.map((s) => s.path)).toEqual([
      join(root, 'c/good3-text.png'),
      join(root, 'c/good3-truncated.jpg'),
    ]);
    expect(set.skipped[0]!.reason).toMatch(/unsupported image format/);
    expect(set.skipped[1]!.reason).toMatch(/premature end of JPEG/);
    expect(warnings.sort()).toEqual([
      `loadImageFolder: skipped ${join(root, 'c/good3-text.png')}: ${set.skipped[0]!.reason}`,
      `loadImageFolder: skipped ${join(root, 'c/good3-truncated.jpg')}: ${set.skipped[1]!.reason}`,
    ]);
    // The bad files sort between good2.png and good3.png ('-' < '.'): closing their gap keeps order.
    for (let n = 0; n < 8; n++) expect(pixel(set, n, 5, 2)).toEqual([30 * n, 100, 250 - 30 * n]);
  });

  it('keeps order across decode chunks of 256 files, with a bad file in the second', async () => {
    const files: Record<string, Uint8Array | string> = {};
    for (let i = 0; i < 300; i++) {
      const png = await solid(2, 2, [i & 255, i >> 8, 7])
        .png()
        .toBuffer();
      files[`${String(i).padStart(3, '0')}.png`] = i === 270 ? 'broken' : png;
    }
    const root = folder('chunks', files);
    const warnings: string[] = [];
    const set = await loadImageFolder({
      root,
      size: 1,
      channels: 3,
      onWarning: (line) => warnings.push(line),
    });
    expect(set.count).toBe(299); // 1 bad of 300 is within the default 0.01 (3 files)
    expect(warnings).toEqual([expect.stringContaining(`${join(root, '270.png')}: `)]);
    const expected = [...Array(300).keys()].filter((i) => i !== 270);
    expected.forEach((i, n) => expect(pixel(set, n, 0, 0)).toEqual([i & 255, i >> 8, 7]));
  });

  it('throws BadImagesError over maxBadFraction, naming count, fraction and files', async () => {
    const root = await goodAndBad('bad-many', 'zz-');
    const err = await loadImageFolder({
      root,
      size: 8,
      channels: 3,
      maxBadFraction: 0.1,
      ...quiet,
    }).then(
      () => null,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(BadImagesError);
    const bad = err as BadImagesError;
    expect(bad.message).toMatch(
      /2 of 10 image files .* failed to decode \(20\.0%, over maxBadFraction 0\.1\)/,
    );
    expect(bad.message).toContain(join(root, 'c/zz-text.png'));
    expect(bad.message).toContain(join(root, 'c/zz-truncated.jpg'));
    expect([bad.skipped.length, bad.total, bad.folder]).toEqual([2, 10, root]);
  });

  it('stops decoding once the allowed fraction is used up', async () => {
    const root = await goodAndBad('bad-first', '0-');
    const warnings: string[] = [];
    const err = await loadImageFolder({
      root,
      size: 8,
      channels: 3,
      workers: 1,
      onWarning: (line) => warnings.push(line),
    }).then(
      () => null,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(BadImagesError);
    // Default maxBadFraction 0.01 of 10 files allows none: the first bad file ends it.
    expect((err as Error).message).toMatch(
      /1 of 10 image files .*over maxBadFraction 0\.01, loading stopped after 1\)/,
    );
    expect(warnings).toEqual([expect.stringContaining('0-text.png')]);
  });

  it('names the folder when it is missing, empty or has empty classes', async () => {
    const empty = folder('empty', {});
    await expect(loadImageFolder({ root: empty, size: 4, channels: 3 })).rejects.toThrow(
      new RegExp(`no \\.jpg/\\.jpeg/\\.png/\\.webp image under ${empty} \\(0 other files\\)`),
    );
    await expect(loadImageFolder({ root: empty, size: 4, channels: 3 })).rejects.toBeInstanceOf(
      ImageFolderError,
    );
    await expect(
      loadImageFolder({ root: join(tmp, 'nowhere'), size: 4, channels: 3 }),
    ).rejects.toThrow(`loadImageFolder: ${join(tmp, 'nowhere')} is not a folder`);
    const png = await solid(4, 4, [0, 0, 0]).png().toBuffer();
    const classes = folder('empty-class', {
      'a/1.png': png,
      'b/readme.txt': 'no images',
      'c/d/e.txt': '',
    });
    await expect(loadImageFolder({ root: classes, size: 4, channels: 3 })).rejects.toThrow(
      `2 of 3 class folders in ${classes} hold no .jpg/.jpeg/.png/.webp image: ` +
        `${join(classes, 'b')}, ${join(classes, 'c')}`,
    );
    const flat = folder('flat', { '1.png': png });
    await expect(
      loadImageFolder({ root: flat, size: 4, channels: 3, labelled: true }),
    ).rejects.toThrow(`${flat} has no class folders`);
  });

  it('refuses invalid options, naming the value', async () => {
    const root = folder('options', {});
    const base = { root, size: 4, channels: 3 } as const;
    await expect(loadImageFolder({ ...base, size: 0 })).rejects.toThrow(
      'size must be a positive integer, got 0',
    );
    await expect(loadImageFolder({ ...base, channels: 2 as 1 })).rejects.toThrow(
      'channels must be 1 or 3, got 2',
    );
    await expect(loadImageFolder({ ...base, limit: 1.5 })).rejects.toThrow(
      'limit must be a positive integer, got 1.5',
    );
    await expect(loadImageFolder({ ...base, maxBadFraction: 2 })).rejects.toThrow(
      'maxBadFraction must be in [0, 1], got 2',
    );
    await expect(loadImageFolder({ ...base, workers: 0 })).rejects.toThrow(
      'workers must be a positive integer, got 0',
    );
  });
});
