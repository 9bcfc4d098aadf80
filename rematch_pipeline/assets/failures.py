"""How an asset's or op's expected failure reaches the person who launched it: the reason first, alone.

Dagster prints a step failure as its exception: a dg.Failure as `Failure: <description>` with the frames it
passed through; any other exception as "Error occurred while executing op" and Dagster's stack, the reason
only further down under "The above exception was caused by" (measured with Dagster 1.13.27, `dagster job
execute` and the run failure the UI shows). reason_first raises every expected failure again as a fresh
dg.Failure from the wrapper, without the exceptions and frames below it, and whose printed form is the reason
alone (stated): the UI's run view shows a failure's error message in red above its metadata, and Python prints an
exception as `module.Class: message` (`dagster._core.definitions.events.Failure: period: format: …`).

Any other exception is a bug. Its message may quote a cell value (`invalid literal for int(): '…'`, polars'
`… for 1 out of 1 values: ["…"]`, DuckDB's `Could not convert string '…'`), and Dagster stores it in the run's
event log and shows it in the UI, where only pseudonyms may appear. reason_first raises it again as an
UnexpectedError that names the exception's class and keeps its frames (where the bug is) but withholds the
message, unless REMATCH_KEEP_ERROR_MESSAGES=1 (a developer reproducing the bug on test data).
"""

from __future__ import annotations

import functools
import inspect
import logging
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from typing import TypeVar

import dagster as dg
from dagster._loggers import colored_console_logger
from dagster._utils.log import create_console_logger

from rematch_pipeline.errors import UserFacingError, field_details
from rematch_pipeline.formats.errors import InputFileError

Compute = TypeVar("Compute", bound=Callable)


def stated(reason: str, metadata: Mapping[str, object] | None = None, allow_retries: bool | None = None) -> dg.Failure:
    """A dg.Failure (description the reason, metadata where it is) that prints as the reason alone.

    Dagster stores a step's error as Python formats the exception (traceback.format_exception_only):
    `<module>.<class name>: <str>`, and the UI's run view and its run failure show that line first, in red.
    The class made here is a dg.Failure (Dagster treats it as one: description and metadata as the failure's)
    named by the reason, in the module Python leaves unnamed (`builtins`), with an empty str, so that line is
    the reason. Its __name__ stays `Failure`, the error's cls_name, by which the console filter knows it."""
    named = type("Failure", (dg.Failure,), {"__module__": "builtins", "__qualname__": reason, "__str__": lambda self: ""})
    return named(description=reason, metadata=metadata, allow_retries=allow_retries)


def refused(reason: str, problems: Sequence[str]) -> dg.Failure:
    """A run config refused: the reason and its `field: rule` problems in one line, each field as metadata."""
    return stated(reason + "; ".join(problems), field_details(problems))


# What a step raises on input or config it cannot use, as opposed to a bug.
_EXPECTED: tuple[type[Exception], ...] = (dg.Failure, InputFileError, UserFacingError)

KEEP_MESSAGES_VARIABLE = "REMATCH_KEEP_ERROR_MESSAGES"


class UnexpectedError(Exception):
    """A bug's exception raised again with its message withheld (module docstring); its frames are the bug's."""


def _keeps_messages() -> bool:
    """Whether a bug's own message may reach the event log (REMATCH_KEEP_ERROR_MESSAGES=1)."""
    return os.environ.get(KEEP_MESSAGES_VARIABLE) == "1"


def _withheld(exc: Exception) -> UnexpectedError:
    """A bug's exception as it may reach the event log: an UnexpectedError naming its class, with its traceback
    (the frames, never the locals)."""
    kind = type(exc).__qualname__ if type(exc).__module__ == "builtins" else f"{type(exc).__module__}.{type(exc).__qualname__}"
    return UnexpectedError(
        f"{kind} (a bug: its message is withheld, as it may quote a cell value; the stack says where;"
        f" {KEEP_MESSAGES_VARIABLE}=1 shows it, on test data only)"
    ).with_traceback(exc.__traceback__)


def _stated(exc: Exception) -> dg.Failure:
    """An expected failure as a dg.Failure: description the one-line reason, metadata where it is."""
    if isinstance(exc, dg.Failure):
        return stated(exc.description or "step failed", exc.metadata, exc.allow_retries)
    if isinstance(exc, InputFileError):
        v = exc.violation
        where = {"file": v.file, "sheet": v.sheet, "row": v.row, "column": v.column, "rule": v.rule}
        return stated(str(exc), {k: w for k, w in where.items() if w is not None})
    return stated(str(exc), exc.details if isinstance(exc, UserFacingError) else None)


