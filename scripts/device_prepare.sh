#!/usr/bin/env bash
# Prepares .device/sysroot: the Debian packages lockstep builds against, unpacked, for a GPU
# machine that has CUDA, CMake and ninja but no package registry (the device tool of this
# workplace). Run it here (with network), then on the GPU machine run scripts/gpu_check.sh with
# .device carried along. Open MPI is left out: on one GPU the tests run single-process.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
dir="$root/.device"
rm -rf "$dir/debs" "$dir/sysroot"
mkdir -p "$dir/debs" "$dir/sysroot"
cd "$dir/debs"
apt-get download libspdlog-dev libspdlog1.10 libfmt-dev libfmt9 libtomlplusplus-dev \
  libtomlplusplus3 nlohmann-json3-dev libcli11-dev libxxhash-dev libxxhash0 libzstd-dev libzstd1 \
  libopenblas-dev libopenblas0-pthread libopenblas-pthread-dev libopenblas0 libgfortran5 \
  libquadmath0 catch2 >/dev/null || {
  echo "device_prepare.sh: apt-get download failed (run apt-get update first?)" >&2
  exit 1
}
for f in *.deb; do dpkg -x "$f" "$dir/sysroot"; done
# Keep what the build and the tests need: no static libraries, LAPACK, docs, or the OpenBLAS
# CMake file (it holds absolute /usr paths; gpu_check.sh names the library directly).
find "$dir/sysroot" -name '*.a' ! -name 'libCatch2*' -delete
rm -rf "$dir/sysroot/usr/share/doc" "$dir/sysroot/usr/share/man" \
  "$dir/sysroot/usr/lib/x86_64-linux-gnu/openblas-pthread/liblapack.so.3" \
  "$dir/sysroot/usr/lib/x86_64-linux-gnu/openblas-pthread/cmake" \
  "$dir/sysroot/usr/lib/x86_64-linux-gnu/cmake/openblas"
rm -rf "$dir/debs"
# The PyTorch yardstick (../shared does not travel to the device machine).
if [ -f "$root/../shared/peers/torch_bench.py" ]; then
  mkdir -p "$dir/peers" && cp "$root/../shared/peers/torch_bench.py" "$dir/peers/"
fi
echo "prepared $(du -sh "$dir/sysroot" | cut -f1) in $dir/sysroot (carry: .device)"
