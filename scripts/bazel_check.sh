#!/usr/bin/env bash
# Smoke check of the secondary, offline Bazel build (WORKSPACE, BUILD.bazel, bazel/): builds
# //:_mrl_cpu.so with the current `python`, then runs tests/test_native.py against that module.
#
# Usage (inside the venv that has jax, jaxlib, nanobind, numpy, pytest, scipy and mrl_jax):
#   bash scripts/bazel_check.sh
# Environment:
#   PYTHON            interpreter to build for and test with (default: `python` on PATH)
#   BAZEL_CHECK_K     pytest -k expression; empty runs all of test_native.py (~3 min on 2 cores)
#   BAZEL_CHECK_KEEP  1 keeps the temporary test tree and prints its path
#   BAZEL_CHECK_FLAGS extra Bazel build flags (e.g. sanitizer copts; see scripts/sanitize_check.sh)
#   BAZEL_CHECK_PRELOAD  LD_PRELOAD for the test interpreters (sanitizer runtimes)
#
# Installs Debian's bazel-bootstrap (Bazel 4.2.3) with apt-get when `bazel` is not on PATH.
#
# The venv's editable (scikit-build-core) install of mrl_jax puts a meta path finder in front of
# sys.path from a .pth file, so PYTHONPATH alone would still import the CMake-built _mrl_cpu. The
# tests therefore run on a copy of mrl_jax/ and tests/ in a temporary directory, with the Bazel
# .so as mrl_jax/_mrl_cpu.so and a sitecustomize.py that drops any meta path finder resolving
# mrl_jax elsewhere. sitecustomize runs after the .pth files in every interpreter that has the
# temporary directory on PYTHONPATH, including the subprocesses the tests start.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

# The default subset (~1 min on 2 cores instead of ~3): registration, the bitwise comparison for
# the softbounds device and for summed ConstantStep pulses under all 8 update configs, vmap over seeds
# (softbounds, summed constant step) and the batched
# kernel call, donation/in-place, shape/dtype errors, inconsistent operands, non-finite inputs and
# the thread-count independence check (which imports the module in subprocesses).
DEFAULT_K="registered or softbounds or summed or one_batched or in_place or bad_shapes or inconsistent or non_finite or thread"
PYTEST_K="${BAZEL_CHECK_K-$DEFAULT_K}"

STATUS="FAILED (setup)"
TMP=""
T_START=$SECONDS
finish() {
  local rc=$?
  if [[ -n "$TMP" && "${BAZEL_CHECK_KEEP:-0}" != 1 ]]; then
    rm -rf "$TMP"
  fi
  if [[ $rc -ne 0 ]]; then
    echo "bazel_check: $STATUS after $((SECONDS - T_START)) s (exit $rc)" >&2
  fi
}
trap finish EXIT

PYTHON="$(command -v "${PYTHON:-python}" || true)"
if [[ -z "$PYTHON" ]]; then
  echo "bazel_check: no python on PATH (activate the venv or set PYTHON)" >&2
  exit 2
fi

# ---- Bazel ------------------------------------------------------------------------------------
if ! command -v bazel >/dev/null 2>&1; then
  STATUS="FAILED (installing bazel-bootstrap)"
  SUDO=""
  if [[ $(id -u) -ne 0 ]]; then SUDO="sudo"; fi
  echo "bazel_check: installing bazel-bootstrap with apt-get ..."
  APT_LOG="$(mktemp)"
  if ! { $SUDO apt-get update -qq &&
         $SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq bazel-bootstrap; } >"$APT_LOG" 2>&1; then
    tail -n 30 "$APT_LOG" >&2
    exit 1
  fi
  rm -f "$APT_LOG"
fi

STATUS="FAILED (bazel build)"
BAZEL_FLAGS=(--repo_env=PYTHON_BIN_PATH="$PYTHON")
# shellcheck disable=SC2206
EXTRA_FLAGS=(${BAZEL_CHECK_FLAGS:-})
T0=$SECONDS
bazel build "${BAZEL_FLAGS[@]}" "${EXTRA_FLAGS[@]}" --noshow_progress --curses=no --color=no //:_mrl_cpu.so
SO="$(bazel info "${BAZEL_FLAGS[@]}" "${EXTRA_FLAGS[@]}" bazel-bin 2>/dev/null)/_mrl_cpu.so"
BUILD_S=$((SECONDS - T0))
[[ -f "$SO" ]] || { echo "bazel_check: $SO missing after the build" >&2; exit 1; }

# ---- Test tree --------------------------------------------------------------------------------
STATUS="FAILED (preparing the test tree)"
TMP="$(mktemp -d "${TMPDIR:-/tmp}/mrl_bazel_check.XXXXXX")"
# mrl_jax/ (sources and data, without compiled extensions) and tests/.
tar -C "$ROOT" --exclude='__pycache__' --exclude='*.so' --exclude='*.pyd' --exclude='*.pyc' \
    -cf - mrl_jax tests | tar -C "$TMP" -xf -
