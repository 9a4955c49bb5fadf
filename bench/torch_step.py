"""One DisCo training step in PyTorch, timed: the reference for `disco bench`.

Usage: python3 bench/torch_step.py <a|b> <batch> <steps> <threads>
  a: ResNet-18 with the small-image stem (3x3 stride-1 conv, no max-pool) at 32x32
  b: MobileNetV3-Large (head feature, 1280-d) at 64x64
Both with a frozen ResNet-50 teacher (train-mode BN, as DisCo's code runs it), MoCo v2 heads
(hidden 2048, dim 128), a 4096-key queue, InfoNCE at T 0.2, the consistency MSE on both views
(weight 32 on the per-sample mean), SGD momentum 0.9, weight decay 1e-4. Prints
`img_per_sec X`. The BN is whole-batch here (no ghost groups); the FLOPs are the same.
"""
import sys
import time

import torch
import torch.nn as nn
import torch.nn.functional as F
import torchvision


def mlp(inp):
    return nn.Sequential(nn.Linear(inp, 2048), nn.ReLU(), nn.Linear(2048, 128))


class Encoder(nn.Module):
    def __init__(self, backbone, feat):
        super().__init__()
        self.backbone = backbone
        self.head = mlp(feat)

    def forward(self, x):
        return F.normalize(self.head(self.backbone(x)), dim=1)


def student(which):
    if which == "a":
        m = torchvision.models.resnet18()
        m.conv1 = nn.Conv2d(3, 64, 3, 1, 1, bias=False)
        m.maxpool = nn.Identity()
        m.fc = nn.Identity()
        return Encoder(m, 512), 32
    m = torchvision.models.mobilenet_v3_large()
    m.classifier = nn.Sequential(m.classifier[0], m.classifier[1])  # Linear + Hardswish
    return Encoder(m, 1280), 64


def main():
    which, batch, steps, threads = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    q, size = student(which)
    k, _ = student(which)
    k.load_state_dict(q.state_dict())
    for p in k.parameters():
        p.requires_grad = False
    r50 = torchvision.models.resnet50()
    r50.fc = nn.Identity()
    teacher = Encoder(r50, 2048)
    for p in teacher.parameters():
        p.requires_grad = False
    queue = F.normalize(torch.randn(128, 4096), dim=0)
    opt = torch.optim.SGD(q.parameters(), lr=0.01, momentum=0.9, weight_decay=1e-4)
    v1 = torch.randn(batch, 3, size, size)
    v2 = torch.randn(batch, 3, size, size)

    def step():
        nonlocal queue
        with torch.no_grad():
            for pk, pq in zip(k.parameters(), q.parameters()):
                pk.mul_(0.999).add_(pq.detach(), alpha=0.001)
            perm = torch.randperm(batch)
            kk = k(v2[perm])[torch.argsort(perm)]
            t1 = teacher(v1)
            t2 = teacher(v2)
        s1 = q(v1)
        s2 = q(v2)
        pos = (s1 * kk).sum(1, keepdim=True)
        neg = s1 @ queue
        logits = torch.cat([pos, neg], 1) / 0.2
        loss = F.cross_entropy(logits, torch.zeros(batch, dtype=torch.long))
        loss = loss + 32 * ((s1 - t1) ** 2).sum(1).mean() + 32 * ((s2 - t2) ** 2).sum(1).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        queue = torch.cat([kk.T.detach(), queue[:, : 4096 - batch]], 1)

    q.train()
    k.train()
    teacher.train()
    step()
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    seconds = (time.perf_counter() - t0) / steps
    print(f"img_per_sec {batch / seconds:.3f}")


if __name__ == "__main__":
    main()
