#!/usr/bin/env bash
# Installs the Debian packages lockstep builds and tests with, if any are missing.
# Works as root or through sudo. The CUDA toolkit is not a Debian package: install it from
# NVIDIA (nvcc in /usr/local/cuda/bin) to build the CUDA kernels.
set -euo pipefail

packages=(cmake ninja-build g++ pkg-config libopenmpi-dev openmpi-bin catch2 libopenblas-dev libdnnl-dev
          libcli11-dev nlohmann-json3-dev libtomlplusplus-dev libspdlog-dev libfmt-dev
          libxxhash-dev libzstd-dev ccache python3-matplotlib)

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0

echo "lockstep: installing missing packages: ${missing[*]}"
sudo=""
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null || { echo "lockstep: need root or sudo to install ${missing[*]}" >&2; exit 1; }
  sudo="sudo"
fi
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
