#!/usr/bin/env bash
# Set up an emulated aarch64 board for `mptc profile --emulate` and tests/deploy (idempotent).
#
# Why: ARM modules must run for real before a board is at hand. qemu-user runs an aarch64 Python
# with a runtime-only TVM, which serves TVM RPC on 127.0.0.1 exactly as a Raspberry Pi would.
#
# What it does (nothing arm64 is installed into /; everything but step 1 lives under ARM_ROOT):
#   1. apt: qemu-user, and binutils-aarch64-linux-gnu (objdump, for tests that read a module's
#      instructions); `dpkg --add-architecture arm64` only so apt can see arm64 package indices.
#      Cross-linking module.so needs none of it: zig comes with the venv (targets/cross.py).
#   2. sysroot/: Debian's python3.11:arm64 and its runtime dependencies, unpacked with `dpkg -x`.
#   3. pylib/: aarch64 wheels of apache-tvm, apache-tvm-ffi, numpy, ml_dtypes (the versions in the
#      host venv, so both ends of the RPC agree) plus the RPC server's pure helpers; pruned to a
#      runtime-only install (no libtvm_compiler.so; TVM_USE_RUNTIME_LIB=1): import in ~7 s, not 18 s.
#   4. bin/python3-aarch64: a launcher that qemu also reports as sys.executable (`qemu -0 "$0"`),
#      because TVM's RPC server re-executes sys.executable for its worker process.
#   5. lib/libinsn_count.so: a qemu TCG plugin counting guest instructions (scripts/qemu/insn_count.c,
#      host gcc), for mptc.deploy.instructions; rebuilt when its sources are newer.
#   6. ortlib/: onnxruntime's aarch64 wheel alone (it runs on pylib's numpy; InferenceSession.run
#      imports none of its other dependencies), the peer whose instructions mptc.deploy.instructions
#      counts beside the module's. Its own folder, put on the path only by that count, so the
#      runtime-only TVM path is unchanged. 1.19.2 is the newest that starts under qemu 7.2.
#
# Usage: scripts/setup_arm_emulator.sh       (ARM_ROOT = $MPTC_ARM_ROOT, else <repo>/.arm)
# Env:   MPTC_ARM_ROOT, HOST_PY (a python with pip; default <repo>/.venv/bin/python).
# Already set up: returns in well under a second and prints nothing. Progress goes to stderr.
set -euo pipefail

REPO=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
ARM_ROOT=${MPTC_ARM_ROOT:-$REPO/.arm}
HOST_PY=${HOST_PY:-$REPO/.venv/bin/python}
[ -x "$HOST_PY" ] || HOST_PY=python3
PYVER=3.11              # Debian bookworm's python3; the wheels below are cp311 to match
TVM_VERSION=0.27.0.post1
ORT_PIN=onnxruntime==1.19.2  # newer aarch64 wheels die with SIGSEGV at import under qemu 7.2
ORTLIB=$ARM_ROOT/ortlib
SR=$ARM_ROOT/sysroot
LAUNCHER=$ARM_ROOT/bin/python3-aarch64
STAMP=$ARM_ROOT/.ready
PLUGIN=$ARM_ROOT/lib/libinsn_count.so
PLUGIN_SRC=$REPO/scripts/qemu/insn_count.c
export DEBIAN_FRONTEND=noninteractive

say() { echo "setup_arm_emulator: $*" >&2; }
die() { say "error: $*"; exit 1; }

# The device's Python packages must match the host's, or RPC and module ABI drift apart.
# One interpreter start (not one per package) keeps the already-set-up path fast.
mapfile -t PINS < <("$HOST_PY" - "$TVM_VERSION" <<'PY'
import importlib.metadata as m, sys
print("apache-tvm==" + sys.argv[1])
for name in ("apache-tvm-ffi", "numpy", "ml_dtypes", "typing_extensions", "cloudpickle"):
    try:
        print(f"{name}=={m.version(name)}")
    except m.PackageNotFoundError:
        print(name)
print("psutil==7.2.2")  # the RPC server's child-process clean-up; not needed on the host
PY
)
SPEC="v1 $ARM_ROOT python$PYVER ${PINS[*]} $ORT_PIN"

