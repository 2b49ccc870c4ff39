"""Write the package source of one run: code, artifacts, parity record, tests, card.

The package is rendered into a temporary folder beside the output and moved into
place at the end, so an interrupted extract leaves nothing half-written.
"""

from __future__ import annotations

import ast
import json
import os
import platform
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jinja2

from nbprod import __version__ as nbprod_version
from nbprod import runtime
from nbprod.analysis.analyzer import Analysis, analyze
from nbprod.exceptions import CheckFailed, NotExtractable, OutputExists, UsageError
from nbprod.extract.code import PipelineCode, add_lambdas, indent, lambda_homes, pipeline_code
from nbprod.extract.dependencies import SERVE, onnx_pin, parquet_pin, pins
from nbprod.extract.onnx import convert_models
from nbprod.extract.profile_card import profile_summary, write_profile_images
from nbprod.extract.vendor import copy_modules, local_modules, rewrite_imports
from nbprod.extract.verify import WarmProbe, interpreter, verify_package
from nbprod.notebook import Notebook, load_notebook
from nbprod.runs.records import SOURCE, RunRecord
from nbprod.runs.store import load_record

_TEMPLATES = jinja2.Environment(
    loader=jinja2.PackageLoader("nbprod.extract", "templates"),
    keep_trailing_newline=True,
    undefined=jinja2.StrictUndefined,
    autoescape=False,
)


@dataclass(frozen=True)
class Extracted:
    path: Path
    package: str
    run_id: str
    warnings: list[str]


def extract(
    notebook_path: str | Path,
    run_id: str,
    output: str | Path,
    *,
    force: bool = False,
    version: str | None = None,
    verify: bool = True,
    probe: WarmProbe | None = None,
    onnx: bool = False,
) -> Extracted:
    """Generate the package of run ``run_id`` of the notebook into ``output``.

    Before it is moved into place, the package is imported, its artifacts loaded and
    its parity record replayed in a fresh process without nbprod (``verify``; in
    ``probe`` when one was started ahead): a package that would not work is never
    written (``PackageBroken``).

    With ``onnx``, each artifact a converter handles is also shipped as ONNX, and used
    by the package when the converted form predicts what the notebook did
    (``extract.onnx``).
    """
    output = Path(output).resolve()
    if output.exists() and not force:
        raise OutputExists(f"{output} already exists", "choose another folder, or pass --force")
    user_notebook = load_notebook(notebook_path)
    record, run_folder = load_record(user_notebook.path, run_id)
    if record.not_extractable:
        raise NotExtractable(record.id, record.not_extractable, str(user_notebook.path))
    if record.status != "succeeded":
        error = (record.error or {}).get("message", "it did not finish")
        raise UsageError(
            f"run {record.id} {record.status}: {error}", "extract a run that succeeded"
        )
    notebook = load_notebook(run_folder / SOURCE)
    notebook = Notebook(user_notebook.path, notebook.raw, notebook.cells, notebook.settings)
    analysis = analyze(notebook)
    if not analysis.ok:
        raise CheckFailed([str(p) for p in analysis.errors], str(notebook.path))
    parity = json.loads((run_folder / "parity" / "parity.json").read_text(encoding="utf-8"))
    if not parity["calls"]:
        raise UsageError(
            f"run {record.id} recorded no call of `{parity['entry']}`, so the package could not "
            "prove it predicts what the notebook did",
            f"call `{parity['entry']}(...)` once in the notebook (an untagged or test cell), "
            "then run it again",
        )
    output.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=output.parent, prefix=f".{output.name}.partial-"))
    python = interpreter(record.kernel)
    try:
        onnx_python = python if onnx else None
        warnings = _render(
            staging, notebook, analysis, record, run_folder, parity, version, onnx_python
        )
        if verify:
            verify_package(staging, analysis.package, analysis, python, probe)
        _move_into_place(staging, output, force)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return Extracted(output, analysis.package, record.id, warnings)


