"""prometheus_client's multiprocess mode: one directory of per-process files per careloop run.

``careloop serve --workers N`` runs N API processes, and workers are processes of their own (a
prefork pool forks more); each writes its metrics to files in ``PROMETHEUS_MULTIPROC_DIR`` and a
scrape adds them up. The process that starts a run (serve, a standalone worker or beat) makes a
fresh run directory, removes the directories of earlier runs on this host whose process is gone,
and hands the directory to its children through the environment.
"""

from __future__ import annotations

import atexit
import logging
import os
import shutil
import socket
import tempfile
from collections.abc import Iterable
from pathlib import Path

from prometheus_client import CollectorRegistry, Metric, values
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead
from prometheus_client.registry import Collector

from careloop.services.metrics.registry import PROCESSES, RECORDED, REGISTRY

ENV = "PROMETHEUS_MULTIPROC_DIR"
log = logging.getLogger("careloop.metrics")


def multiprocess_dir() -> Path | None:
    """The run directory this process writes its metrics to, if multiprocess mode is on."""
    path = os.environ.get(ENV)
    return Path(path) if path and Path(path).is_dir() else None


def start_run(base: Path | None, data_dir: Path) -> Path:
    """Turn multiprocess mode on for this process and the processes it starts; the directory.

    A directory inherited from the environment (a parent careloop, or the operator's own) is
    used as it is. Otherwise a fresh ``run-<host>-<pid>`` under ``base`` (default
    ``<data dir>/metrics``, else the temporary directory if that is not writable) is made,
    and removed when this process exits.
    """
    inherited = multiprocess_dir()
    if inherited is not None:
        _use(inherited)
        return inherited
    root = _writable(base or data_dir / "metrics")
    _remove_stale_runs(root)
    run = root / f"run-{_host()}-{os.getpid()}"
    shutil.rmtree(run, ignore_errors=True)  # a pid reused since a run that was killed
    run.mkdir(parents=True)
    os.environ[ENV] = str(run)
    atexit.register(_remove_run, run, os.getpid())
    _use(run)
    return run


def _remove_run(run: Path, owner: int) -> None:
    # A forked child (a prefork pool's) inherits the exit handlers: only the owner removes.
    if os.getpid() == owner:
        shutil.rmtree(run, ignore_errors=True)


def _use(directory: Path) -> None:
    # prometheus_client picks its value class when imported, and careloop's modules are imported
    # before a command knows its directory: pick again, and drop the children made before.
    os.environ[ENV] = str(directory)
    if not getattr(values.ValueClass, "_multiprocess", False):
        values.ValueClass = values.get_value_class()  # type: ignore[no-untyped-call]
        for metric in RECORDED:
            metric.clear()


def _writable(root: Path) -> Path:
    try:
        root.mkdir(parents=True, exist_ok=True)
        probe = tempfile.NamedTemporaryFile(dir=root)  # noqa: SIM115 (closed at once)
        probe.close()
        return root
    except OSError:
        fallback = Path(tempfile.gettempdir()) / f"careloop-metrics-{os.getuid()}"
        log.warning("metrics directory %s is not writable; using %s", root, fallback)
        fallback.mkdir(mode=0o700, exist_ok=True)
        return fallback


def _host() -> str:
    return "".join(c if c.isalnum() or c in "-." else "_" for c in socket.gethostname())[:64]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _remove_stale_runs(root: Path) -> None:
    prefix = f"run-{_host()}-"
    for run in root.glob(f"{prefix}*"):
        pid = run.name.removeprefix(prefix)
        if pid.isdigit() and int(pid) != os.getpid() and not _alive(int(pid)):
            shutil.rmtree(run, ignore_errors=True)


def process_started(kind: str) -> None:
    """Mark this process alive as ``kind`` (api, worker, beat) until it exits."""
    PROCESSES.labels(kind).set(1)
    directory = multiprocess_dir()
    if directory is not None:
        pid = os.getpid()
        atexit.register(_mark_dead, pid, directory)


def _mark_dead(pid: int, directory: Path) -> None:
    if os.getpid() == pid and directory.is_dir():
        mark_process_dead(pid, str(directory))  # type: ignore[no-untyped-call]


def prune_dead(directory: Path) -> None:
    """Drop the live gauges of processes that died without saying so (killed, crashed)."""
    for path in directory.glob("gauge_live*_*.db"):
        pid = path.stem.rpartition("_")[2]
        if pid.isdigit() and not _alive(int(pid)):
            mark_process_dead(int(pid), str(directory))  # type: ignore[no-untyped-call]


class RunMetrics(Collector):
    """Every process's metrics of a run directory, read (and added up) when collected."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.files = MultiProcessCollector(None, str(directory))  # type: ignore[no-untyped-call]

    def collect(self) -> Iterable[Metric]:
        prune_dead(self.directory)
        metrics: Iterable[Metric] = self.files.collect()  # type: ignore[no-untyped-call]
        return metrics


def recorded_metrics() -> Collector:
    """What the processes recorded: every process of the run, or this process's own."""
    directory = multiprocess_dir()
    return RunMetrics(directory) if directory is not None else REGISTRY


def exposition_registry(*extra: Collector) -> CollectorRegistry:
    """A registry of the recorded metrics and ``extra`` collectors, for one scrape."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(recorded_metrics())
    for collector in extra:
        registry.register(collector)
    return registry
