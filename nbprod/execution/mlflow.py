"""Log nbprod's runs to MLflow, for teams that track their experiments there.

One MLflow run per nbprod run: its parameters, metrics, tags (the notebook and its
sha256, the nbprod run id, the sweep id, the status, whether a package can be made of it
and why not), its start and end, the executed notebook and, for a run a package can be
made of, its model card. A sweep is a parent run, named after the sweep id and holding
the grid, with one child run per nbprod run. Runs are found again by their
``nbprod.run_id`` tag, so logging a run twice (``nbprod runs export --mlflow``) never
duplicates it.

MLflow (the ``mlflow`` extra: mlflow-skinny) is imported only when runs are logged.
Logging never fails or loses an nbprod run: the first error stops the tracker, which
says why in one line (``failure``); the runs stay in nbprod's store and can be exported
later. This module sits in ``execution`` rather than ``runs`` because a run's model card
is the README that ``extract`` writes, and ``runs`` is below ``extract``.
"""

from __future__ import annotations

import functools
import importlib.util
import json
import os
import re
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Concatenate, ParamSpec

from nbprod.config import project_config
from nbprod.exceptions import NbprodError, UsageError
from nbprod.runs.records import EXECUTED, RunRecord, run_dir
from nbprod.runs.store import RunStore, load_record, store_path

if TYPE_CHECKING:
    from mlflow.tracking import MlflowClient

TRACKING_URI_ENV = "MLFLOW_TRACKING_URI"
EXPERIMENT_ENV = "MLFLOW_EXPERIMENT_NAME"
RUN_ID_TAG = "nbprod.run_id"
SWEEP_ID_TAG = "nbprod.sweep_id"
KIND_TAG = "nbprod.kind"  # "run" or "sweep" (the parent of a sweep's runs)
CARD = "model_card.md"
STATUSES = {"succeeded": "FINISHED", "failed": "FAILED", "cancelled": "KILLED"}
# MLflow retries an unreachable server 7 times with a doubling back-off (minutes); a run
# that already finished should not wait that long to say so. The user's own settings win.
_HTTP_DEFAULTS = {
    "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "2",
    "MLFLOW_HTTP_REQUEST_BACKOFF_FACTOR": "1",
    "MLFLOW_HTTP_REQUEST_TIMEOUT": "20",
}
_BATCH = 100  # MLflow's limit of params (and of tags) in one log_batch call
_TAG_LENGTH = 5000  # below the smallest limit of MLflow versions the extra allows
_PARAM_LENGTH = 500
_BAD_KEY = re.compile(r"[^\w\-. /]")
P = ParamSpec("P")


class MlflowMissing(UsageError):
    """MLflow logging was asked for, and the ``mlflow`` extra is not installed."""


class MlflowFailed(NbprodError):
    """The tracking server could not be reached or refused the runs (``runs export``)."""


@dataclass(frozen=True)
class Destination:
    """Where runs go: a tracking URI (None: MLflow's own default) and an experiment
    (None: the notebook's stem)."""

    tracking_uri: str | None = None
    experiment: str | None = None


def destination(
    notebook: Path,
    *,
    enabled: bool | None = None,
    tracking_uri: str | None = None,
    experiment: str | None = None,
) -> Destination | None:
    """Where to log the runs of ``notebook``, or None when MLflow logging is off.

    Each setting comes from the first of: the command line (``--mlflow``/``--no-mlflow``,
    ``--mlflow-uri``, ``--mlflow-experiment``: the arguments here), ``[tool.nbprod]
    mlflow = {tracking_uri = "...", experiment = "..."}`` of the project's pyproject.toml,
    the environment ($MLFLOW_TRACKING_URI, $MLFLOW_EXPERIMENT_NAME). Logging is on when
    any of them asks for it; ``enabled=False`` (``--no-mlflow``) or ``mlflow = false``
    in the pyproject.toml turns it off.
    """
    if enabled is False:
        return None
    table, root = project_config(notebook)
    configured = table.get("mlflow")
    settings = configured if isinstance(configured, dict) else {}
    asked = enabled or tracking_uri or experiment
    if not asked and (configured is False or (configured is None and not _env(TRACKING_URI_ENV))):
        return None
    uri = tracking_uri or _project_uri(settings.get("tracking_uri"), root)
    return Destination(
        uri or _env(TRACKING_URI_ENV),
        experiment or settings.get("experiment") or _env(EXPERIMENT_ENV),
    )


def _env(name: str) -> str | None:
    return os.environ.get(name) or None


