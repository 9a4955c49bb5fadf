import { mkdirSync, mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { beforeAll, describe, expect, it } from 'vitest';
import { readPth, readSafetensors, tf, writeSafetensors, type RawTensor } from '@disco/core';
import {
  describeWeights,
  detectArchitecture,
  embed,
  exportModel,
  importModel,
  readWeights,
} from '../src/model-io.js';
import { disco } from './helpers.js';

const root = fileURLToPath(new URL('../../../', import.meta.url));
const pth = (f: string) => join(root, 'packages/core/test/fixtures/pth', f);
const tv = (f: string) => join(root, 'packages/backbones/test/fixtures', f);
const teacher = join(root, 'packages/cli/assets/teacher/encoder.safetensors');

beforeAll(async () => {
  await tf.setBackend('cpu');
});

function maxAbsDiff(a: Float32Array, b: Float32Array): number {
  expect(a.length).toBe(b.length);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]! - b[i]!));
  return m;
}

function maxAbs(a: Float32Array): number {
  return a.reduce((m, v) => Math.max(m, Math.abs(v)), 0);
}

describe('reading and recognising checkpoints', () => {
  it('recognises torchvision state dicts, with the classifier, in both containers', () => {
    const st = readWeights(tv('resnet18/weights.safetensors'));
    const r18 = detectArchitecture(st.tensors).best!;
    expect(r18.arch).toBe('resnet18');
    expect(r18.options).toEqual({});
    expect(r18.matched).toBe(100); // 20 convolutions + 20 BatchNorms x 4 tensors
    expect(r18.classifier).toEqual({ names: ['fc.weight', 'fc.bias'], classes: 1000 });
    expect(r18.head).toBeNull();

    const p = readWeights(pth('mobilenet_v3_small.state_dict.pth'));
    expect(p.format).toBe('pth');
    expect(p.prefix).toBe('');
    const mb = detectArchitecture(p.tensors).best!;
    expect(mb.arch).toBe('mobilenet_v3_small');
    expect(mb.classifier?.classes).toBe(1000);
    expect(mb.unexpected).toEqual([]);
  });

  it('strips the MoCo prefix of a .pth.tar checkpoint and keeps its scalar entries', () => {
    const w = readWeights(pth('mobilenet_v3_small.moco_checkpoint.pth.tar'));
    expect(w.prefix).toBe('module.encoder_q.');
    expect(w.location).toBe('state_dict');
    expect(w.metadata.arch).toBe('mobilenet_v3_small');
    const plain = readWeights(pth('mobilenet_v3_small.state_dict.pth'));
    expect([...w.tensors.keys()]).toEqual([...plain.tensors.keys()]);
    for (const [name, t] of plain.tensors) {
      expect([...w.tensors.get(name)!.values], name).toEqual([...t.values]);
    }
  });

  it('recognises our own teacher: 1 input channel and the MoCo v2 projection head', () => {
    const m = detectArchitecture(readWeights(teacher).tensors).best!;
    expect(m.arch).toBe('resnet18');
    expect(m.options).toEqual({ inChannels: 1 });
    expect(m.head).toMatchObject({ hiddenDim: 2048, dim: 128 });
    expect(m.classifier).toBeNull();
    const text = describeWeights(readWeights(teacher));
    expect(text).toMatch(
      /architecture: resnet18 \{"inChannels":1\} \(all \d+ backbone tensors match\)/,
    );
    expect(text).toMatch(/projection head: hidden 2048, dim 128/);
  });

  it('explains a near miss and a forced architecture that does not fit', () => {
    const w = readWeights(tv('resnet18/weights.safetensors'));
    const forced = detectArchitecture(w.tensors, { arch: 'resnet34' });
    expect(forced.best).toBeNull();
    expect(forced.candidates[0]!.missing).toContain('layer1.2.conv1.weight');
    expect(() => detectArchitecture(w.tensors, { arch: 'resnet19' })).toThrow(
      /unknown architecture 'resnet19'; known: resnet18/,
    );
    const dir = mkdtempSync(join(tmpdir(), 'disco-io-'));
    expect(() =>
      importModel(tv('resnet18/weights.safetensors'), { out: dir, arch: 'resnet50' }),
    ).toThrow(
      /resnet18\/weights\.safetensors: the tensors \(prefix ''\) are not a known architecture \(closest resnet50: /,
    );
  });
});

describe('import, embed and export', () => {
  it('an imported .pth reproduces PyTorch: pooled and head features within tolerance', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'disco-io-'));
    const r = importModel(pth('mobilenet_v3_small.state_dict.pth'), { out: dir });
    expect(r.spec).toMatchObject({ arch: 'mobilenet_v3_small', head: false, dim: 576 });
    expect(
      JSON.parse(readFileSync(join(dir, 'model.json'), 'utf8')).notes.classifierDropped,
    ).toEqual(['classifier.3.weight', 'classifier.3.bias']);

    const out = join(dir, 'features.safetensors');
    const before = tf.memory().numTensors;
    const e = await embed({ model: dir, input: tv('input.safetensors'), out, asIs: true });
    expect(tf.memory().numTensors).toBe(before);
    expect(e.outputs).toEqual({ features: [2, 576], head_features: [2, 1024] });
    const got = readSafetensors(out).tensors;
    const want = readSafetensors(tv('mobilenet_v3_small/expected.safetensors')).tensors;
    const pooled = want.get('pooled')!.values as Float32Array;
    const head = want.get('head')!.values as Float32Array;
    expect(maxAbsDiff(got.get('features')!.values as Float32Array, pooled)).toBeLessThan(
      1e-3 * maxAbs(pooled),
    );
    expect(maxAbsDiff(got.get('head_features')!.values as Float32Array, head)).toBeLessThan(
      1e-3 * maxAbs(head),
    );
  });

  it.each(['resnet18', 'efficientnet_b0'])(
    'an imported torchvision %s (safetensors) reproduces its pooled features',
    async (arch) => {
      const dir = mkdtempSync(join(tmpdir(), 'disco-io-'));
      const r = importModel(tv(`${arch}/weights.safetensors`), { out: dir });
      expect(r.spec.arch).toBe(arch);
      const out = join(dir, 'features.safetensors');
      await embed({ model: dir, input: tv('input.safetensors'), out, asIs: true });
      const got = readSafetensors(out).tensors.get('features')!.values as Float32Array;
      const want = readSafetensors(tv(`${arch}/expected.safetensors`)).tensors.get('pooled')!
        .values as Float32Array;
      expect(maxAbsDiff(got, want)).toBeLessThan(1e-3 * maxAbs(want));
    },
  );

  it('the MoCo-layout .pth.tar gives the features in expected_pooled.pth', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'disco-io-'));
    importModel(pth('mobilenet_v3_small.moco_checkpoint.pth.tar'), { out: dir });
    const out = join(dir, 'features.safetensors');
    await embed({ model: dir, input: tv('input.safetensors'), out, asIs: true });
    const got = readSafetensors(out).tensors.get('features')!.values as Float32Array;
    const root = readPth(pth('mobilenet_v3_small.expected_pooled.pth')).root as Map<
      string,
      RawTensor
    >;
    const want = root.get('pooled')!.values as Float32Array;
    expect(maxAbsDiff(got, want)).toBeLessThan(1e-3 * maxAbs(want));
  });

  it('leaves out tensors of other heads (a SwAV layout) and lists them', () => {
    const dir = mkdtempSync(join(tmpdir(), 'disco-io-'));
    const src = readSafetensors(tv('resnet18/weights.safetensors')).tensors;
    const swav = new Map<string, { shape: number[]; values: Float32Array }>();
    for (const [name, t] of src) {
      if (name.startsWith('fc.') || name.endsWith('num_batches_tracked')) continue;
      swav.set(`module.${name}`, { shape: t.shape, values: t.values as Float32Array });
    }
    swav.set('module.projection_head.0.weight', {
      shape: [16, 512],
      values: new Float32Array(16 * 512),
    });
    swav.set('module.prototypes.weight', { shape: [8, 16], values: new Float32Array(128) });
    const file = join(dir, 'swav.safetensors');
    writeSafetensors(file, swav);
    const r = importModel(file, { out: join(dir, 'model') });
    expect(r.weights.prefix).toBe('module.');
    expect(r.match.unexpected).toEqual(['projection_head.0.weight', 'prototypes.weight']);
    const info = JSON.parse(readFileSync(join(dir, 'model', 'model.json'), 'utf8'));
    expect(info.notes.otherTensorsDropped).toEqual(r.match.unexpected);
    expect(info.spec).toMatchObject({ arch: 'resnet18', head: false, dim: 512 });
  });

  it('exports torchvision names and layouts: the fixture weights come back exactly', () => {
    const dir = mkdtempSync(join(tmpdir(), 'disco-io-'));
    importModel(pth('mobilenet_v3_small.moco_checkpoint.pth.tar'), { out: dir });
    const file = join(dir, 'exported.safetensors');
    const r = exportModel(dir, file);
    const back = readSafetensors(file).tensors;
    const ref = readSafetensors(tv('mobilenet_v3_small/weights.safetensors')).tensors;
    const expected = [...ref.keys()].filter(
      (n) => !n.startsWith('classifier.3.') && !n.endsWith('num_batches_tracked'),
    );
    expect(r.names).toEqual(expected);
    for (const name of expected) {
      expect(back.get(name)!.shape, name).toEqual(ref.get(name)!.shape);
      expect(
        maxAbsDiff(back.get(name)!.values as Float32Array, ref.get(name)!.values as Float32Array),
        name,
      ).toBe(0);
    }
  });

  it('round trip: export, import the export, export again: identical tensors', () => {
    const dir = mkdtempSync(join(tmpdir(), 'disco-io-'));
    // Our teacher: 1 input channel and a projection head, exported with its head.
    const first = join(dir, 'first.safetensors');
    exportModel(teacher, first, { withHead: true });
    const imported = importModel(first, {
      out: join(dir, 'model'),
      imageSize: 28,
      mean: [0.286],
      std: [0.353],
    });
    expect(imported.spec).toMatchObject({ arch: 'resnet18', hiddenDim: 2048, dim: 128 });
    expect(imported.spec.backbone).toEqual({ inChannels: 1 });
    const second = join(dir, 'second.safetensors');
    exportModel(join(dir, 'model'), second, { withHead: true });
    const a = readSafetensors(first).tensors;
    const b = readSafetensors(second).tensors;
    expect([...b.keys()]).toEqual([...a.keys()]);
    for (const [name, t] of a) {
      expect(b.get(name)!.shape, name).toEqual(t.shape);
      expect(
        Buffer.from(b.get(name)!.values.buffer).equals(Buffer.from(t.values.buffer)),
        name,
      ).toBe(true);
    }
  });

  it('refuses input that does not fit, naming the file, the key and the shape', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'disco-io-'));
    const bad = join(dir, 'bad.safetensors');
    writeSafetensors(
      bad,
      new Map([
        ['a', { shape: [2, 8, 8, 1], values: new Float32Array(128) }],
        ['b', { shape: [2, 8, 8, 3], values: new Float32Array(384) }],
      ]),
    );
    const run = (key?: string) =>
      embed({
        model: teacher,
        input: bad,
        out: join(dir, 'o.safetensors'),
        ...(key ? { key } : {}),
      });
    await expect(run()).rejects.toThrow(
      /bad\.safetensors: holds 2 tensors \(a, b\); name one with --key/,
    );
    await expect(run('c')).rejects.toThrow(/no tensor 'c' \(has a, b\)/);
    await expect(run('b')).rejects.toThrow(
      /bad\.safetensors: tensor 'b' is F32 \[2,8,8,3\]; the model takes float NHWC images \[N, H, W, 1\]/,
    );
    expect((await run('a')).outputs).toEqual({ features: [2, 512] });
  });
});

