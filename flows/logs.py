"""Where Prefect's and MLflow's log lines go: `<home>/logs/lensflow.log`, and the terminal only with -v."""

from __future__ import annotations

import logging

from tasks.core.settings import Paths


class QuietFileHandler(logging.FileHandler):
    """A file handler that stops, silently, at its first failed write: on a full disk, logging's own error report
    (a traceback per record on stderr, thousands of lines) would bury the one line that says what happened."""

    def handleError(self, record: logging.LogRecord) -> None:
        logging.getLogger().removeHandler(self)
        try:
            self.close()
        except OSError:
            pass


def to_file(paths: Paths, verbose: bool = False) -> None:
    """Add a file handler to the root logger once Prefect has configured logging (importing it does)."""
    import prefect  # noqa: F401  - configures logging; a handler added before would be replaced

    paths.logs.mkdir(parents=True, exist_ok=True)
    handler = QuietFileHandler(paths.logs / "lensflow.log")
    handler.setLevel(logging.INFO)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)-7s %(name)s - %(message)s"))
    logging.getLogger().addHandler(handler)
    if not verbose:
        logging.captureWarnings(True)  # library warnings to the log file, not the terminal
        # A log line that cannot be written (full disk, the Prefect API gone) is dropped without logging's and
        # Prefect's own error report on stderr: the run's one line says what happened (-v keeps the reports).
        logging.raiseExceptions = False


class TaskNamedFormatter(logging.Formatter):
    """Starts a task run's line with the task run's name: Prefect's V2 UI shows none beside a line of the flow
    run's log, so eight "Finished in state Completed()" lines would read alike."""

    def format(self, record: logging.LogRecord) -> str:
        text = super().format(record)
        name = getattr(record, "task_run_name", None)
        return f"[{name}] {text}" if name else text


def name_task_runs() -> None:
    """Give Prefect's API log handlers (what both UIs show) the TaskNamedFormatter; idempotent."""
    from prefect.logging.handlers import APILogHandler

    for name in ("prefect", "prefect.flow_runs", "prefect.task_runs"):
        for handler in logging.getLogger(name).handlers:
            if isinstance(handler, APILogHandler) and not isinstance(handler.formatter, TaskNamedFormatter):
                handler.setFormatter(TaskNamedFormatter())
