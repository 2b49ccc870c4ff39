#!/usr/bin/env bash
# nbprod's main job end to end on a shipped example notebook:
# check → sweep (runs in parallel on warm kernels) → extract the best run → install into a
# clean venv → the package's tests → predict → publish a verified wheel, its models also
# converted to ONNX → serve one request on ONNX Runtime.
set -euo pipefail
cd "$(dirname "$0")/.."
export UV_CACHE_DIR="${UV_CACHE_DIR:-$PWD/.cache/uv}"
NOTEBOOK="${1:-example_notebooks/cancer_threshold.ipynb}"
OUT="${OUT:-out/demo}"
bash scripts/setup.sh
PATH="$PWD/.venv/bin:$PATH"

echo "== nbprod check $NOTEBOOK"
nbprod check "$NOTEBOOK"
echo "== nbprod run $NOTEBOOK (a sweep over C)"
nbprod run "$NOTEBOOK" -p C=0.1,1.0,10.0 -p max_iter=1000 --workers 2
echo "== nbprod runs $NOTEBOOK --sort roc_auc"
nbprod runs "$NOTEBOOK" --sort roc_auc
echo "== nbprod extract --run best:roc_auc -o $OUT/package"
nbprod extract "$NOTEBOOK" --run best:roc_auc -o "$OUT/package" --force
echo "== install into a clean venv ($OUT/venv) and run the package's own tests"
rm -rf "$OUT/venv"
uv venv --quiet --python .venv/bin/python "$OUT/venv"
uv pip install --quiet --python "$OUT/venv/bin/python" "$OUT/package[test]"
(cd "$OUT/package" && ../venv/bin/python -m pytest -q)
echo "== predict with the installed package"
"$OUT/venv/bin/python" - "$OUT/package" <<'PY'
import importlib, json, pathlib, sys
import pandas as pd
project = pathlib.Path(sys.argv[1])
package_dir = next((project / "src").iterdir())
pkg = importlib.import_module(package_dir.name)
info = pkg.info()
print(f"{info['package']} {info['version']} from run {info['run_id']}: {info['entry_point']['signature']}")
print("metrics:", json.dumps(info["metrics"]))
parity = project / "tests" / "parity"
from importlib import import_module
values = import_module(f"{package_dir.name}._values")
call = json.loads((parity / "parity.json").read_text())["calls"][0]
args = [values.decode(a, parity) for a in call["args"]]
expected = values.decode(call["result"], parity)
got = pkg.predict(*args)
values.assert_same(got, expected, "prediction")
print("package prediction :", list(pd.Series(list(got)).head(8)))
print("notebook prediction:", list(pd.Series(list(expected)).head(8)))
print("identical to what the notebook predicted: yes")
PY

echo "== nbprod publish --run best:roc_auc --dist $OUT/dist --onnx (build, clean-venv tests, place)"
rm -rf "$OUT/dist"
nbprod publish "$NOTEBOOK" --run best:roc_auc --dist "$OUT/dist" --onnx
echo "== install the wheel with its [serve,parquet,onnx] extras ($OUT/serve-venv), serve one request"
rm -rf "$OUT/serve-venv"
uv venv --quiet --python .venv/bin/python "$OUT/serve-venv"
WHEEL="$(ls "$OUT"/dist/*.whl)"
uv pip install --quiet --python "$OUT/serve-venv/bin/python" "$WHEEL[serve,parquet,onnx]"
SCRIPT="$(basename "$WHEEL" | cut -d- -f1 | tr _ -)"  # the package's console script
PORT="$("$OUT/serve-venv/bin/python" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
"$OUT/serve-venv/bin/$SCRIPT" serve --port "$PORT" > "$OUT/serve.log" 2>&1 &
SERVER=$!
trap 'kill "$SERVER" 2>/dev/null || true' EXIT
"$OUT/serve-venv/bin/python" - "$PORT" "$OUT/package" <<'PY'
import json, pathlib, sys, time, urllib.request
port, project = sys.argv[1], pathlib.Path(sys.argv[2])
base = f"http://127.0.0.1:{port}"
for _ in range(300):
    try:
        urllib.request.urlopen(f"{base}/health", timeout=1)
        break
    except OSError:
        time.sleep(0.1)
# one row the notebook itself predicted, as a JSON record (the model card shows the same)
package = next((project / "src").iterdir()).name
values = __import__(f"{package}._values", fromlist=["decode"])
parity = project / "tests" / "parity"
call = json.loads((parity / "parity.json").read_text())["calls"][0]
row = values.decode(call["args"][0], parity).head(1)
body = json.dumps({"records": json.loads(row.to_json(orient="records"))})
request = urllib.request.Request(
    f"{base}/predict", data=body.encode(), headers={"Content-Type": "application/json"}
)
with urllib.request.urlopen(request, timeout=30) as response:
    print("POST /predict", response.status, response.read().decode()[:200])
with urllib.request.urlopen(f"{base}/metadata", timeout=30) as response:
    print("GET /metadata: the artifacts are read with", json.loads(response.read())["backends"])
PY
kill "$SERVER"
wait "$SERVER" 2>/dev/null || true
trap - EXIT
echo "== done: package in $OUT/package, wheel in $OUT/dist"