def default_version(record: RunRecord) -> str:
    """PEP 440 version of a run: ``0.YYYYMMDD.HHMMSS+nb<sha256[:8]>.r<run id suffix>``.

    The public part orders packages by the run's start (UTC); the local label names the
    notebook (hash prefix) and the run (the random end of its id), so two runs started in
    the same second still get different versions. Public PyPI refuses local labels: an
    upload there needs an explicit version.
    """
    from packaging.version import Version

    stamp = time.gmtime(record.started)
    public = f"0.{time.strftime('%Y%m%d', stamp)}.{int(time.strftime('%H%M%S', stamp))}"

    def label(prefix: str, text: str) -> list[str]:
        kept = "".join(c for c in text.lower() if c.isascii() and c.isalnum())
        return [prefix + kept] if kept else []

    local = label("nb", record.notebook_sha256[:8]) + label("r", record.id.rsplit("-", 1)[-1])
    return str(Version(f"{public}+{'.'.join(local)}" if local else public))


def _render(
    root: Path,
    notebook: Notebook,
    analysis: Analysis,
    record: RunRecord,
    run_folder: Path,
    parity: dict[str, Any],
    version: str | None,
    onnx_python: str | None,
) -> list[str]:
    """Write the package into ``root``; with ``onnx_python``, convert its models there
    once its code is in place, before the card and the metadata that describe them."""
    package = analysis.package
    if not package.isidentifier():
        raise UsageError(
            f"package name {package!r} is not a valid Python identifier",
            'set "name" in the notebook metadata: {"nbprod": {"name": "my_model"}}',
        )
    entry = analysis.entry
    assert entry is not None
    code = pipeline_code(analysis)
    add_lambdas(code, analysis, lambda_homes(analysis, _read_json(run_folder / "lambdas.json", [])))
    environment = _read_json(run_folder / "environment.json", {"packages": {}, "modules": []})
    used = {analysis.imports[n].module for n in analysis.imports if _imported_by(code, n, analysis)}
    test_imports = _test_imports(analysis)
    needed = used | {analysis.imports[n].module for n in analysis.imports}
    vendored = local_modules(run_folder, needed, analysis.run_files)
    used -= vendored.tops
    manifest = _read_json(run_folder / "artifacts" / "manifest.json", {})
    requirements, test_requirements = pins(environment, used, manifest, notebook.package_name)
    warnings: list[str] = []
    source = root / "src" / package
    tests = root / "tests"
    source.mkdir(parents=True)
    tests.mkdir()
    shutil.copytree(run_folder / "artifacts", source / "artifacts")
    shutil.copytree(run_folder / "parity", tests / "parity")
    if (run_folder / "fixtures").is_dir():
        shutil.copytree(run_folder / "fixtures", tests / "fixtures")
    copy_modules(vendored, source, package)
    for module in (*runtime.PACKAGED, *runtime.PACKAGE_ONLY):
        target = source / f"_{module.lstrip('_')}.py"
        target.write_text(runtime.source(module), encoding="utf-8")
    schema = _read_json(run_folder / "parity" / "schema.json", None)
    (source / "schema.json").write_text(json.dumps(schema, indent=1), encoding="utf-8")
    profile = _read_json(run_folder / "profile.json", None)  # None: the run has none
    (source / "profile.json").write_text(json.dumps(profile, indent=1), encoding="utf-8")
    for module in runtime.MONITOR:  # `<pkg>.monitor`, public, and its private parts
        (source / f"{module}.py").write_text(runtime.source(module), encoding="utf-8")
    monitor = json.dumps(notebook.settings.monitor, indent=1)  # the notebook's thresholds
    (source / "monitor.json").write_text(monitor, encoding="utf-8")
    data = _read_json(run_folder / "data.json", {})
    version = version or default_version(record)
    context = _context(notebook, analysis, record, code, version, environment)
    context.update(requirements=requirements, test_requirements=test_requirements)
    context.update(serve_requirements=SERVE, parquet_requirement=parquet_pin(environment))
    context["parity_calls"] = len(parity["calls"])
    context["schema"] = schema
    context["profile"] = profile
    context["profile_rows"] = write_profile_images(profile, root)
    context["data"] = data
    context["example_request"] = _example_request(parity, run_folder / "parity", schema)
    test_cells, skipped = _tests(analysis, run_folder)
    warnings += skipped
    context["tests"] = test_cells
    context["imports"] = [rewrite_imports(line, vendored.tops, package) for line in test_imports]
    code_files = {
        source / "__init__.py": "__init__.py.j2",
        source / "__main__.py": "__main__.py.j2",
        source / "cli.py": "cli.py.j2",
        source / "batch.py": "batch.py.j2",
        source / "server.py": "server.py.j2",
        source / "logs.py": "logs.py.j2",
        source / "metrics.py": "metrics.py.j2",
        source / "config.py": "config.py.j2",
        tests / "test_notebook.py": "test_notebook.py.j2",
        tests / "test_http.py": "test_http.py.j2",
    }
    context.update(onnx=None, onnx_requirement=None)
    for path, template in code_files.items():
        path.write_text(_TEMPLATES.get_template(template).render(**context), encoding="utf-8")
    imports = [rewrite_imports(line, vendored.tops, package) for line in code.imports]
    train_imports = [rewrite_imports(line, vendored.tops, package) for line in code.train_imports]
    pipeline_context = dict(context, imports=imports, train_imports=train_imports)
    (source / "pipeline.py").write_text(
        _TEMPLATES.get_template("pipeline.py.j2").render(**pipeline_context), encoding="utf-8"
    )
    outcome = convert_models(root, package, onnx_python) if onnx_python else None
    context["onnx"] = outcome
    if outcome is not None and outcome.converted:
        context["onnx_requirement"] = onnx_pin(outcome.versions)
        context["test_requirements"] = [*test_requirements, context["onnx_requirement"]]
    documents = {  # what says which models have an ONNX form, or proves them
        root / "pyproject.toml": "pyproject.toml.j2",
        root / "README.md": "README.md.j2",
        tests / "test_parity.py": "test_parity.py.j2",
    }
    for path, template in documents.items():
        path.write_text(_TEMPLATES.get_template(template).render(**context), encoding="utf-8")
    info = _model_info(notebook, analysis, record, version, environment)
    info.update(input_schema=schema, data=data, profile=profile_summary(profile))
    info["onnx"] = outcome.summary() if outcome is not None else None
    (source / "model_info.json").write_text(json.dumps(info, indent=2), encoding="utf-8")
    for path in [source / "pipeline.py", tests / "test_notebook.py"]:
        _check_compiles(path)
    return warnings


