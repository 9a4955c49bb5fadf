#!/usr/bin/python3
"""Writes the PyTorch reference fixtures of @disco/backbones (run once, at test-authoring time).

Outputs, under packages/backbones/test/fixtures/:
- keys.json: for each torchvision architecture (1000-class classifier included), its state-dict
  entries in order as [name, torch shape] (num_batches_tracked left out) and its parameter count;
- generated/<case>/{weights,expected}.safetensors + meta.json: small variants (width multiplier,
  small stem, one input channel, MobileNetV3-Large) with random weights, their eval-mode outputs
  and a training-mode forward with the BatchNorm running statistics it leaves behind.

Usage (Debian's torch 1.13 / torchvision 0.14): /usr/bin/python3 scripts/make-fixture.py
"""
import copy
import json
import math
import os
import struct
import zlib

import torch
import torchvision
from torch import nn
from torchvision.models.resnet import BasicBlock, Bottleneck, conv1x1

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, '..', 'test', 'fixtures')

ARCHS = [
    'resnet18',
    'resnet34',
    'resnet50',
    'resnet101',
    'resnet152',
    'wide_resnet50_2',
    'mobilenet_v3_small',
    'mobilenet_v3_large',
]


def write_safetensors(path, entries):
    """entries: list of (name, tensor, dtype) with dtype in F32 / F16 / I64, written in order."""
    kinds = {
        'F32': ('<f4', torch.float32),
        'F16': ('<f2', torch.float16),
        'I64': ('<i8', torch.int64),
    }
    header, blobs, offset = {}, [], 0
    for name, t, dtype in entries:
        data = t.detach().to(kinds[dtype][1]).contiguous().numpy().astype(kinds[dtype][0]).tobytes()
        span = [offset, offset + len(data)]
        header[name] = {'dtype': dtype, 'shape': list(t.shape), 'data_offsets': span}
        blobs.append(data)
        offset += len(data)
    text = json.dumps(header, separators=(',', ':')).encode()
    text += b' ' * ((8 - (8 + len(text)) % 8) % 8)
    with open(path, 'wb') as f:
        f.write(struct.pack('<Q', len(text)))
        f.write(text)
        f.write(b''.join(blobs))


def state_dict_entries(model):
    """The state dict as safetensors entries: I64 counters, then floats as F16, each in order."""
    sd = {k: v.clone() for k, v in model.state_dict().items()}  # copies: the model trains later
    ints = [(k, v, 'I64') for k, v in sd.items() if not v.is_floating_point()]
    floats = [(k, v, 'F16') for k, v in sd.items() if v.is_floating_point()]
    return ints + floats


