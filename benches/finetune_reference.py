"""The reference for Loupe's fine-tuning: a careful, plain PyTorch script on the same weights and
the same split. Prints one JSON line: best validation macro-F1 and accuracy (the epoch with the
best macro-F1, as Loupe picks its best checkpoint), and seconds (the whole process is timed by the
caller).

Recipe (what experts pick for fine-tuning a pretrained network):
- EfficientNet-Lite0 with its ImageNet weights (.weights/efficientnet-lite0.safetensors, the file
  Loupe loads), the 1000-class head replaced by a new one.
- AdamW (weight decay 0.01), 3e-4 for the backbone, 3e-3 for the new head, cosine decay per step.
- Training: RandomResizedCrop(SIZE, scale 0.5-1) + horizontal flip.
- Validation: Resize(SIZE / 0.875) + CenterCrop(SIZE).
- Batch 32, 2 threads (the machine's cores), images decoded by 1 DataLoader worker.

Usage: python benches/finetune_reference.py SPLIT_CSV WEIGHTS --size 128 --epochs 5 --seed 1
SPLIT_CSV has columns path,label,split (split: train or val), paths relative to its folder.
Needs torch, torchvision, efficientnet-lite-pytorch, safetensors, pillow (benches/finetune.sh
installs them)."""
import argparse, csv, json, math, os, random, time

import numpy as np
import torch
from efficientnet_lite_pytorch import EfficientNet
from PIL import Image
from safetensors.torch import load_file
from torch.utils.data import DataLoader, Dataset
from torchvision import transforms as T


class Images(Dataset):
    def __init__(self, rows, root, classes, tf):
        self.rows, self.root, self.tf = rows, root, tf
        self.index = {c: i for i, c in enumerate(classes)}

    def __len__(self):
        return len(self.rows)

    def __getitem__(self, i):
        r = self.rows[i]
        img = Image.open(os.path.join(self.root, r["path"])).convert("RGB")
        return self.tf(img), self.index[r["label"]]


def macro_f1(truth, pred, k):
    f1s = []
    for c in range(k):
        tp = sum(1 for t, p in zip(truth, pred) if t == c and p == c)
        fp = sum(1 for t, p in zip(truth, pred) if t != c and p == c)
        fn = sum(1 for t, p in zip(truth, pred) if t == c and p != c)
        f1s.append(0.0 if tp == 0 else 2 * tp / (2 * tp + fp + fn))
    return sum(f1s) / k


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("csv")
    ap.add_argument("weights")
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--lr", type=float, default=3e-4)
    ap.add_argument("--head-lr", type=float, default=3e-3)
    args = ap.parse_args()
    torch.manual_seed(args.seed)
    random.seed(args.seed)
    np.random.seed(args.seed)
    torch.set_num_threads(2)

    root = os.path.dirname(os.path.abspath(args.csv))
    rows = list(csv.DictReader(open(args.csv)))
    classes = sorted({r["label"] for r in rows})
    train_rows = [r for r in rows if r["split"] == "train"]
    val_rows = [r for r in rows if r["split"] == "val"]
    norm = T.Normalize([0.5] * 3, [0.5] * 3)
    train_tf = T.Compose([T.RandomResizedCrop(args.size, scale=(0.5, 1.0)), T.RandomHorizontalFlip(), T.ToTensor(), norm])
    val_tf = T.Compose([T.Resize(round(args.size / 0.875)), T.CenterCrop(args.size), T.ToTensor(), norm])
    train = DataLoader(Images(train_rows, root, classes, train_tf), batch_size=args.batch, shuffle=True,
                       num_workers=1, persistent_workers=True, drop_last=False)
    val = DataLoader(Images(val_rows, root, classes, val_tf), batch_size=64, num_workers=1, persistent_workers=True)

    net = EfficientNet.from_name("efficientnet-lite0")
    state = {k: v for k, v in load_file(args.weights).items() if not k.startswith("_fc.")}
    missing, unexpected = net.load_state_dict(state, strict=False)
    assert set(missing) == {"_fc.weight", "_fc.bias"} and not unexpected, (missing, unexpected)
    net._fc = torch.nn.Linear(net._fc.in_features, len(classes))
    head = list(net._fc.parameters())
    head_ids = {id(p) for p in head}
    backbone = [p for p in net.parameters() if id(p) not in head_ids]
    opt = torch.optim.AdamW([{"params": backbone, "lr": args.lr}, {"params": head, "lr": args.head_lr}], weight_decay=0.01)
    steps = args.epochs * len(train)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 0.5 * (1 + math.cos(math.pi * s / steps)))
    loss_fn = torch.nn.CrossEntropyLoss()

    best = {"macro_f1": -1.0}
    for epoch in range(1, args.epochs + 1):
        net.train()
        for x, y in train:
            opt.zero_grad()
            loss_fn(net(x), y).backward()
            opt.step()
            sched.step()
        net.eval()
        truth, pred = [], []
        with torch.no_grad():
            for x, y in val:
                pred += net(x).argmax(1).tolist()
                truth += y.tolist()
        f1 = macro_f1(truth, pred, len(classes))
        acc = sum(t == p for t, p in zip(truth, pred)) / len(truth)
        if f1 > best["macro_f1"]:
            best = {"macro_f1": f1, "accuracy": acc, "epoch": epoch}
    print(json.dumps(best))


if __name__ == "__main__":
    main()