def _context(
    notebook: Notebook,
    analysis: Analysis,
    record: RunRecord,
    code: PipelineCode,
    version: str,
    environment: dict[str, Any],
) -> dict[str, Any]:
    entry = analysis.entry
    assert entry is not None
    package = analysis.package
    values = {name: record.parameters.get(name, p.value) for name, p in analysis.parameters.items()}
    parameter_cells = sorted({p.cell for p in analysis.parameters.values()})
    return {
        "package": package,
        "distribution": package.replace("_", "-"),
        "script": package.replace("_", "-"),
        "env_prefix": package.upper(),
        "version": version,
        "run_id": record.id,
        "notebook_name": notebook.path.name,
        "notebook_sha256": record.notebook_sha256,
        "python_minor": ".".join(platform.python_version_tuple()[:2]),
        "python_version": environment.get("python", platform.python_version()),
        "trained_with": [f"{k} {v}" for k, v in sorted(environment.get("packages", {}).items())],
        "trained_at": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(record.started)),
        "nbprod_version": nbprod_version,
        "entry": entry.name,
        "entry_kind": entry.kind,
        "signature": entry.signature,
        "artifacts": sorted(analysis.artifacts),
        "artifact_hashes": record.artifacts,
        "parameters": [(name, repr(value)) for name, value in values.items()],
        "card_parameters": values,
        "card_metrics": record.metrics,
        "params": [_param_field(name, value) for name, value in values.items()],
        "changed": [n for n, p in analysis.parameters.items() if values[n] != p.value],
        "parameters_cell": ", ".join(map(str, parameter_cells)) or "none",
        "module_blocks": code.module_blocks,
        "predict_block": code.predict_block,
        "train_body": code.train_body,
        "train_globals": code.train_globals,
        "train_cells": [
            c.number
            for c in analysis.role_cells("data", "features", "train", "metrics")
            if c.number not in analysis.training_excluded
        ],
        "metrics": code.metric_names,
        "uses_display": code.uses_display,
        "nbprod_shims": code.nbprod_shims,
    }


@dataclass(frozen=True)
class _Field:
    name: str
    annotation: str
    default: str


def _param_field(name: str, value: Any) -> _Field:
    annotation = {bool: "bool", int: "int", float: "float", str: "str", type(None): "Any"}.get(
        type(value)
    )
    if annotation is not None:
        return _Field(name, annotation if value is not None else "Any", repr(value))
    kind = type(value).__name__
    return _Field(
        name,
        f"{kind}[Any]" if kind in ("list", "dict", "set") else "Any",
        f"field(default_factory=lambda: {value!r})",
    )