describe('embedding a folder of images', () => {
  it('decodes at the model size, embeds in eval mode and writes labels and paths', async () => {
    const sharp = (await import('sharp')).default;
    const root = mkdtempSync(join(tmpdir(), 'disco-embed-'));
    const imgs = join(root, 'imgs');
    for (const [cls, grey] of [
      ['bright', 220],
      ['dark', 30],
    ] as const) {
      mkdirSync(join(imgs, cls), { recursive: true });
      for (let i = 0; i < 2; i++) {
        const raw = Buffer.alloc(40 * 40 * 3, grey + 10 * i);
        await sharp(raw, { raw: { width: 40, height: 40, channels: 3 } })
          .png()
          .toFile(join(imgs, cls, `${i}.png`));
      }
    }
    const out = join(root, 'f.safetensors');
    const r = await embed({ model: teacher, input: imgs, out });
    expect(r.outputs).toEqual({ features: [4, 512], labels: [4] });
    const file = readSafetensors(out);
    expect([...file.tensors.get('labels')!.values]).toEqual([0, 0, 1, 1]);
    expect(JSON.parse(file.metadata.classNames!)).toEqual(['bright', 'dark']);
    expect(JSON.parse(file.metadata.paths!)).toHaveLength(4);

    // The same images as a [0, 1] tensor at the model's 28 px give the same features.
    const values = new Float32Array(4 * 28 * 28);
    [220, 230, 30, 40].forEach((g, i) => values.fill(g / 255, i * 784, (i + 1) * 784));
    const tensorFile = join(root, 'x.safetensors');
    writeSafetensors(tensorFile, new Map([['x', { shape: [4, 28, 28, 1], values }]]));
    const out2 = join(root, 'g.safetensors');
    await embed({ model: teacher, input: tensorFile, out: out2 });
    const a = file.tensors.get('features')!.values as Float32Array;
    const b = readSafetensors(out2).tensors.get('features')!.values as Float32Array;
    expect(maxAbsDiff(a, b)).toBeLessThan(1e-4 * maxAbs(b));
  });
});