def _project_uri(value: Any, root: Path | None) -> str | None:
    """A tracking URI of the pyproject.toml; a plain relative path is relative to it."""
    if not value:
        return None
    text = str(value)
    if root is not None and "://" not in text and ":" not in text and not Path(text).is_absolute():
        return (root / text).resolve().as_uri()
    return text


def require_mlflow() -> None:
    """MlflowMissing unless MLflow's client can be imported (without importing it)."""
    if importlib.util.find_spec("mlflow") is None:
        raise MlflowMissing(
            "logging runs to MLflow needs MLflow's client, which is not installed",
            "pip install 'nbprod[mlflow]' (or run without --mlflow / unset MLFLOW_TRACKING_URI, "
            "or pass --no-mlflow)",
        )


@dataclass
class Outcome:
    """What became of one nbprod run: ``logged``, ``already logged`` or ``not finished``."""

    run_id: str
    outcome: str
    mlflow_run_id: str | None = None


def _never_raises(
    method: Callable[Concatenate[MlflowTracker, P], None],
) -> Callable[Concatenate[MlflowTracker, P], None]:
    """The first error of a tracker's method becomes its ``failure``; once it failed,
    its methods do nothing (an unreachable server is not asked again for every run)."""

    def guarded(self: MlflowTracker, /, *args: P.args, **kwargs: P.kwargs) -> None:
        if self.failure is not None:
            return
        try:
            with _http_defaults():
                method(self, *args, **kwargs)
        except Exception as error:
            self._fail(error)

    functools.update_wrapper(guarded, method)
    return guarded


