"""The notebook-style baseline Loupe's scan is compared with: os.walk + PIL header read.
Usage: python3 benches/scan_baseline.py FOLDER   (needs Pillow: .venv/bin/pip install pillow)
Prints the warm time (median of 3) and, as root, a cold time after dropping the page cache."""
import os, subprocess, sys, time
from PIL import Image

def index(root):
    out = []
    for dirpath, _, files in os.walk(root):
        for f in files:
            if f.lower().endswith((".png", ".jpg", ".jpeg")):
                p = os.path.join(dirpath, f)
                with Image.open(p) as im:
                    out.append((p, os.path.basename(dirpath), im.size, im.mode))
    return out

root = sys.argv[1]
try:
    subprocess.run(["sync"], check=True)
    open("/proc/sys/vm/drop_caches", "w").write("3")
    t = time.time(); n = len(index(root)); print(f"python cold: {n} images in {time.time() - t:.3f} s")
except OSError:
    print("python cold: skipped (needs root)")
index(root)
ts = []
for _ in range(3):
    t = time.time(); n = len(index(root)); ts.append(time.time() - t)
ts.sort()
print(f"python warm: {n} images, median of 3 runs {ts[1]:.3f} s")
