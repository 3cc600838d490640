"""A classifier trained the way a user trains one outside ltdeploy: plain PyTorch, torchvision's ImageFolder and
transforms, a timm model, `torch.save(model.state_dict())`. For the bring-your-own-model example
(docs/bring-your-own-model.md): its output is what `train.py import` takes.

    python benchmarks/train_outside.py --data data/shapes-folders --arch resnet10t --epochs 15 --out runs/user.pth
"""
from __future__ import annotations

import argparse
import os
import sys

import numpy as np
import timm
import torch
from torchvision import datasets
from torchvision import transforms as T


def _loader(root: str, split: str, size: int, train: bool) -> torch.utils.data.DataLoader:
    aug = [T.RandomHorizontalFlip()] if train else []
    tf = T.Compose([T.Resize((size, size)), *aug, T.ToTensor(), T.Normalize([0.5] * 3, [0.5] * 3)])
    return torch.utils.data.DataLoader(datasets.ImageFolder(os.path.join(root, split), tf), batch_size=64,
                                       shuffle=train)


def balanced_top1(model: torch.nn.Module, loader: torch.utils.data.DataLoader) -> float:
    """Mean of per-class accuracies (the user's own evaluation)."""
    model.eval()
    with torch.no_grad():
        pred = torch.cat([model(x).argmax(1) for x, _ in loader])
    y = torch.tensor(loader.dataset.targets)
    return float(np.mean([(pred[y == c] == c).float().mean() for c in y.unique()]))


def main(argv: list[str] | None = None) -> int:
    """Train, report the user's own test top-1, save the state dict."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", required=True, help="an ImageFolder tree (train/, test/)")
    p.add_argument("--arch", default="resnet10t", help="a timm model name")
    p.add_argument("--epochs", type=int, default=15)
    p.add_argument("--size", type=int, default=32)
    p.add_argument("--lr", type=float, default=0.05)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", required=True)
    args = p.parse_args(argv)
    torch.manual_seed(args.seed)
    train = _loader(args.data, "train", args.size, True)
    model = timm.create_model(args.arch, num_classes=len(train.dataset.classes))
    opt = torch.optim.SGD(model.parameters(), lr=args.lr, momentum=0.9, weight_decay=5e-4)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, args.epochs * len(train))
    for epoch in range(args.epochs):
        model.train()
        for x, y in train:
            opt.zero_grad()
            loss = torch.nn.functional.cross_entropy(model(x), y)
            loss.backward()
            opt.step()
            sched.step()
        print(f"epoch {epoch + 1}/{args.epochs}: loss {loss.item():.3f}", flush=True)
    print(f"own evaluation, test balanced top-1: {100 * balanced_top1(model, _loader(args.data, 'test', args.size, False)):.2f}")
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    torch.save(model.state_dict(), args.out)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