describe('the model commands', () => {
  it('inspect refuses a pickle that calls a forbidden global, naming it', () => {
    const r = disco(['inspect', pth('forbidden_global.pth')]);
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(/forbidden_global\.pth/);
    expect(r.stderr).toMatch(/(posix|os)\.system/);
  });

  it('import then embed through the CLI', () => {
    const dir = mkdtempSync(join(tmpdir(), 'disco-io-cli-'));
    const imp = disco([
      'import',
      pth('mobilenet_v3_small.moco_checkpoint.pth.tar'),
      '--out',
      join(dir, 'model'),
      '--output',
      'head',
    ]);
    expect(imp.status, imp.all).toBe(0);
    expect(imp.stdout).toMatch(
      /imported .* as mobilenet_v3_small \{"output":"head"\} \(prefix 'module\.encoder_q\.', \d+ backbone tensors, no projection head; dropped the 1000-class classifier\)/,
    );
    const emb = disco([
      'embed',
      '--model',
      join(dir, 'model'),
      '--input',
      tv('input.safetensors'),
      '--out',
      join(dir, 'f.safetensors'),
      '--as-is',
    ]);
    expect(emb.status, emb.all).toBe(0);
    expect(emb.stdout).toMatch(/embedded 2 images: features \[2, 576\], head_features \[2, 1024\]/);
  });
});

