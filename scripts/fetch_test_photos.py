"""Fetch the 20 labelled ImageNet validation photos shipped in PyPI `foolbox==3.3.4` (MIT) for the
pretrained-weights test. Usage: python scripts/fetch_test_photos.py OUT_DIR
Files are `imagenet_NN_LABEL.jpg`: LABEL is the ImageNet-1k class index."""
import os, subprocess, sys, tempfile, zipfile

out = sys.argv[1]
os.makedirs(out, exist_ok=True)
with tempfile.TemporaryDirectory() as tmp:
    subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--disable-pip-version-check", "foolbox==3.3.4", "-d", tmp], check=True)
    wheel = next(os.path.join(tmp, f) for f in os.listdir(tmp) if f.endswith(".whl"))
    with zipfile.ZipFile(wheel) as z:
        names = [n for n in z.namelist() if os.path.basename(n).startswith("imagenet_") and n.endswith(".jpg")]
        for n in names:
            with open(os.path.join(out, os.path.basename(n)), "wb") as f:
                f.write(z.read(n))
if len(names) != 20:
    sys.exit(f"expected 20 ImageNet photos in foolbox, found {len(names)}")
open(os.path.join(out, ".complete"), "w").close()
print(f"wrote {len(names)} photos to {out}")
