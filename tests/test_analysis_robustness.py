"""Whatever cells a real notebook holds, in whatever roles, the analysis never crashes:
it returns problems. Cells are drawn from constructs real notebooks contain."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from nbbuild import build

from nbprod.analysis.analyzer import analyze
from nbprod.roles import ROLES

SNIPPETS = [
    "import pandas as pd\nimport numpy as np",
    "from sklearn.linear_model import LogisticRegression as LR",
    "from os.path import *",
    "df = pd.read_csv('x.csv')",
    "X = df.drop(columns=['y'])\ny = df['y']",
    "model = LR().fit(X, y)",
    "def predict(records):\n    return model.predict(records)",
    "def helper(a, b=2, *args, k=1, **kw):\n    global G\n    G = a\n    return [i for i in args]",
    "class Thing(Base, metaclass=Meta):\n    x = 1\n    def m(self):\n        return self.x + y",
    "y_pred = model.predict(X_test)",
    "%matplotlib inline",
    "%%time\nz = 1",
    "%%bash\necho hi",
    "!pip install foo",
    "files = !ls",
    "x?",
    "def broken(:\n    pass",
    "async def fetch():\n    await thing()",
    "match cmd:\n    case [a, *rest]:\n        b = a\n"
    "    case {'k': v, **other}:\n        b = v\n    case _:\n        pass",
    "with open('f') as fh, ctx() as (a, b):\n    text = fh.read()",
    "for i, (j, k) in enumerate(pairs):\n    total += j\nelse:\n    done = True",
    "try:\n    v = risky()\nexcept (ValueError, KeyError) as err:\n    v = None\n"
    "finally:\n    cleanup()",
    "del df",
    "df['ratio'] = df.a / df.b\nmodel.coef_[0] = 1",
    "f = lambda v, w=scale: v * w",
    "n = (m := 3) + [q := r for r in range(m)][0]",
    "@decorator(arg)\ndef decorated():\n    nonlocal_free = outer\n    return nonlocal_free",
    "threshold = 0.5",
    "assert accuracy > 0.5",
    "accuracy = (y_pred == y).mean()",
    "print(predict(df.head()))",
    "lst = [1, 2]\nlst += [3]",
    "if flag:\n    a = 1\nelif other:\n    a = 2\nelse:\n    del a",
    "while running:\n    step()\n    break",
    "raise SystemExit",
    "",
    "# only a comment",
    "yield_value = (yield)",
    "return 5",
]

cells = st.lists(
    st.tuples(st.sampled_from([None, *ROLES, "train,inference"]), st.sampled_from(SNIPPETS)),
    min_size=0,
    max_size=12,
)
settings_ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@settings_
@given(cells=cells, inference=st.sampled_from([None, "predict", "helper", "missing"]))
def test_analysis_never_crashes(cells: list[tuple[str | None, str]], inference: str | None) -> None:
    with tempfile.TemporaryDirectory() as folder:
        notebook = build(Path(folder), *cells, nbprod={"inference": inference} if inference else {})
        analysis = analyze(notebook)
        data = json.loads(json.dumps(analysis.to_json()))
    assert data["ok"] == (not analysis.errors)
    for problem in analysis.problems:
        assert 1 <= problem.cell <= max(len(cells), 1)
        assert problem.message
        assert str(problem).startswith(f"cell {problem.cell} (")
