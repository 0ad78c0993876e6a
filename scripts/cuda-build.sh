#!/usr/bin/env bash
# Builds Sinew with `--features cuda` on a machine without a system CUDA toolkit: nvcc and the
# CUDA headers and libraries come from PyPI (NVIDIA's wheels) into a virtual environment, laid
# out as a CUDA_HOME that candle's build scripts (bindgen_cuda, cudarc) accept.
#
#   bash scripts/cuda-build.sh            # cargo build --release --features cuda --bin sinew
#   bash scripts/cuda-build.sh check      # cargo check --features cuda (the kernels still compile)
#   bash scripts/cuda-build.sh link       # sinew-policy's tests built and linked with CUDA
#
# CUDA_COMPUTE_CAP (default 90: H100/H200) picks the GPU architecture the kernels are built for.
# The binary loads libcuda (the driver) at run time; the GPU machine needs only the driver.
set -euo pipefail
cd "$(dirname "$0")/.."
mode=${1:-build}
venv=${SINEW_CUDA_VENV:-$PWD/target/cuda-venv}
if [ ! -x "$venv/bin/python" ]; then
    python3 -m venv "$venv"
fi
# CUDA 13's wheels put every component into one tree, nvidia/cu13/{bin,include,lib}, nvcc
# included (the CUDA 12 nvcc wheel has only ptxas).
# 13.4: the newest toolkit cudarc 0.19 (candle 0.11's) knows; it refuses 13.5.
"$venv/bin/pip" install -q --disable-pip-version-check \
    "nvidia-cuda-nvcc==13.4.*" "nvidia-nvvm==13.4.*" "nvidia-cuda-crt==13.4.*" "nvidia-cuda-runtime==13.4.*" "nvidia-cuda-cccl>=13.2,<14" "nvidia-cublas>=13,<14" "nvidia-curand>=10,<11"
site=$("$venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
home="$site/nvidia/cu13"
[ -e "$home/lib64" ] || ln -s lib "$home/lib64"
for so in "$home"/lib/*.so.*; do
    base=$(basename "$so" | sed -E 's/\.so\..*/.so/')
    [ -e "$home/lib/$base" ] || ln -s "$(basename "$so")" "$home/lib/$base"
done
# libcuda is the driver's: only a machine with the driver has it. Candle links it (cudarc's
# dynamic-linking), so link against a stub with the driver API's symbols, made from cudarc's
# own declarations; at run time the loader finds the real libcuda.so.1.
if [ ! -e "$home/lib/libcuda.so" ]; then
    cargo fetch --locked >/dev/null
    cudarc=$(ls -d "${CARGO_HOME:-$HOME/.cargo}"/registry/src/*/cudarc-0.19.* | sort -V | tail -1)
    grep -rhoE "pub (unsafe )?fn cu[A-Z][A-Za-z0-9_]*\(" "$cudarc/src/driver/sys/" \
        | sed -E 's/pub (unsafe )?fn //; s/\(//' | sort -u \
        | awk '{print "void " $1 "(void) {}"}' > "$venv/libcuda-stub.c"
    cc -shared -fPIC -Wl,-soname,libcuda.so.1 -o "$home/lib/libcuda.so" "$venv/libcuda-stub.c"
fi
export CUDA_HOME="$home" CUDA_PATH="$home" NVCC="$home/bin/nvcc"
export PATH="$home/bin:$PATH" LD_LIBRARY_PATH="$home/lib:${LD_LIBRARY_PATH:-}"
export CUDA_COMPUTE_CAP=${CUDA_COMPUTE_CAP:-90}
"$NVCC" --version | tail -1
case "$mode" in
    check) cargo check -p sinew-policy --features cuda ;;
    link) cargo test -p sinew-policy --features cuda --no-run ;;
    build) cargo build --release --features cuda --bin sinew ;;
    *) echo "usage: $0 [build|check|link]" >&2; exit 2 ;;
esac