@dataclass(frozen=True)
class _TestCell:
    cell: int
    recorded: list[str]
    package: list[str]
    body: str


def _tests(analysis: Analysis, run_folder: Path) -> tuple[list[_TestCell], list[str]]:
    from nbprod.extract.code import _block  # one place cuts cell source into blocks

    provided = {d.name for d in analysis.module_code} | set(analysis.artifacts)
    provided |= set(analysis.parameters)
    entry = analysis.entry
    if entry is not None:
        provided.add(entry.name)
    tests: list[_TestCell] = []
    skipped: list[str] = []
    for info in analysis.role_cells("test"):
        wanted = analysis.test_fixtures.get(info.number, [])
        stored = _read_json(run_folder / "fixtures" / f"cell_{info.number}" / "fixtures.json", {})
        missing = [n for n in wanted if n not in stored]
        if missing:
            skipped.append(
                f"cell {info.number} (test) is not in the package's tests: "
                f"{', '.join(missing)} could not be recorded without pickle"
            )
            continue
        statements = [
            s for s in info.statements if not isinstance(s.node, ast.Import | ast.ImportFrom)
        ]
        if not statements:
            continue
        package_names = [n for n in info.inputs if n in provided and n not in wanted]
        tests.append(
            _TestCell(info.number, wanted, package_names, indent(_block(info, statements), "    "))
        )
    return tests, skipped


def _test_imports(analysis: Analysis) -> list[str]:
    names = {n for info in analysis.role_cells("test") for n in info.inputs}
    return list(
        dict.fromkeys(analysis.imports[n].statement for n in analysis.imports if n in names)
    )


def _imported_by(code: PipelineCode, name: str, analysis: Analysis) -> bool:
    return analysis.imports[name].statement in (*code.imports, *code.train_imports)


def _model_info(
    notebook: Notebook,
    analysis: Analysis,
    record: RunRecord,
    version: str,
    environment: dict[str, Any],
) -> dict[str, Any]:
    entry = analysis.entry
    assert entry is not None
    return {
        "package": analysis.package,
        "version": version,
        "notebook": notebook.path.name,
        "notebook_sha256": record.notebook_sha256,
        "run_id": record.id,
        "trained_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(record.started)),
        "entry_point": {
            "name": entry.name,
            "kind": entry.kind,
            "signature": entry.signature,
            "returns": entry.returns,
        },
        "parameters": record.parameters,
        "metrics": record.metrics,
        "artifacts": record.artifacts,
        "python": environment.get("python"),
        "trained_with": environment.get("packages", {}),
        "nbprod_version": nbprod_version,
    }


def _example_request(
    parity: dict[str, Any], folder: Path, schema: dict[str, Any] | None
) -> str | None:
    """One recorded input row as the JSON body of ``POST /predict`` (None if not a table)."""
    from nbprod.runtime.values import decode

    if (schema or {}).get("kind") != "dataframe" or not parity["calls"][0]["args"]:
        return None
    first = decode(parity["calls"][0]["args"][0], folder)
    row = first.head(1).to_json(orient="records", date_format="iso")
    return json.dumps({"records": json.loads(row)})


def _check_compiles(path: Path) -> None:
    """Generated code must at least compile; a failure here is an nbprod bug."""
    source = path.read_text(encoding="utf-8")
    try:
        compile(source, str(path), "exec")
    except SyntaxError as error:
        raise UsageError(
            f"nbprod generated invalid Python in {path.name}, line {error.lineno}: {error.msg}",
            "please report this with the notebook; as a workaround, simplify the cell it names",
        ) from error


def _read_json(path: Path, default: Any) -> Any:
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else default


def _move_into_place(staging: Path, output: Path, force: bool) -> None:
    if not output.exists():
        os.replace(staging, output)
        return
    if not force:
        raise OutputExists(f"{output} already exists", "choose another folder, or pass --force")
    backup = output.with_name(f".{output.name}.old-{os.getpid()}")
    os.replace(output, backup)
    try:
        os.replace(staging, output)
    except BaseException:
        os.replace(backup, output)
        raise
    shutil.rmtree(backup, ignore_errors=True)
