#!/usr/bin/env bash
# Emulation builds (docs/cuda_emulation.md): lockstep-train on 3 ranks of emulated CUDA devices
# ends with the same replica state through the nccl communicator as through the mpi one (both add
# every gradient in rank order), with hashed tables and with dynamic ones (whose sparse exchange
# carries keyed records and evicts: the tables hold 1024 feasigns), and the nccl runs leave
# nothing in their message directory.
#   nccl_vs_mpi.sh MPIEXEC LOCKSTEP_TRAIN
set -euo pipefail
mpiexec=$1 train=$2
export LOCKSTEP_EMU_DEVICES=3 LOCKSTEP_EMU_NCCL_DIR
LOCKSTEP_EMU_NCCL_DIR=$(mktemp -d)
trap 'rm -rf "$LOCKSTEP_EMU_NCCL_DIR"' EXIT
hash_of() {  # communicator, then more lockstep-train arguments
  local comm=$1
  shift
  "$mpiexec" -np 3 --oversubscribe -x LOCKSTEP_EMU_DEVICES -x LOCKSTEP_EMU_NCCL_DIR "$train" \
    --device cuda --comm "$comm" --model din --train-samples 2000 --test-samples 300 \
    --batch-size 96 --table-rows 1024 --epochs 1 --log-every 0 "$@" 2>&1 |
    tee /dev/stderr | grep -o 'replica state hash [0-9a-f]*, identical on all 3' | cut -d' ' -f4
}
mpi=$(hash_of mpi)
nccl=$(hash_of nccl)
echo "hashed tables: mpi: $mpi, nccl: $nccl"
[ -n "$mpi" ] && [ "$mpi" = "$nccl" ]
dynamic=(--set 'model.tables_per_column.kind="dynamic"'
         --set model.tables_per_column.accessor.embedx_threshold=1)
mpi=$(hash_of mpi "${dynamic[@]}")
nccl=$(hash_of nccl "${dynamic[@]}")
echo "dynamic tables: mpi: $mpi, nccl: $nccl"
[ -n "$mpi" ] && [ "$mpi" = "$nccl" ]
left=$(ls -A "$LOCKSTEP_EMU_NCCL_DIR")
[ -z "$left" ] || { echo "left behind: $left"; exit 1; }
