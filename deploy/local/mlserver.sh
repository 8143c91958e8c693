#!/usr/bin/env bash
# The managed local model server's own virtualenv: MLServer 1.7.1 with its scikit-learn runtime
# and onnxruntime (served by mlplane's runtime in services/triton_manager/mlserver_runtime).
# MLServer pins fastapi<0.116 and more, which clash with mlplane's, so it lives apart.
#
# Usage: deploy/local/mlserver.sh [VENV]   (default .mlplane/mlserver-venv)
# Prints the path of its python. Installs once; a stamp records what was installed, so a change
# of versions (or of mlplane's scikit-learn, which must unpickle the same models) reinstalls.
set -euo pipefail

HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$HERE/../.." && pwd)"
VENV="${1:-${MLPLANE_MLSERVER_VENV:-$ROOT/.mlplane/mlserver-venv}}"
MLSERVER_VERSION="${MLPLANE_MLSERVER_VERSION:-1.7.1}"
PLATFORM_PY="${MLPLANE_PYTHON:-$ROOT/.venv/bin/python}"
BASE_PY="${MLPLANE_MLSERVER_BASE_PYTHON:-python3}"

say() { echo "mlserver: $*" >&2; }

pin() { # the version of a package in mlplane's own environment, so both sides unpickle alike
  "$PLATFORM_PY" -c "import importlib.metadata as m; print(m.version('$1'))" 2>/dev/null || true
}

SKLEARN="$(pin scikit-learn)"
NUMPY="$(pin numpy)"
ORT="$(pin onnxruntime)"
SPEC=("mlserver==$MLSERVER_VERSION" "mlserver-sklearn==$MLSERVER_VERSION"
  "onnxruntime${ORT:+==$ORT}" "scikit-learn${SKLEARN:+==$SKLEARN}" "numpy${NUMPY:+==$NUMPY}")
STAMP="${SPEC[*]}"

if [[ -x $VENV/bin/mlserver && -f $VENV/.stamp && $(cat "$VENV/.stamp") == "$STAMP" ]]; then
  echo "$VENV/bin/python"
  exit 0
fi

exec 9>"$(dirname "$VENV")/.mlserver-venv.lock"
flock 9
if [[ -x $VENV/bin/mlserver && -f $VENV/.stamp && $(cat "$VENV/.stamp") == "$STAMP" ]]; then
  echo "$VENV/bin/python"
  exit 0
fi
say "installing ${SPEC[*]} into $VENV"
rm -rf "$VENV"
"$BASE_PY" -m venv "$VENV"
"$VENV/bin/pip" install -q --disable-pip-version-check "${SPEC[@]}" >&2
echo "$STAMP" >"$VENV/.stamp"
echo "$VENV/bin/python"
