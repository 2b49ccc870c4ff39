"""IPython syntax in cells: magics are understood and reported, never a crash."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest
from IPython.core.inputtransformer2 import TransformerManager
from nbbuild import build
from paths import EXAMPLE_NAMES, example

from nbprod.analysis.analyzer import Analysis, analyze
from nbprod.analysis.parsing import Magic, _plain_python, parse_cell
from nbprod.notebook import load_notebook

PREDICT = "def predict(X):\n    return model.predict(X)"


def check(tmp_path: Path, *cells: tuple[str | None, str] | str) -> Analysis:
    return analyze(build(tmp_path, *cells))


def code(source: str) -> list[str]:
    return [ast.unparse(statement) for statement in parse_cell(source).statements]


def test_line_magic_is_dropped_and_recorded_with_its_line() -> None:
    cell = parse_cell("x = 1\n%matplotlib inline\ny = 2")
    assert code("x = 1\n%matplotlib inline\ny = 2") == ["x = 1", "y = 2"]
    assert cell.magics == [Magic(2, "line", "%matplotlib inline")]
    assert [s.lineno for s in cell.statements] == [1, 3]


def test_shell_command_is_dropped_and_recorded() -> None:
    cell = parse_cell("a = 1\n!echo hi\nb = 2")
    assert [ast.unparse(s) for s in cell.statements] == ["a = 1", "b = 2"]
    assert cell.magics == [Magic(2, "shell", "!echo hi")]
    assert cell.pip_packages == []


def test_shell_output_assigned_to_a_name_stays_a_definition() -> None:
    cell = parse_cell("files = !ls")
    assert len(cell.statements) == 1
    assignment = cell.statements[0]
    assert isinstance(assignment, ast.Assign)
    assert ast.unparse(assignment.targets[0]) == "files"


def test_help_syntax_is_a_magic_not_a_syntax_error() -> None:
    cell = parse_cell("x?")
    assert cell.syntax_error is None
    assert cell.statements == []
    assert [m.kind for m in cell.magics] == ["line"]


def test_shell_pip_install_gives_requirements() -> None:
    cell = parse_cell('!pip install -q lightgbm==4.1 "xgboost>=2"')
    assert cell.pip_packages == ["lightgbm==4.1", "xgboost>=2"]


def test_pip_magic_and_python_m_pip_give_requirements() -> None:
    assert parse_cell("%pip install -U catboost").pip_packages == ["catboost"]
    assert parse_cell("!python -m pip install requests").pip_packages == ["requests"]
    assert parse_cell("%conda install scipy").pip_packages == ["scipy"]


def test_pip_without_install_gives_no_requirement() -> None:
    assert parse_cell("!pip list\n!pip freeze").pip_packages == []


def test_bash_cell_is_foreign_and_its_pip_installs_are_hints() -> None:
    cell = parse_cell("%%bash\npip install foo\nls -l")
    assert cell.foreign_cell_magic == "bash"
    assert cell.statements == []
    assert cell.pip_packages == ["foo"]
    assert cell.magics == [Magic(1, "cell", "%%bash")]


def test_writefile_cell_is_foreign() -> None:
    cell = parse_cell("%%writefile helper.py\nimport os\nx = 1")
    assert cell.foreign_cell_magic == "writefile"
    assert cell.statements == []


def test_time_cell_body_is_parsed_with_cell_line_numbers() -> None:
    cell = parse_cell("%%time\nx = 1\ny = x + 2")
    assert [ast.unparse(s) for s in cell.statements] == ["x = 1", "y = x + 2"]
    assert [s.lineno for s in cell.statements] == [2, 3]
    assert cell.foreign_cell_magic is None
    assert cell.magics[0] == Magic(1, "cell", "%%time")


def test_capture_cell_body_is_parsed() -> None:
    cell = parse_cell("%%capture out\nz = 1")
    assert [ast.unparse(s) for s in cell.statements] == ["z = 1"]


def test_time_line_magic_statement_is_analysed() -> None:
    cell = parse_cell("%time model = fit(X)\nscore = model.score(X)")
    assert [ast.unparse(s) for s in cell.statements] == ["model = fit(X)", "score = model.score(X)"]
    assert [s.lineno for s in cell.statements] == [1, 2]
    assert cell.magics == [Magic(1, "line", "%time model = fit(X)")]
    assert cell.segment(cell.statements[0]) == "model = fit(X)"


def test_unparsable_cell_keeps_the_error_line() -> None:
    cell = parse_cell("x = 1\ny = (2")
    assert cell.statements == []
    assert cell.syntax_error is not None
    assert cell.syntax_error.lineno == 2


def test_unparsable_cell_with_a_magic_keeps_the_user_line() -> None:
    cell = parse_cell("%matplotlib inline\nok = 1\ndef f(:\n    pass")
    assert cell.syntax_error is not None
    assert cell.syntax_error.lineno == 3


def test_unparsable_time_cell_body_reports_the_cell_line() -> None:
    cell = parse_cell("%%time\nq = 1\nr = =")
    assert cell.syntax_error is not None
    assert cell.syntax_error.lineno == 3


def test_empty_and_comment_only_cells_have_no_statements() -> None:
    for source in ("", "# just a note", "\n\n"):
        cell = parse_cell(source)
        assert (cell.statements, cell.magics, cell.syntax_error) == ([], [], None)


def test_segment_includes_decorators() -> None:
    cell = parse_cell("x = 1\n@decor\ndef f():\n    return x")
    assert cell.segment(cell.statements[1]) == "@decor\ndef f():\n    return x"


# -- through the analysis --------------------------------------------------------------


def test_magic_in_a_tagged_cell_is_a_warning_not_an_error(tmp_path: Path) -> None:
    analysis = check(
        tmp_path,
        ("train", "%matplotlib inline\nmodel = 1"),
        ("inference", PREDICT),
    )
    assert analysis.errors == []
    assert [(p.cell, p.line, p.severity) for p in analysis.problems if "magic" in p.message] == [
        (1, 1, "warning")
    ]


def test_magic_in_an_untagged_cell_is_not_reported(tmp_path: Path) -> None:
    analysis = check(
        tmp_path,
        (None, "%matplotlib inline\nimport math"),
        ("train", "model = math.pi"),
        ("inference", PREDICT),
    )
    assert [p for p in analysis.problems if "magic" in p.message] == []


def test_pip_installs_anywhere_become_dependency_hints(tmp_path: Path) -> None:
    analysis = check(
        tmp_path,
        (None, "!pip install lightgbm pandas"),
        ("train", "%pip install pandas shap\nmodel = 1"),
        (None, "%%bash\npip install xgboost"),
        ("inference", PREDICT),
    )
    assert analysis.pip_hints == ["lightgbm", "pandas", "shap", "xgboost"]
    assert analysis.to_json()["dependency_hints"] == ["lightgbm", "pandas", "shap", "xgboost"]


def test_bash_cell_tagged_with_a_role_is_an_error(tmp_path: Path) -> None:
    analysis = check(
        tmp_path,
        ("data", "%%bash\nwget http://x/data.csv"),
        ("train", "model = 1"),
        ("inference", PREDICT),
    )
    assert [(p.cell, p.role, p.line) for p in analysis.errors] == [(1, "data", 1)]
    assert "%%bash" in analysis.errors[0].message


def test_bash_cell_untagged_is_only_a_warning(tmp_path: Path) -> None:
    analysis = check(
        tmp_path,
        (None, "%%bash\nls"),
        ("train", "model = 1"),
        ("inference", PREDICT),
    )
    assert analysis.errors == []


def test_time_cell_body_defines_names_for_later_roles(tmp_path: Path) -> None:
    analysis = check(
        tmp_path,
        ("train", "%%time\nmodel = 1\nthreshold = 0.5"),
        ("inference", "def predict(X):\n    return model.predict(X) > threshold"),
    )
    assert analysis.errors == []
    assert set(analysis.artifacts) == {"model", "threshold"}
    assert analysis.artifacts["threshold"].line == 3


def test_time_cell_body_reads_are_checked_with_cell_lines(tmp_path: Path) -> None:
    analysis = check(
        tmp_path,
        ("train", "%%time\nmodel = 1\nscore = missing"),
        ("inference", PREDICT),
    )
    assert [(p.cell, p.line, p.name) for p in analysis.errors] == [(1, 3, "missing")]


def test_unparsable_tagged_cell_is_an_error_with_its_line(tmp_path: Path) -> None:
    analysis = check(
        tmp_path,
        "# Title",
        ("train", "model = 1\nthreshold = (0.5"),
        ("inference", PREDICT),
    )
    syntax = [p for p in analysis.errors if "does not parse" in p.message]
    assert [(p.cell, p.role, p.line) for p in syntax] == [(2, "train", 2)]


def test_unparsable_untagged_cell_is_only_a_warning(tmp_path: Path) -> None:
    analysis = check(
        tmp_path,
        (None, "plot(\n"),
        ("train", "model = 1"),
        ("inference", PREDICT),
    )
    assert analysis.errors == []
    assert [(p.cell, p.severity) for p in analysis.warnings if "parse" in p.message] == [
        (1, "warning")
    ]


def test_odd_ipython_input_never_crashes_the_analysis(tmp_path: Path) -> None:
    sources = ["%%", "%", "!", "%%time", "%%bash", "??", "%%capture\n", "x = !", "%time"]
    cells = [("train", source) for source in sources]
    analysis = check(tmp_path, *cells, ("train", "model = 1"), ("inference", PREDICT))
    assert {p.cell for p in analysis.errors} <= set(range(1, len(sources) + 1))


# Cells parsed without IPython must read exactly as its transformer would leave them.
PLAIN_PYTHON = [
    "",
    "x = 1",
    "import numpy as np\n\n\ndef f(a, b=2):\n    return a % b != 0\n",
    'message = f"{x!r} is {x=}? {y:>3}%"\nprint("In [1]: >>> ...:")',
    "d = {'a': [1,\n  2]}\nif d:\n    pass",
    "class A:\n    '''Doc.\n\n    Example: A() -> A\n    '''\n\n    x = 1",
    "# just a comment",
    "y = x if x else -1;\nz = not y",
]
NEEDS_IPYTHON = [
    "\nx = 1",  # a leading blank line is dropped
    "    x = 1",  # a leading indent is removed
    "def f():\n    x = 1\n    \n    return x",  # a whitespace-only line is emptied
    's = """\n>>> doctest()\n"""',  # a doctest prompt is stripped
    "In [1]: x",
    "%matplotlib inline",
    "files = !ls",
    "x?",
    "%%time\nx = 1",
]


@pytest.mark.parametrize("source", PLAIN_PYTHON)
def test_plain_python_cells_are_parsed_as_ipython_would_leave_them(source: str) -> None:
    assert _plain_python(source) is not None
    assert TransformerManager().transform_cell(source) in (source, source + "\n")


@pytest.mark.parametrize("source", NEEDS_IPYTHON)
def test_cells_ipython_would_change_go_through_it(source: str) -> None:
    assert TransformerManager().transform_cell(source) not in (source, source + "\n")
    assert _plain_python(source) is None


@pytest.mark.parametrize("name", EXAMPLE_NAMES)
def test_example_cells_parsed_without_ipython_are_unchanged_by_it(name: str) -> None:
    cells = [c for c in load_notebook(example(name)).node.cells if c.cell_type == "code"]
    plain = [cell.source for cell in cells if _plain_python(cell.source) is not None]
    assert len(plain) > len(cells) / 2, "most cells of a notebook are plain Python"
    for source in plain:
        assert TransformerManager().transform_cell(source) in (source, source + "\n")


def test_checking_a_notebook_without_magics_does_not_import_ipython() -> None:
    code = (
        "import sys\n"
        "from nbprod.analysis.analyzer import analyze\n"
        "from nbprod.notebook import load_notebook\n"
        f"assert analyze(load_notebook({str(example('wine_forest'))!r})).ok\n"
        "print('IPython' in sys.modules)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.stdout.strip() == "False", done.stderr


@pytest.mark.parametrize(
    ("source", "lines", "error_line"),
    [
        ("\nx = y", [2], None),
        ("  \n\n%time x = 1\ny = z", [3, 4], None),
        ("\n\n%%time\nx = 1\ny = 2", [4, 5], None),
        ("\r\n\r\nx = y", [3], None),
        ("\n\nfoo(", [], 3),
        ("\n\n%matplotlib inline\nfoo(", [], 4),
    ],
)
def test_lines_count_from_the_cells_first_line_blank_lines_included(
    source: str, lines: list[int], error_line: int | None
) -> None:
    # IPython drops the blank lines above a cell's code before it parses it.
    cell = parse_cell(source)
    assert [statement.lineno for statement in cell.statements] == lines
    assert (cell.syntax_error.lineno if cell.syntax_error else None) == error_line
    for statement in cell.statements:
        assert cell.segment(statement) in source.splitlines()[statement.lineno - 1]


def test_code_too_deep_for_the_parser_is_a_syntax_problem_not_a_crash() -> None:
    for source in ("x = " + " + ".join(["1"] * 100_000), "x = " + "-" * 100_000 + "1"):
        parsed = parse_cell(source)
        assert parsed.syntax_error is not None
        assert "nested or repeated too deeply" in parsed.syntax_error.msg
