#!/usr/bin/env bash
# Builds bench/blas_compare.cpp against OpenBLAS, BLIS and oneDNN (whichever are installed:
# libopenblas-dev, libblis-dev, libdnnl-dev) and runs them alternately, one thread each.
#   bench/blas_compare.sh [rounds]
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
out="$(mktemp -d)"
trap 'rm -rf "$out"' EXIT
rounds="${1:-2}"
libs=()
g++ -O3 -std=c++17 "$here/blas_compare.cpp" -o "$out/openblas" -lopenblas && libs+=(openblas)
if [ -e /usr/include/x86_64-linux-gnu/blis.h ] || [ -e /usr/include/blis/blis.h ]; then
  g++ -O3 -std=c++17 -DUSE_BLIS -I/usr/include/x86_64-linux-gnu "$here/blas_compare.cpp" \
    -o "$out/blis" -lblis -lm -lpthread && libs+=(blis)
fi
if [ -e /usr/include/oneapi/dnnl/dnnl.h ]; then
  g++ -O3 -std=c++17 -DUSE_ONEDNN "$here/blas_compare.cpp" -o "$out/onednn" -ldnnl && libs+=(onednn)
fi
for ((r = 1; r <= rounds; ++r)); do
  for lib in "${libs[@]}"; do
    OMP_NUM_THREADS=1 BLIS_NUM_THREADS=1 OPENBLAS_NUM_THREADS=1 "$out/$lib"
  done
done
