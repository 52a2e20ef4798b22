#!/usr/bin/env bash
# Run HERE (with the package registries), before the device check: builds .whl/ (ignored by git,
# carried to the device machine) with flshell's own wheel and the packages the device's image
# lacks or has in older versions than flshell needs, for its Python 3.12 on x86-64.
set -euo pipefail
cd "$(dirname "$0")/../.."
grep -qx '/.whl/' .git/info/exclude 2>/dev/null || echo '/.whl/' >> .git/info/exclude
rm -rf .whl && mkdir .whl
python3 -m pip wheel -q --no-deps --no-build-isolation -w .whl .
ver() { python3 -c "import importlib.metadata as m; print(m.version('$1'))"; }
platforms=()
for p in manylinux_2_28_x86_64 manylinux_2_27_x86_64 manylinux_2_17_x86_64 manylinux2014_x86_64 \
         manylinux1_x86_64; do platforms+=(--platform "$p"); done
for pkg in grpcio grpcio-health-checking protobuf prompt_toolkit wcwidth; do
  python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 \
    --implementation cp "${platforms[@]}" -d .whl "$pkg==$(ver "$pkg")"
done
ls -la .whl
du -sh .whl