install -m 0644 "$SO" "$TMP/mrl_jax/_mrl_cpu.so"
# Only CPU handlers are built here; keep JAX off any accelerator the machine may have.
export JAX_PLATFORMS="${JAX_PLATFORMS:-cpu}"

cat >"$TMP/sitecustomize.py" <<'EOF'
"""Written by scripts/bazel_check.sh: import mrl_jax from this directory, not the editable install.

site.py imports this module after processing the .pth files, i.e. after scikit-build-core's editable
hook has put its finder on sys.meta_path. Every meta path finder (other than the standard ones) that
resolves mrl_jax outside this directory is dropped, so `import mrl_jax` goes through sys.path, where
this directory comes first (PYTHONPATH). Any other sitecustomize on sys.path is run afterwards.
"""
import importlib.machinery
import importlib.util
import os
import sys

_HERE = os.path.dirname(os.path.abspath(__file__))
_STANDARD = (importlib.machinery.BuiltinImporter, importlib.machinery.FrozenImporter,
             importlib.machinery.PathFinder)


def _foreign(finder):
  if finder in _STANDARD or not hasattr(finder, "find_spec"):
    return False
  try:
    spec = finder.find_spec("mrl_jax", None)
  except Exception:  # a finder that cannot answer cannot shadow us either
    return False
  if spec is None:
    return False
  locations = [spec.origin or ""] + list(spec.submodule_search_locations or [])
  return any(loc and not os.path.abspath(loc).startswith(_HERE + os.sep) for loc in locations)


sys.meta_path[:] = [f for f in sys.meta_path if not _foreign(f)]

_other = importlib.machinery.PathFinder.find_spec(
    "sitecustomize", [p for p in sys.path if os.path.abspath(p or os.curdir) != _HERE])
if _other is not None and _other.loader is not None:
  _module = importlib.util.module_from_spec(_other)
  _other.loader.exec_module(_module)
EOF

cat >"$TMP/conftest.py" <<EOF
"""Written by scripts/bazel_check.sh: the run must use the Bazel-built module."""
import os

import mrl_jax
from mrl_jax import _mrl_cpu

EXPECTED = os.path.join("$TMP", "mrl_jax", "_mrl_cpu.so")
assert os.path.samefile(mrl_jax.__file__, os.path.join("$TMP", "mrl_jax", "__init__.py")), mrl_jax.__file__
assert os.path.samefile(_mrl_cpu.__file__, EXPECTED), f"{_mrl_cpu.__file__} is not {EXPECTED}"


def pytest_report_header(config):
  return f"mrl_jax._mrl_cpu (Bazel): {_mrl_cpu.__file__}"


def pytest_terminal_summary(terminalreporter):
  terminalreporter.write_line(f"tested mrl_jax._mrl_cpu = {_mrl_cpu.__file__}")
EOF
# A pytest.ini pins the rootdir (no search above the temporary directory).
printf '[pytest]\ntestpaths = tests\n' >"$TMP/pytest.ini"

export PYTHONPATH="$TMP${PYTHONPATH:+:$PYTHONPATH}"

# A separate interpreter started elsewhere, like the subprocesses of the thread-count test.
STATUS="FAILED (the Bazel module is not the one imported)"
MODULE_FILE="$(cd / && LD_PRELOAD="${BAZEL_CHECK_PRELOAD:-}" "$PYTHON" -c '
import mrl_jax._mrl_cpu as m, mrl_jax._native as n
assert n.available(), n.import_error()
print(m.__file__)')"
echo "bazel_check: mrl_jax._mrl_cpu = $MODULE_FILE"
[[ "$MODULE_FILE" -ef "$TMP/mrl_jax/_mrl_cpu.so" ]]

# ---- Tests ------------------------------------------------------------------------------------
STATUS="FAILED (tests/test_native.py)"
T0=$SECONDS
PYTEST_ARGS=(-q -p no:cacheprovider tests/test_native.py)
if [[ -n "$PYTEST_K" ]]; then PYTEST_ARGS+=(-k "$PYTEST_K"); fi
(cd "$TMP" && LD_PRELOAD="${BAZEL_CHECK_PRELOAD:-}" "$PYTHON" -m pytest "${PYTEST_ARGS[@]}")
TEST_S=$((SECONDS - T0))

STATUS="OK"
echo "bazel_check: OK: //:_mrl_cpu.so built in ${BUILD_S} s, tests/test_native.py${PYTEST_K:+ (-k subset)} passed in ${TEST_S} s against it"
