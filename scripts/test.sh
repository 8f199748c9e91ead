#!/usr/bin/env bash
# One-command tests: installs what the tests need, then runs them.
#   bash scripts/test.sh                    # python3 -m pytest -q tests
#   bash scripts/test.sh tests/unit -x      # arguments replace `tests`
# torch comes first, as its CPU build (PyPI's Linux x86_64 wheels are CUDA builds,
# several GB): kept when torch of the pinned version is already installed, else
# from $WGLLM_TORCH_INDEX (default https://download.pytorch.org/whl/cpu), else,
# only when that index is unreachable, from the configured indexes with a warning.
# Then wgllm, editable, with the `test` extra (pyproject.toml).
set -euo pipefail
. "$(dirname "$0")/_common.sh"
cd "$ROOT"
ensure_lavapipe

TORCH_VERSION="$(sed -n 's/^ *"torch==\([^"]*\)".*/\1/p' pyproject.toml)"
[ -n "$TORCH_VERSION" ] || { echo "wgllm: no torch==X pin in pyproject.toml's test extra" >&2; exit 1; }
TORCH_INDEX="${WGLLM_TORCH_INDEX:-https://download.pytorch.org/whl/cpu}"

torch_build() {  # prints e.g. "2.13.0+cpu cpu" or "2.13.0 cuda 12.8"; fails when torch is missing
  "$PY" -c 'import torch; c = torch.version.cuda; print(torch.__version__, "cuda " + c if c else "cpu")' 2>/dev/null
}

have="$(torch_build || true)"
if [ "${have%% *}" = "$TORCH_VERSION" ] || [[ "${have%% *}" == "$TORCH_VERSION+"* ]]; then
  echo "wgllm: torch ${have} already installed"
else
  if "$PY" - "$TORCH_INDEX" <<'PYEOF'
import sys, urllib.request
try:
    urllib.request.urlopen(sys.argv[1].rstrip("/") + "/torch/", timeout=20).close()
except Exception as e:
    print(f"wgllm: {sys.argv[1]} unreachable ({e})", file=sys.stderr)
    sys.exit(1)
PYEOF
  then
    echo "wgllm: installing torch==$TORCH_VERSION from $TORCH_INDEX"
    "$PY" -m pip install -q "torch==$TORCH_VERSION" --index-url "$TORCH_INDEX" --extra-index-url https://pypi.org/simple
  else
    echo "wgllm: WARNING: installing torch==$TORCH_VERSION from the configured indexes instead;" \
      "on Linux x86_64 PyPI's wheel is a CUDA build (several GB)" >&2
    "$PY" -m pip install -q "torch==$TORCH_VERSION"
  fi
  echo "wgllm: torch $(torch_build) installed"
fi

stamp="$("$PY" -c 'import sys; print(sys.prefix)')/.wgllm-test-extra"
want="$ROOT $(cksum <pyproject.toml)"
if [ "$(cat "$stamp" 2>/dev/null)" = "$want" ] && "$PY" -c 'import sys, wgllm, pytest, transformers
sys.exit(not wgllm.__file__.startswith(sys.argv[1]))' "$ROOT/src/" 2>/dev/null; then
  :  # the test extra of this pyproject.toml is installed already
else
  "$PY" -m pip install -q -e ".[test]"
  echo "$want" >"$stamp" 2>/dev/null || true
fi

if [ $# -eq 0 ]; then set -- tests; fi
exec "$PY" -m pytest -q "$@"