@dataclass
class MlflowTracker:
    """Logs the runs of one notebook to one MLflow experiment; never raises once built.

    ``log`` logs each run as it ends (the ``on_recorded`` observer of ``run_sweep``);
    the first run of a sweep creates the sweep's parent run. ``finish_sweep`` logs the
    runs not logged yet (cancelled ones) and ends the parent. ``export`` logs runs
    already in the store, skipping those the experiment holds already.
    """

    notebook: Path
    destination: Destination = field(default_factory=Destination)
    store: str | None = None  # the run store option of the command (default: beside it)
    failure: str | None = None  # one line: the tracking URI and what went wrong
    outcomes: list[Outcome] = field(default_factory=list)
    _client: Any = None
    _experiment_id: str | None = None
    _parents: dict[str, str] = field(default_factory=dict)  # sweep id → MLflow run id

    def __post_init__(self) -> None:
        require_mlflow()

    @property
    def experiment(self) -> str:
        return self.destination.experiment or self.notebook.stem

    @property
    def tracking_uri(self) -> str:
        if self.destination.tracking_uri:
            return self.destination.tracking_uri
        import mlflow

        return str(mlflow.get_tracking_uri())

    @_never_raises
    def log(self, record: RunRecord, folder: Path | None = None) -> None:
        """Log one ended run (nested under its sweep's parent when it has one)."""
        self._log(record, folder or run_dir(Path(record.notebook), record.id), check=False)

    @_never_raises
    def log_stored(self, run_id: str) -> None:
        """Log a run of the notebook as its store has it now."""
        record, folder = load_record(self.notebook, run_id, self.store)
        self._log(record, folder, check=False)

    @_never_raises
    def finish_sweep(self, sweep_id: str | None = None) -> None:
        """Log the runs of the sweep (default: of every sweep logged to) that were not
        logged yet (cancelled ones) and end the parent run."""
        store = self._store()
        logged = {outcome.run_id for outcome in self.outcomes}
        for sweep in [sweep_id] if sweep_id else list(self._parents):
            records = store.runs(sweep_id=sweep)
            for record in records:
                if record.id not in logged and record.status in STATUSES:
                    folder = store.folder(record.id) or run_dir(Path(record.notebook), record.id)
                    self._log(record, folder, check=False)
            self._end_parent(sweep, records)

    @_never_raises
    def export(self, records: list[RunRecord], store: RunStore) -> None:
        """Log runs already in ``store``; a run the experiment holds already is skipped."""
        for record in records:
            if record.status not in STATUSES:
                self.outcomes.append(Outcome(record.id, "not finished"))
                continue
            if record.sweep_id and record.sweep_id not in self._parents:
                self._parent(record.sweep_id, store, ended=True)
            folder = store.folder(record.id) or run_dir(Path(record.notebook), record.id)
            self._log(record, folder, check=True)

    # -- MLflow calls ------------------------------------------------------------------

    def _fail(self, error: Exception) -> None:
        text = str(error).strip()
        detail = f"{type(error).__name__}: {text.splitlines()[0] if text else ''}"[:300]
        try:
            uri = self.tracking_uri
        except Exception:
            uri = "MLflow's default tracking URI"
        self.failure = f"MLflow at {uri} did not take the runs: {detail}"

    def _mlflow(self) -> tuple[MlflowClient, str]:
        if self._client is None or self._experiment_id is None:
            from mlflow.exceptions import MlflowException
            from mlflow.tracking import MlflowClient

            client = MlflowClient(tracking_uri=self.destination.tracking_uri)
            found = client.get_experiment_by_name(self.experiment)
            if found is None:
                try:
                    experiment_id = client.create_experiment(self.experiment)
                except MlflowException:  # another process created it meanwhile
                    found = client.get_experiment_by_name(self.experiment)
                    if found is None:
                        raise
                    experiment_id = found.experiment_id
            else:
                experiment_id = found.experiment_id
            self._client, self._experiment_id = client, str(experiment_id)
        return self._client, self._experiment_id

    def _find(self, filters: dict[str, str]) -> str | None:
        client, experiment_id = self._mlflow()
        where = " and ".join(f"tags.`{key}` = '{_quote(value)}'" for key, value in filters.items())
        found = client.search_runs([experiment_id], filter_string=where, max_results=1)
        return str(found[0].info.run_id) if found else None

    def _store(self) -> RunStore:
        return RunStore(store_path(self.notebook, self.store))

    def _parent(self, sweep_id: str, store: RunStore, *, ended: bool) -> str:
        """The sweep's parent run: found by its tags (an export), else created with the
        grid of the sweep's runs (as queued, so a running sweep has all of them)."""
        if sweep_id in self._parents:
            return self._parents[sweep_id]
        existing = self._find({SWEEP_ID_TAG: sweep_id, KIND_TAG: "sweep"}) if ended else None
        if existing is not None:
            self._parents[sweep_id] = existing
            return existing
        records = store.runs(sweep_id=sweep_id)
        grid = [record.parameters for record in records]
        started = min((record.started for record in records), default=time.time())
        client, experiment_id = self._mlflow()
        tags = {
            KIND_TAG: "sweep",
            SWEEP_ID_TAG: sweep_id,
            "nbprod.notebook": str(self.notebook),
            "nbprod.runs": str(len(grid)),
            **_source_tags(str(self.notebook)),
        }
        run = client.create_run(
            experiment_id, start_time=_ms(started), tags=tags, run_name=sweep_id
        )
        parent = str(run.info.run_id)
        axes: dict[str, list[Any]] = {}
        for values in grid:
            for name, value in values.items():
                if value not in axes.setdefault(name, []):
                    axes[name].append(value)
        params = {name: _text(sorted(values, key=repr)) for name, values in axes.items()}
        _log_batch(client, parent, params=params)
        with tempfile.TemporaryDirectory(prefix="nbprod-mlflow-") as scratch:
            path = Path(scratch) / "grid.json"
            path.write_text(json.dumps(grid, indent=2, default=repr), encoding="utf-8")
            client.log_artifact(parent, str(path))
        self._parents[sweep_id] = parent
        if ended:  # an export: the sweep is over
            self._end_parent(sweep_id, records)
        return parent

    def _end_parent(self, sweep_id: str, records: list[RunRecord]) -> None:
        parent = self._parents.get(sweep_id)
        if parent is None:
            return
        statuses = {record.status for record in records}
        status = "KILLED" if "cancelled" in statuses else "FAILED" if "failed" in statuses else None
        ended = [record.finished for record in records if record.finished is not None]
        client, _ = self._mlflow()
        client.set_terminated(
            parent, status or "FINISHED", end_time=_ms(max(ended)) if ended else None
        )

    def _log(self, record: RunRecord, folder: Path, *, check: bool) -> None:
        client, experiment_id = self._mlflow()
        if check:
            existing = self._find({RUN_ID_TAG: record.id})
            if existing is not None:
                self.outcomes.append(Outcome(record.id, "already logged", existing))
                return
        tags = _run_tags(record)
        if record.sweep_id:
            tags["mlflow.parentRunId"] = self._parent(record.sweep_id, self._store(), ended=False)
        run = client.create_run(
            experiment_id, start_time=_ms(record.started), tags=tags, run_name=record.id
        )
        run_id = str(run.info.run_id)
        # Record the outcome first: a run half-logged when the server fails is not logged
        # again by finish_sweep (export finds it by its tag).
        self.outcomes.append(Outcome(record.id, "logged", run_id))
        when = _ms(record.finished or record.started)
        _log_batch(
            client,
            run_id,
            params={name: _text(value) for name, value in record.parameters.items()},
            metrics={name: float(value) for name, value in record.metrics.items()},
            timestamp=when,
        )
        if (folder / EXECUTED).is_file():
            client.log_artifact(run_id, str(folder / EXECUTED))
        with tempfile.TemporaryDirectory(prefix="nbprod-card-") as scratch:
            card = model_card(record, Path(scratch))
            if card is not None:
                client.log_artifact(run_id, str(card))
        client.set_terminated(run_id, STATUSES[record.status], end_time=when)


