#!/usr/bin/env bash
# End-to-end check of the C++ example on an ARM target under emulation: the same
# converted model and input give the same top-5 as on x86 (the Python engine here).
# Called by scripts/test-arm.sh as: arm-e2e.sh TARGET BUILD_DIR EMULATOR...
set -euo pipefail
target=$1; bdir=$2; shift 2
emu=("$@")
cd "$(dirname "$0")/.."
fix=build/arm-fixture
if [ ! -f "$fix/top5.txt" ] || [ scripts/make_example_fixture.py -nt "$fix/top5.txt" ]; then
  .venv/bin/python scripts/make_example_fixture.py "$fix" >/dev/null
fi
out=$("${emu[@]}" "$bdir/examples/cpp/bmx_classify" "$fix/model.bmx" "$fix/input.f32" --threads 2)
# Lines "rank class logit", grouped per image after "image b" headers.
got=$(echo "$out" | awk '/^image/{if (line!="") print line; line=""; next} {line = line (line==""?"":" ") $2} END{print line}')
want=$(cat "$fix/top5.txt")
echo "$out" | sed "s/^/  [$target] /"
if [ "$got" != "$want" ]; then
  echo "[$target] top-5 differs from x86: got '$got', want '$want'" >&2
  exit 1
fi
echo "== [$target] example top-5 matches x86"
