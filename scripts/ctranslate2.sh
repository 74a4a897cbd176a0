#!/usr/bin/env bash
# Fetches the CTranslate2 library the `ctranslate2` cargo feature links against into
# .ctranslate2/lib: libctranslate2 4.8.4 from CTranslate2's own PyPI wheel (the build faster-whisper
# runs on: Intel MKL and oneDNN kernels, with its OpenMP runtime beside it), checksum verified.
# ct2rs carries CTranslate2 4.8.4's headers; building the library from source instead would add a
# long C++ build to every clean build. Run by scripts/setup.sh; safe to run again.
set -euo pipefail
cd "$(dirname "$0")/.."

VERSION=4.8.4
WHEEL=ctranslate2-4.8.4-cp311-cp311-manylinux_2_27_x86_64.manylinux_2_28_x86_64.whl
SHA256=1037b3f51d18f1546120686670d71fcdaf85a0500fffccc56d8439ded5d284e5
LIB=.ctranslate2/lib

if [ "$(cat "$LIB/VERSION" 2>/dev/null)" = "$VERSION" ] && [ -e "$LIB/libctranslate2.so" ]; then
  exit 0
fi
if [ "$(uname -m)" != x86_64 ]; then
  echo "scripts/ctranslate2.sh: CTranslate2's Linux wheel here is x86_64 only; on $(uname -m) build" \
       "without it: cargo build --no-default-features --features embedded,… (see README, Builds)" >&2
  exit 1
fi

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
# The wheel for any CPython: only its native library is used.
python3 -m pip download --quiet --disable-pip-version-check --no-deps --only-binary=:all: \
  --platform manylinux_2_28_x86_64 --python-version 3.11 --implementation cp \
  "ctranslate2==$VERSION" -d "$tmp"
echo "$SHA256  $tmp/$WHEEL" | sha256sum --check --quiet
rm -rf "$LIB"
mkdir -p "$LIB"
python3 - "$tmp/$WHEEL" "$LIB" <<'PY'
import os, sys, zipfile
wheel, out = sys.argv[1], sys.argv[2]
with zipfile.ZipFile(wheel) as z:
    for name in z.namelist():
        if name.startswith("ctranslate2.libs/") and not name.endswith("/"):
            target = os.path.join(out, os.path.basename(name))
            with z.open(name) as src, open(target, "wb") as dst:
                dst.write(src.read())
PY
ln -sf "$(cd "$LIB" && ls libctranslate2-*.so."$VERSION")" "$LIB/libctranslate2.so"
# ct2rs's `system` mode names these static libraries on every x86_64 Linux build (CPU feature
# detection and CUDA's, which the wheel's library carries or does not use): empty archives
# satisfy the linker.
for stub in cpu_features cublas_static cublasLt_static culibos; do
  ar rc "$LIB/lib$stub.a"
done
echo "$VERSION" > "$LIB/VERSION"
echo "CTranslate2 $VERSION in $LIB"