def model_card(record: RunRecord, scratch: Path) -> Path | None:
    """The run's model card (the README of its package), written into ``scratch``; None
    for a run no package can be made of (failed, not extractable, no recorded call)."""
    if record.status != "succeeded" or not record.extractable:
        return None
    from nbprod.extract import extract

    try:  # verify=False: the card only; extract and publish check the package they make
        extracted = extract(record.notebook, record.id, scratch / "package", verify=False)
    except Exception:  # whatever stops the package stops the card, never the logging
        return None
    card = scratch / CARD
    shutil.move(extracted.path / "README.md", card)
    return card


def _run_tags(record: RunRecord) -> dict[str, str]:
    tags = {
        KIND_TAG: "run",
        RUN_ID_TAG: record.id,
        "nbprod.notebook": record.notebook,
        "nbprod.notebook_sha256": record.notebook_sha256,
        "nbprod.status": record.status,
        "nbprod.package": record.package,
        "nbprod.kernel": record.kernel,
        "nbprod.extractable": "true" if record.extractable else "false",
        **_source_tags(record.notebook),
    }
    if record.sweep_id:
        tags[SWEEP_ID_TAG] = record.sweep_id
    if record.not_extractable:
        tags["nbprod.not_extractable"] = "\n".join(record.not_extractable)[:_TAG_LENGTH]
    if record.error:
        where = f"cell {record.error['cell']}: " if record.error.get("cell") else ""
        tags["nbprod.error"] = (where + str(record.error.get("message", "")))[:_TAG_LENGTH]
    return tags


def _source_tags(notebook: str) -> dict[str, str]:
    return {"mlflow.source.name": notebook, "mlflow.source.type": "NOTEBOOK"}


def _log_batch(
    client: MlflowClient,
    run_id: str,
    *,
    params: dict[str, str] | None = None,
    metrics: dict[str, float] | None = None,
    timestamp: int = 0,
) -> None:
    from mlflow.entities import Metric, Param

    named = [Param(_key(name), value[:_PARAM_LENGTH]) for name, value in (params or {}).items()]
    measured = [Metric(_key(name), value, timestamp, 0) for name, value in (metrics or {}).items()]
    for start in range(0, max(len(named), len(measured)), _BATCH):
        client.log_batch(
            run_id,
            metrics=measured[start : start + _BATCH],
            params=named[start : start + _BATCH],
        )


def _key(name: str) -> str:
    """A name MLflow accepts as a param or metric key (letters, digits, ``_-. /``)."""
    return _BAD_KEY.sub("_", name) or "_"


def _text(value: Any) -> str:
    return value if isinstance(value, str) else repr(value)


def _quote(value: str) -> str:
    return value.replace("\\", "\\\\").replace("'", "\\'")


def _ms(seconds: float) -> int:
    return int(seconds * 1000)


@contextmanager
def _http_defaults() -> Iterator[None]:
    """MLflow's HTTP retries and timeout bounded (``_HTTP_DEFAULTS``) while nbprod logs,
    unless the user set them."""
    missing = {name: value for name, value in _HTTP_DEFAULTS.items() if name not in os.environ}
    os.environ.update(missing)
    try:
        yield
    finally:
        for name in missing:
            os.environ.pop(name, None)


def export_runs(
    records: list[RunRecord],
    store: RunStore,
    *,
    tracking_uri: str | None = None,
    experiment: str | None = None,
) -> list[MlflowTracker]:
    """Log runs already in the store to MLflow, one tracker per notebook (each notebook's
    own settings and experiment); runs the experiment holds already are skipped. Raises
    MlflowFailed when the tracking server cannot take them."""
    by_notebook: dict[str, list[RunRecord]] = {}
    for record in records:
        by_notebook.setdefault(record.notebook, []).append(record)
    trackers = []
    for notebook, group in by_notebook.items():
        where = destination(
            Path(notebook), enabled=True, tracking_uri=tracking_uri, experiment=experiment
        )
        tracker = MlflowTracker(Path(notebook), where or Destination())
        tracker.export(group, store)
        if tracker.failure is not None:
            raise MlflowFailed(
                tracker.failure, "check the tracking URI and that the server is running"
            )
        trackers.append(tracker)
    return trackers
