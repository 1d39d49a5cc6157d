#!/usr/bin/env bash
# Builds the CPU FFI module with AddressSanitizer + UndefinedBehaviorSanitizer (Bazel, offline) and runs
# the native tests against it. Any sanitizer report aborts the run (halt_on_error) and fails the script.
#   bash scripts/sanitize_check.sh          (inside the project venv; ~3-4 minutes on 2 cores)
# On a CUDA machine, the CUDA kernels are checked with compute-sanitizer instead:
#   compute-sanitizer --tool memcheck python3 -P scripts/gpu_check.py OUT   (and --tool racecheck)
set -euo pipefail
cd "$(dirname "$0")/.."
SAN="-fsanitize=address,undefined"
export BAZEL_CHECK_FLAGS="--copt=$SAN --copt=-fno-omit-frame-pointer --copt=-fno-sanitize-recover=all --linkopt=$SAN --strip=never"
export BAZEL_CHECK_PRELOAD="$(gcc -print-file-name=libasan.so):$(gcc -print-file-name=libubsan.so)"
# Python itself is not instrumented: leak checking would report the interpreter's own allocations.
export ASAN_OPTIONS="detect_leaks=0:halt_on_error=1:abort_on_error=1"
export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1"
export BAZEL_CHECK_K="${SANITIZE_K-softbounds or summed or piecewise or pcm or non_finite or inconsistent or vmap or in_place}"
exec bash scripts/bazel_check.sh