describe('a MoCo v2 teacher from another training setup', () => {
  it('imports a MoCo v2 checkpoint layout and distils from it at its own input size', () => {
    // The layout of MoCo v2's checkpoints: module.encoder_q.* with the MLP as fc.0 / fc.2,
    // beside module.encoder_k.* and the queue; here with our teacher's weights.
    const dir = mkdtempSync(join(tmpdir(), 'disco-moco-'));
    const ours = readSafetensors(teacher).tensors;
    const moco = new Map<string, { shape: number[]; values: Float32Array }>();
    for (const side of ['encoder_q', 'encoder_k']) {
      for (const [name, t] of ours) {
        const torchName = name.replace(/^head\./, 'fc.');
        moco.set(`module.${side}.${torchName}`, {
          shape: t.shape,
          values: t.values as Float32Array,
        });
      }
    }
    moco.set('module.queue', { shape: [128, 16], values: new Float32Array(128 * 16) });
    const file = join(dir, 'moco_v2_checkpoint.safetensors');
    writeSafetensors(file, moco);

    // Recorded at 32 px with another normalisation: distill must convert its views.
    const model = join(dir, 'teacher');
    const imp = disco([
      'import',
      file,
      '--out',
      model,
      '--image-size',
      '32',
      '--mean',
      '0.5',
      '--std',
      '0.25',
    ]);
    expect(imp.status, imp.all).toBe(0);
    expect(imp.stdout).toMatch(
      /as resnet18 \{"inChannels":1\} \(prefix 'module\.encoder_q\.', 100 backbone tensors, projection head 2048 -> 128\)/,
    );
    const run = disco([
      'distill',
      '--arch',
      'mobilenet_v3_small',
      '--width-multiplier',
      '0.25',
      '--limit',
      '64',
      '--batch-size',
      '32',
      '--queue-size',
      '64',
      '--epochs',
      '1',
      '--quiet',
      '--teacher',
      model,
      '--out',
      join(dir, 'run'),
    ]);
    expect(run.status, run.all).toBe(0);
    expect(run.stdout).toMatch(
      /teacher input: views \(1 channel, 28 px\) converted to the teacher's \(1 channel, 32 px, its mean\/std\)/,
    );
    expect(run.stdout).toMatch(/mse_v1 [\d.]+ {2}mse_v2 [\d.]+/);

    const wrongDim = disco([
      'distill',
      '--arch',
      'mobilenet_v3_small',
      '--limit',
      '64',
      '--batch-size',
      '32',
      '--queue-size',
      '64',
      '--epochs',
      '1',
      '--dim',
      '64',
      '--teacher',
      model,
      '--out',
      join(dir, 'run2'),
    ]);
    expect(wrongDim.status).toBe(1);
    expect(wrongDim.stderr).toMatch(
      /embedding has 128 dimensions, the student's field 'dim' is 64/,
    );
  });
});