def _instead(exc: Exception) -> Exception | None:
    """What a step raises instead of exc: an expected failure stated, a bug with its message withheld, or
    None to raise exc itself (Dagster's own exceptions, which carry no cell value and which Dagster must get
    as they are, and any bug where REMATCH_KEEP_ERROR_MESSAGES=1)."""
    if isinstance(exc, _EXPECTED):
        return _stated(exc)
    if _keeps_messages() or type(exc).__module__.startswith("dagster"):
        return None
    return _withheld(exc)


def reason_first(compute: Compute) -> Compute:
    """An asset's or op's compute function whose expected failures (dg.Failure, UserFacingError,
    InputFileError) end the step as a dg.Failure: description the one-line reason, metadata where it is.
    Anything else is a bug: it keeps its traceback, its message withheld (_withheld)."""
    if inspect.isgeneratorfunction(compute):
        # A step that yields its results (canonical_tables) runs its body while Dagster iterates, after a
        # plain wrapper has returned: the wrapper must iterate too.
        @functools.wraps(compute)
        def results(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202 -- Dagster reads the wrapped signature
            try:
                yield from compute(*args, **kwargs)
                return
            except Exception as exc:  # noqa: BLE001 -- each kind as _instead says
                failure = _instead(exc)
                if failure is None:
                    raise
            raise failure from None

        return results  # type: ignore[return-value]

    @functools.wraps(compute)
    def step(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202 -- Dagster reads the wrapped signature
        try:
            return compute(*args, **kwargs)
        except Exception as exc:  # noqa: BLE001 -- each kind as _instead says
            failure = _instead(exc)
            if failure is None:
                raise
        # Raised here, outside the except: no "during handling of" chain, and no frame below this one.
        raise failure from None

    return step  # type: ignore[return-value]


# Set while a launcher that prints an expected failure's reason itself runs a job in-process (runs.execute,
# for `rematch`): the console's failure lines then leave the reason to it.
_LAUNCHER_SAYS_REASON: ContextVar[bool] = ContextVar("launcher_says_reason", default=False)


@contextmanager
def reason_said_by_launcher() -> Iterator[None]:
    """While open, a step's or run's expected failure is printed on the console without its reason: the
    launcher says it once, after the run (`rematch: round_job failed (run …): <reason>`). The run's event
    log, which the UI shows, keeps the reason; `rematch ui`'s console (not inside this) keeps it too."""
    token = _LAUNCHER_SAYS_REASON.set(True)
    try:
        yield
    finally:
        _LAUNCHER_SAYS_REASON.reset(token)


class _ReasonOnly(logging.Filter):
    """Ends a console line of a step or run failure raised as dg.Failure at its reason, or, where the launcher
    says the reason (reason_said_by_launcher), at the event's own words (`Execution of step "x" failed.`).

    Such a failure is expected (reason_first made it), and its stack is Dagster's frames and our wrapper's
    `raise`: on a terminal, ~25 lines that read as a crash, twice a run; its reason, printed by the step
    failure, the run failure and `rematch`'s own line, was said three times. Any other error keeps its stack
    and its message. The record is this logger's own (Dagster logs a new one per logger), so the event log
    keeps it whole."""

    def filter(self, record: logging.LogRecord) -> bool:
        meta = getattr(record, "dagster_meta", None) or {}
        data = getattr(meta.get("dagster_event"), "event_specific_data", None)
        error = getattr(data, "error", None)
        if error is not None and error.cls_name == "Failure" and isinstance(record.msg, str):
            # Dagster writes the event's message, a blank line, then the error (and its stack).
            record.msg = record.msg.split("\n\n", 1)[0] if _LAUNCHER_SAYS_REASON.get() else record.msg.split("\n\nStack Trace:", 1)[0]
        return True


# Every job's default run config: its console logger named. Dagster uses a job's loggers only when the run config
# names them; a run launched without a `loggers:` section (the Launchpad, a sensor's or the schedule's run) logged
# through Dagster's default console logger instead, which printed an expected failure's stack twice on `rematch ui`'s
# terminal. A run config that names loggers itself (runs.execute) replaces this.
CONSOLE_LOGGER_RUN_CONFIG: dict[str, dict] = {"loggers": {"console": {}}}


@dg.logger(config_schema=colored_console_logger.config_schema, description="Dagster's console logger; an expected failure without its stack.")
def console_logger(init_context: dg.InitLoggerContext) -> logging.Logger:
    """The jobs' console logger (rematch's terminal and `rematch ui`'s): Dagster's own, its failure lines ending at the reason."""
    logger = create_console_logger(name=init_context.logger_config["name"], level=init_context.logger_config["log_level"])
    logger.addFilter(_ReasonOnly())
    return logger
