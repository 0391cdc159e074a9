#!/usr/bin/env bash
# The GPU check of spectral-study, in one command, on a machine with an NVIDIA GPU:
#
#     bash benchmarks/gpu_check.sh [WORKDIR]
#
# 1. makes a virtual environment in WORKDIR with a CUDA build of torch and this package;
# 2. runs a short study with resources.gpu 0.25 and checks that every trial ran on cuda;
# 3. runs the same study on the CPU and compares each trial's accuracy (same seeds; the tolerance
#    and why are in benchmarks/gpu_check.py);
# 4. restores a checkpoint written on the GPU on the CPU (an ordinary and a packed trial);
# 5. prints trials per minute at gpu 1, 0.5, 0.25 and 0.125, and with packed seeds.
# Exit status 0 when every check passed. Takes about 10 minutes after the install.
#
# Environment:
#   TORCH_INDEX_URL         where pip gets torch (default https://download.pytorch.org/whl/cu124)
#   PYTHON                  the interpreter for the environment (default python3)
#   GPU_CHECK_SKIP_INSTALL  1: use the python on PATH as it is (torch and the package installed)
#   GPU_CHECK_REHEARSE      1: no GPU needed; every step runs on the CPU with a logical GPU in Ray,
#                           to test this script (step 2 then compares the CPU with itself)
set -euo pipefail

repo="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
work="${1:-$(mktemp -d -t spectral-gpu-check-XXXXXX)}"
mkdir -p "$work"
work="$(cd "$work" && pwd)"
index_url="${TORCH_INDEX_URL:-https://download.pytorch.org/whl/cu124}"
rehearse=()
if [[ "${GPU_CHECK_REHEARSE:-0}" == "1" ]]; then
    rehearse=(--rehearse)
fi

if [[ "${GPU_CHECK_SKIP_INSTALL:-0}" == "1" ]]; then
    python="$(command -v python3 || command -v python)"
else
    echo "== environment: $work/venv (torch from $index_url)"
    "${PYTHON:-python3}" -m venv "$work/venv"
    python="$work/venv/bin/python"
    "$python" -m pip install --quiet --upgrade pip
    "$python" -m pip install --quiet torch --index-url "$index_url"
    # torch is installed first so that the package's "torch>=2.3" keeps this CUDA build.
    "$python" -m pip install --quiet -e "$repo"
fi

echo "== versions"
"$python" - <<'EOF'
import torch
print(f"torch {torch.__version__}, CUDA build {torch.version.cuda}, cuda available {torch.cuda.is_available()}")
for i in range(torch.cuda.device_count()):
    print(f"  cuda:{i} {torch.cuda.get_device_name(i)}")
EOF
if [[ ${#rehearse[@]} -eq 0 ]]; then
    if ! "$python" -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)'; then
        echo "error: torch sees no CUDA device; set TORCH_INDEX_URL to a CUDA build matching the driver" \
             "(nvidia-smi shows its CUDA version), or GPU_CHECK_REHEARSE=1 to test this script on a CPU" >&2
        exit 2
    fi
    nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || true
fi

echo "== checks (results in $work/results)"
cd "$repo"
# Quiet Ray: its own progress tables would bury the check's lines.
export RAY_AIR_NEW_OUTPUT=0 RAY_DEDUP_LOGS=1
"$python" benchmarks/gpu_check.py "$work" "${rehearse[@]}"
