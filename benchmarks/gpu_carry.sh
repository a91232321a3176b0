#!/usr/bin/env bash
# Prepare what a lent GPU machine lacks for `python -m benchmarks gpu` (run here, in the repo root, once):
# wheels of nevergrad and foolbox with the dependencies that machine's image lacks (into .whl/), and the
# bundled MNIST test set (into .carry/mnist/), both ignored by git. Ray's wheel is larger than the 64 MiB a
# call may carry, so on that machine the Ray row of the battery part says "ray is not installed here".
# Then one device call, carry [".whl", ".carry"], runs the command printed at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
grep -qx '/.whl/' .git/info/exclude 2>/dev/null || echo '/.whl/' >> .git/info/exclude
grep -qx '/.carry/' .git/info/exclude 2>/dev/null || echo '/.carry/' >> .git/info/exclude
platforms=()
for tag in manylinux_2_28_x86_64 manylinux_2_27_x86_64 manylinux_2_17_x86_64 manylinux2014_x86_64 manylinux1_x86_64; do
  platforms+=(--platform "$tag")
done
python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp "${platforms[@]}" \
  -d .whl nevergrad==1.0.12 bayesian-optimization==1.4.0 cma==4.5.0 directsearch==1.1 \
  foolbox==3.3.4 eagerpy==0.30.0 GitPython==3.2.1 gitdb==4.0.12 smmap==5.0.3
mkdir -p .carry/mnist
cp ../shared/data/mnist/* .carry/mnist/
du -sh .whl .carry
cat <<'EOF'
device run command (carry [".whl", ".carry"], timeout_s 570):
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
  && export PYTHONPATH=/tmp/site:. PYTHONUNBUFFERED=1 || exit; \
python3 -m benchmarks gpu --device cuda --mnist-dir .carry/mnist --out "$OUT/bench" 2>&1 | tee "$OUT/log"
EOF
