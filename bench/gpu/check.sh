#!/usr/bin/env bash
# The device check, for the GPU machine the project may be lent (one NVIDIA H200, CUDA 13 nvcc,
# CMake, ninja, a Python PyTorch with CUDA; no Node.js, no network). Builds the core and
# bench/gpu/driver.cc against that PyTorch's libtorch (or Torch_DIR), runs the driver on the CPU and
# the GPU in one process and writes one JSON file: parity (test-image scores within 1e-3 relative,
# the same coreset picks for the same points and starts), fit seconds, score ms per image at batch
# 1 / 8 / 32, coreset selections/s, head iterations/s, the GPU's memory peak.
#   bash bench/gpu/check.sh [out.json]      (default: $OUT/gpu_check.json, else bench/results/gpu_check.json)
# Needs bench/gpu/data (node bench/gpu/prepare.mjs, here; carried to the GPU machine).
# Without a GPU it runs the CPU half and says so ("cuda_available": false): the dry run.
set -euo pipefail
cd "$(dirname "$0")/../.."
out=${1:-${OUT:-bench/results}/gpu_check.json}
mkdir -p "$(dirname "$out")"
start=$(date +%s)
[ -f bench/gpu/data/frames.txt ] || { echo "check: bench/gpu/data is missing: run node bench/gpu/prepare.mjs" >&2; exit 1; }

# The libtorch: Torch_DIR, else the Python torch's own CMake files.
if [ -z "${Torch_DIR:-}" ]; then
  Torch_DIR=$(python3 -c 'import torch, os; print(os.path.join(torch.utils.cmake_prefix_path, "Torch"))')
fi
torch_root=$(cd "$Torch_DIR/../../.." && pwd)            # <...>/torch
defs=(-DCMAKE_PREFIX_PATH="$torch_root" -DTorch_DIR="$Torch_DIR" -DCaffe2_DIR="$torch_root/share/cmake/Caffe2")
if [ -f "$torch_root/lib/libtorch_cuda.so" ]; then
  cuda_home=${CUDA_HOME:-$( [ -x /usr/local/cuda/bin/nvcc ] && echo /usr/local/cuda || dirname "$(dirname "$(readlink -f "$(command -v nvcc)")")")}
  defs+=(-DCUDA_TOOLKIT_ROOT_DIR="$cuda_home")
  nvrtc=$(ls "$torch_root"/../nvidia/*/lib/libnvrtc.so.* 2>/dev/null | grep -E 'libnvrtc\.so\.[0-9]+$' | head -1 || true)
  [ -n "$nvrtc" ] && defs+=(-DCUDA_nvrtc_LIBRARY="$nvrtc")
fi
build=${BUILD_DIR:-build-gpu-check}
gen=(); command -v ninja >/dev/null && gen=(-G Ninja)
cmake -S . -B "$build" "${gen[@]}" -DCMAKE_BUILD_TYPE=Release -DRECONPATCH_ADDON=OFF -DRECONPATCH_GPU_CHECK=ON "${defs[@]}" > "$build.configure.log" 2>&1 \
  || { tail -40 "$build.configure.log"; exit 1; }
cmake --build "$build" -j"$(nproc)" --target reconpatch_gpu_check
echo "check: built in $(( $(date +%s) - start )) s" >&2
"$build/reconpatch_gpu_check" bench/gpu/data "$out"
echo "check: done in $(( $(date +%s) - start )) s -> $out" >&2