ready() {
  [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$SPEC" ] && [ -x "$LAUNCHER" ] \
    && command -v qemu-aarch64 >/dev/null && command -v aarch64-linux-gnu-objdump >/dev/null \
    && [ "$PLUGIN" -nt "$PLUGIN_SRC" ] && [ "$PLUGIN" -nt "$REPO/scripts/qemu/qemu-plugin.h" ]
}
ready && exit 0

mkdir -p "$ARM_ROOT"
exec 9>"$ARM_ROOT/.lock"
flock 9                  # two `make test` runs at once must not unpack into the same folders
ready && exit 0
rm -f "$STAMP"

# 1) host tools from apt (the only step that touches the host)
if ! dpkg --print-foreign-architectures | grep -qx arm64 || ! command -v qemu-aarch64 >/dev/null \
   || ! command -v aarch64-linux-gnu-objdump >/dev/null; then
  SUDO=(); [ "$(id -u)" -eq 0 ] || SUDO=(sudo -n)
  say "apt: qemu-user binutils-aarch64-linux-gnu"
  "${SUDO[@]}" dpkg --add-architecture arm64 || die "cannot run dpkg as root (run as root or with sudo)"
  "${SUDO[@]}" apt-get update -qq || die "apt-get update failed (no network or apt sources?)"
  "${SUDO[@]}" apt-get install -y -qq --no-install-recommends \
      qemu-user binutils-aarch64-linux-gnu >/dev/null || die "apt-get install failed"
fi

# 2) the aarch64 sysroot, built beside its final place and moved in only when complete
if [ ! -x "$SR/usr/bin/python$PYVER" ]; then
  say "sysroot: python$PYVER:arm64 and dependencies (apt-get download + dpkg -x)"
  apt-cache show "python$PYVER:arm64" >/dev/null 2>&1 || apt-get update -qq \
    || die "no arm64 package index (apt-get update failed)"
  mapfile -t PKGS < <(apt-cache depends --recurse --no-recommends --no-suggests --no-conflicts \
      --no-breaks --no-replaces --no-enhances "python$PYVER:arm64" libstdc++6:arm64 libgcc-s1:arm64 \
      | grep -E '^[a-z0-9][^ ]*:arm64$' | grep -vE '^(dpkg|tar|install-info):' | sort -u)
  [ "${#PKGS[@]}" -gt 0 ] || die "apt-cache found no arm64 dependencies of python$PYVER"
  rm -rf "$ARM_ROOT/debs" "$SR.tmp"; mkdir -p "$ARM_ROOT/debs" "$SR.tmp"
  (cd "$ARM_ROOT/debs" && apt-get download -qq -o APT::Sandbox::User=root "${PKGS[@]}") || die "apt-get download failed"
  for deb in "$ARM_ROOT"/debs/*.deb; do dpkg -x "$deb" "$SR.tmp"; done
  rm -rf "$SR" "$ARM_ROOT/debs"; mv "$SR.tmp" "$SR"
fi

# 3) aarch64 wheels -> pylib/, runtime-only
if [ ! -f "$ARM_ROOT/pylib/.pins" ] || [ "$(cat "$ARM_ROOT/pylib/.pins")" != "${PINS[*]}" ]; then
  say "wheels: ${PINS[*]} (aarch64)"
  rm -rf "$ARM_ROOT/wheels" "$ARM_ROOT/pylib.tmp"; mkdir -p "$ARM_ROOT/wheels" "$ARM_ROOT/pylib.tmp"
  "$HOST_PY" -m pip download -q --disable-pip-version-check --no-deps --only-binary=:all: \
      --python-version "$PYVER" --implementation cp --abi "cp${PYVER/./}" --abi abi3 --abi none \
      --platform manylinux_2_28_aarch64 --platform manylinux_2_17_aarch64 \
      --platform manylinux2014_aarch64 --platform any -d "$ARM_ROOT/wheels" "${PINS[@]}" \
      2> >(grep -v "is ignored: it is neither a file nor a directory" >&2) \
      || die "pip download of the aarch64 wheels failed"
  for whl in "$ARM_ROOT"/wheels/*.whl; do "$HOST_PY" -m zipfile -e "$whl" "$ARM_ROOT/pylib.tmp"; done
  # The device only loads compiled modules: drop the 240 MB compiler library, headers and sources.
  rm -rf "$ARM_ROOT"/pylib.tmp/tvm/lib/libtvm_compiler.so "$ARM_ROOT"/pylib.tmp/tvm/{3rdparty,src,include,web}
  echo "${PINS[*]}" > "$ARM_ROOT/pylib.tmp/.pins"
  rm -rf "$ARM_ROOT/pylib" "$ARM_ROOT/wheels"; mv "$ARM_ROOT/pylib.tmp" "$ARM_ROOT/pylib"
fi

# 4) the launcher (QEMU_CPU, read by qemu itself, picks the emulated core; default: every extension)
mkdir -p "$ARM_ROOT/bin"
cat > "$LAUNCHER.tmp" <<EOF
#!/bin/sh
# aarch64 python$PYVER under qemu-user, runtime-only TVM. Written by scripts/setup_arm_emulator.sh.
export PYTHONHOME="$SR/usr" PYTHONPATH="$ARM_ROOT/pylib" TVM_USE_RUNTIME_LIB=1
exec qemu-aarch64 -L "$SR" -0 "\$0" "$SR/usr/bin/python$PYVER" "\$@"
EOF
chmod +x "$LAUNCHER.tmp"; mv "$LAUNCHER.tmp" "$LAUNCHER"

CHECK=$(QEMU_CPU=cortex-a72 "$LAUNCHER" -c "import platform, tvm.rpc, numpy; print(platform.machine(), tvm.__version__)") \
  || die "the emulated python cannot import tvm (see the error above)"
[ "$CHECK" = "aarch64 $TVM_VERSION" ] || die "emulated import check printed '$CHECK'"

# 5) the instruction-counting plugin (plugin API version 1: qemu 7.2's header, vendored beside it)
command -v gcc >/dev/null || die "gcc is needed to build the qemu plugin (apt-get install gcc)"
mkdir -p "$ARM_ROOT/lib"
gcc -O2 -shared -fPIC -fvisibility=hidden -I "$REPO/scripts/qemu" -o "$PLUGIN.tmp" "$PLUGIN_SRC" \
  || die "building $PLUGIN failed"
mv "$PLUGIN.tmp" "$PLUGIN"

# 6) the onnxruntime peer -> ortlib/, checked by an emulated import
if [ ! -f "$ORTLIB/.pins" ] || [ "$(cat "$ORTLIB/.pins")" != "$ORT_PIN" ]; then
  say "wheel: $ORT_PIN (aarch64) -> $ORTLIB"
  rm -rf "$ARM_ROOT/ortwheel" "$ORTLIB.tmp"; mkdir -p "$ARM_ROOT/ortwheel" "$ORTLIB.tmp"
  "$HOST_PY" -m pip download -q --disable-pip-version-check --no-deps --only-binary=:all: \
      --python-version "$PYVER" --implementation cp --abi "cp${PYVER/./}" \
      --platform manylinux_2_28_aarch64 -d "$ARM_ROOT/ortwheel" "$ORT_PIN" \
      2> >(grep -v "is ignored: it is neither a file nor a directory" >&2) \
      || die "pip download of $ORT_PIN for aarch64 failed"
  for whl in "$ARM_ROOT"/ortwheel/*.whl; do "$HOST_PY" -m zipfile -e "$whl" "$ORTLIB.tmp"; done
  CHECK=$(QEMU_CPU=cortex-a72 "$LAUNCHER" -c "import sys; sys.path.insert(0, '$ORTLIB.tmp'); import onnxruntime; print(onnxruntime.__version__)") \
    || die "the emulated python cannot import onnxruntime (see the error above)"
  [ "onnxruntime==$CHECK" = "$ORT_PIN" ] || die "emulated onnxruntime import check printed '$CHECK'"
  echo "$ORT_PIN" > "$ORTLIB.tmp/.pins"
  rm -rf "$ORTLIB" "$ARM_ROOT/ortwheel"; mv "$ORTLIB.tmp" "$ORTLIB"
fi

echo "$SPEC" > "$STAMP"
say "ready: $ARM_ROOT ($(du -sh "$ARM_ROOT" | cut -f1))"