class ScaledResNet(nn.Module):
    """torchvision's ResNet layout (same attribute names, torchvision's own blocks) with free stage
    widths, input channels and a CIFAR stem: the reference for our widthMultiplier / smallStem."""

    def __init__(self, block, depths, widths, width_per_group, in_channels, small_stem, classes):
        super().__init__()
        stem = widths[0]
        k, s = (3, 1) if small_stem else (7, 2)
        self.conv1 = nn.Conv2d(in_channels, stem, k, stride=s, padding=k // 2, bias=False)
        self.bn1 = nn.BatchNorm2d(stem)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.Identity() if small_stem else nn.MaxPool2d(3, stride=2, padding=1)
        inplanes = stem
        for i, (depth, planes) in enumerate(zip(depths, widths)):
            blocks = []
            for j in range(depth):
                stride = 2 if (i > 0 and j == 0) else 1
                out = planes * block.expansion
                down = None
                if j == 0 and (stride != 1 or inplanes != out):
                    down = nn.Sequential(conv1x1(inplanes, out, stride), nn.BatchNorm2d(out))
                extra = {'base_width': width_per_group} if block is Bottleneck else {}
                blocks.append(block(inplanes, planes, stride, down, **extra))
                inplanes = out
            setattr(self, f'layer{i + 1}', nn.Sequential(*blocks))
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(inplanes, classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode='fan_out', nonlinearity='relu')
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.constant_(m.weight, 1)
                nn.init.constant_(m.bias, 0)

    def pooled(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return torch.flatten(self.avgpool(x), 1)


def resnet_outputs(model, x, with_logits=True):
    pooled = model.pooled(x)
    return {'pooled': pooled, 'logits': model.fc(pooled)} if with_logits else {'pooled': pooled}


def mobilenet_outputs(model, x, with_logits=True):
    pooled = torch.flatten(model.avgpool(model.features(x)), 1)
    head = model.classifier[1](model.classifier[0](pooled))
    out = {'pooled': pooled, 'head': head}
    if with_logits:
        out['logits'] = model.classifier[3](head)
    return out


def fixture_input(n, h, w, c):
    """x[n,c,h,w] = 1.5 sin(0.05 (h W + w) + 1.3 c + 2.1 n), float64 then float32; NCHW."""
    nn_, cc, hh, ww = torch.meshgrid(
        torch.arange(n, dtype=torch.float64),
        torch.arange(c, dtype=torch.float64),
        torch.arange(h, dtype=torch.float64),
        torch.arange(w, dtype=torch.float64),
        indexing='ij',
    )
    return (1.5 * torch.sin(0.05 * (hh * w + ww) + 1.3 * cc + 2.1 * nn_)).float()


def calibrate_and_round(model, x, gen):
    """Makes eval-mode BatchNorm a real (non-identity) layer that keeps the signal's scale. During
    one eval-mode pass over x, just before each BatchNorm runs (earlier layers already final), with
    s = mean(input^2) of that layer: running_mean = 0.1 sqrt(s) z1, running_var = s u,
    weight = 1 + 0.1 z2, bias = 0.1 z3 (z ~ N(0, 1), u ~ U(0.5, 1.5), per channel). Then every
    floating tensor is rounded to float16 and back, so the F16 file holds the exact weights."""

    def set_statistics(m, inputs):
        s = inputs[0].double().pow(2).mean().item()
        c = m.num_features
        m.running_mean.copy_(0.1 * math.sqrt(s) * torch.randn(c, generator=gen))
        m.running_var.copy_(s * (0.5 + torch.rand(c, generator=gen)))
        m.weight.copy_(1 + 0.1 * torch.randn(c, generator=gen))
        m.bias.copy_(0.1 * torch.randn(c, generator=gen))

    model.eval()
    bns = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    hooks = [m.register_forward_pre_hook(set_statistics) for m in bns]
    with torch.no_grad():
        model.features(x) if hasattr(model, 'features') else model.pooled(x)
        for t in model.state_dict().values():
            if t.is_floating_point():
                t.copy_(t.half().float())
    for h in hooks:
        h.remove()


def generated_case(name, model, outputs, x, options, notes):
    seed = zlib.crc32(name.encode()) & 0x7FFFFFFF
    gen = torch.Generator().manual_seed(seed + 1)
    calibrate_and_round(model, x, gen)
    # The training-mode pass runs on a batch of 4 at twice the size, so that the last stage still
    # has 4 x 2 x 2 values per channel: with 2 x 1 x 1 values, batch statistics are ill-posed
    # (every output near +-1, flipping with rounding noise) and no float32 reference is stable.
    n, c, h, w = x.shape
    xt = fixture_input(2 * n, 2 * h, 2 * w, c)
    with torch.no_grad():
        expected = outputs(model, x)
        weights = state_dict_entries(model)
        reference = copy.deepcopy(model).double().train()
        model.train()
        trained = outputs(model, xt, with_logits=False)
        bn_after = {k: v.clone() for k, v in model.state_dict().items() if 'running' in k}
        trained64 = outputs(reference, xt.double(), with_logits=False)
    float64_gap = {
        k: ((v.double() - trained64[k]).abs().max() / trained64[k].abs().max()).item()
        for k, v in trained.items()
    }

    folder = os.path.join(OUT, 'generated', name)
    os.makedirs(folder, exist_ok=True)
    write_safetensors(os.path.join(folder, 'weights.safetensors'), weights)
    entries = [('input_nhwc', x.permute(0, 2, 3, 1), 'F32')]
    entries += [(k, v, 'F32') for k, v in expected.items()]
    entries += [('train.input_nhwc', xt.permute(0, 2, 3, 1), 'F32')]
    entries += [(f'train.{k}', v, 'F32') for k, v in trained.items()]
    entries += [(f'train.{k}', v, 'F32') for k, v in bn_after.items()]
    write_safetensors(os.path.join(folder, 'expected.safetensors'), entries)
    meta = {
        'case': name,
        'seed': seed,
        'versions': {'torch': torch.__version__, 'torchvision': torchvision.__version__},
        'options': options,
        'notes': notes,
        'input_shape_nhwc': list(x.permute(0, 2, 3, 1).shape),
        'params_total': sum(p.numel() for p in model.parameters()),
        'outputs': {
            k: {'shape': list(v.shape), 'max_abs': v.abs().max().item()}
            for k, v in expected.items()
        },
        'train_input_shape_nhwc': list(xt.permute(0, 2, 3, 1).shape),
        'train_outputs': {
            k: {
                'shape': list(v.shape),
                'max_abs': v.abs().max().item(),
                'float32_vs_float64': float64_gap[k],
            }
            for k, v in trained.items()
        },
    }
    with open(os.path.join(folder, 'meta.json'), 'w') as f:
        json.dump(meta, f, indent=2)
        f.write('\n')
    print(f'{name}: {meta["params_total"]} params')
    print(f'  eval {meta["outputs"]}\n  train {meta["train_outputs"]}')


def structure(model):
    entries = [[k, list(v.shape)] for k, v in model.state_dict().items()]
    return {
        'params_total': sum(p.numel() for p in model.parameters()),
        'state_dict': [e for e in entries if 'num_batches_tracked' not in e[0]],
    }


def write_keys():
    out = {arch: structure(getattr(torchvision.models, arch)(weights=None)) for arch in ARCHS}
    # The width multiplier of MobileNetV3 is torchvision's own (width_mult).
    model = torchvision.models.mobilenet_v3_small(weights=None, width_mult=0.5)
    out['mobilenet_v3_small@width_mult=0.5'] = structure(model)
    with open(os.path.join(OUT, 'keys.json'), 'w') as f:
        json.dump(out, f, separators=(',', ':'))
        f.write('\n')

    # ScaledResNet at full width is torchvision's ResNet-50, name for name and shape for shape.
    ours = ScaledResNet(Bottleneck, [3, 4, 6, 3], [64, 128, 256, 512], 64, 3, False, 1000)
    ours = ours.state_dict()
    ref = torchvision.models.resnet50(weights=None).state_dict()
    assert [(k, v.shape) for k, v in ours.items()] == [(k, v.shape) for k, v in ref.items()]


def main():
    torch.set_grad_enabled(False)
    write_keys()

    torch.manual_seed(zlib.crc32(b'resnet50_w0.25') & 0x7FFFFFFF)
    generated_case(
        'resnet50_w0.25',
        ScaledResNet(Bottleneck, [3, 4, 6, 3], [16, 32, 64, 128], 64, 3, False, 10),
        resnet_outputs,
        fixture_input(2, 32, 32, 3),
        {'arch': 'resnet50', 'widthMultiplier': 0.25, 'withClassifier': 10},
        'torchvision Bottleneck blocks, stage widths 64/128/256/512 x 0.25, standard stem',
    )
    torch.manual_seed(zlib.crc32(b'resnet18_small_w0.25_in1') & 0x7FFFFFFF)
    generated_case(
        'resnet18_small_w0.25_in1',
        ScaledResNet(BasicBlock, [2, 2, 2, 2], [16, 32, 64, 128], 64, 1, True, 10),
        resnet_outputs,
        fixture_input(2, 28, 28, 1),
        {
            'arch': 'resnet18',
            'widthMultiplier': 0.25,
            'smallStem': True,
            'inChannels': 1,
            'withClassifier': 10,
        },
        'torchvision BasicBlock blocks, widths x 0.25, 3x3 stride-1 stem without max-pool, '
        '1 input channel',
    )
    torch.manual_seed(zlib.crc32(b'mobilenet_v3_large') & 0x7FFFFFFF)
    generated_case(
        'mobilenet_v3_large',
        torchvision.models.mobilenet_v3_large(weights=None, num_classes=10),
        mobilenet_outputs,
        fixture_input(2, 32, 32, 3),
        {'arch': 'mobilenet_v3_large', 'withClassifier': 10},
        'torchvision mobilenet_v3_large(num_classes=10)',
    )
    torch.manual_seed(zlib.crc32(b'mobilenet_v3_small_w0.5_small_in1') & 0x7FFFFFFF)
    model = torchvision.models.mobilenet_v3_small(weights=None, width_mult=0.5, num_classes=10)
    stem = model.features[0][0]
    model.features[0][0] = nn.Conv2d(1, stem.out_channels, 3, stride=1, padding=1, bias=False)
    nn.init.kaiming_normal_(model.features[0][0].weight, mode='fan_out')
    generated_case(
        'mobilenet_v3_small_w0.5_small_in1',
        model,
        mobilenet_outputs,
        fixture_input(2, 28, 28, 1),
        {
            'arch': 'mobilenet_v3_small',
            'widthMultiplier': 0.5,
            'smallStem': True,
            'inChannels': 1,
            'withClassifier': 10,
        },
        'torchvision mobilenet_v3_small(width_mult=0.5, num_classes=10) with the stem conv '
        'replaced by a 1-channel 3x3 stride-1 conv',
    )


if __name__ == '__main__':
    main()
