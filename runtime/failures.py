"""How a run ends on an error imsflow knows: one line that says what failed and what to do, no traceback.

An :class:`~imsflow.errors.ImsflowError` that reaches a flow is expected: it is not transient, or it was
transient and the task's retries are spent (``runtime/retry.py``). Raised out of the flow, Prefect would log
its traceback (40-odd lines of engine frames) and end the run with ``Flow run encountered an exception:
...``. Instead, :func:`ending_cleanly` turns it into the run's final state, ``Failed`` with
:func:`failure_line` as its message (the run page's header, the runs list, ``prefect deployment run
--watch``, the ``imsflow.image.failed`` event) and the exception as its data, so that a Python caller still
gets the exception: ``await flow(...)`` raises it, and ``state.result(raise_on_failure=False)`` returns it
(``cli/flowrun.py`` ``unwrap`` re-raises it for the one-line CLI error).

In Prefect 3.9.1 a *task* that returns a ``Failed`` state does not raise in its caller: ``await task()``
returns the state object (``task_engine.AsyncTaskRunEngine.result``). So tasks keep raising, which keeps
their retries on transient errors (``retry_condition_fn``) and the exception types the flows catch; the one
traceback a task logs itself (when its retries are exhausted, ``handle_retry``'s ``exc_info=True``) is
dropped for an imsflow error by :func:`quiet_expected_tracebacks`. An unexpected exception (a bug) keeps its
traceback everywhere.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable
from typing import Any, TypeVar, cast

from prefect.states import Failed

from imsflow.errors import ImsflowError
from imsflow.redact import redact

R = TypeVar("R")

#: Prefect's run loggers: task runs log "Retries are exhausted" with the traceback, flow runs "Encountered
#: exception during execution" with it (a flow that lets an imsflow error through, e.g. the fleet's).
RUN_LOGGERS = ("prefect.task_runs", "prefect.flow_runs")


def _one_line(text: str) -> str:
    return " ".join(text.split())


def failure_line(exc: ImsflowError) -> str:
    """``EcsNotReadyError: ECS db-1 (...) is ACTIVE (no task); ... — to do: stop it first, or ...``.

    What failed (the error's class and its message, which carries the cloud's code and request ID when
    there is one) and what to do (the error's hint), on one line, secrets masked.
    """
    what = str(exc) or type(exc).__name__
    hint = (exc.hint or "").strip()
    line = f"{type(exc).__name__}: {what}"
    if hint and _one_line(hint).rstrip(".").lower() not in _one_line(what).lower():
        line += f" — to do: {hint}"  # a message that says what to do already (a refused login) says it once
    return redact(_one_line(line))


def failed(exc: ImsflowError) -> Any:
    """The final state of a run (or task) that ended with ``exc``: its line as message, ``exc`` as data."""
    return Failed(message=failure_line(exc), data=exc)


class _ExpectedTracebacks(logging.Filter):
    """Drops the traceback from a run log record whose exception is an imsflow error (keeps the line)."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc_info = record.exc_info
        if exc_info and (exc_info[1] is None or isinstance(exc_info[1], ImsflowError)):
            # exc_info=True outside an except block is (None, None, None): "NoneType: None" otherwise.
            record.exc_info = None
            record.exc_text = None
        return True


_filter = _ExpectedTracebacks()


def quiet_expected_tracebacks() -> None:
    """Attach the filter to Prefect's run loggers (idempotent: a filter is added once)."""
    for name in RUN_LOGGERS:
        logging.getLogger(name).addFilter(_filter)


async def ending_cleanly(work: Awaitable[R]) -> R:
    """Await a flow's work; an imsflow error ends the run ``Failed`` with :func:`failure_line`.

    Returned from the flow function, the ``Failed`` state is the run's final state (Prefect logs
    ``Finished in state Failed('...')``, one line). Anything else propagates as before, traceback and all.
    The flow function's declared result type is a white lie Prefect resolves: through Prefect, the caller
    gets the result or the exception, never the state (``flow.fn(...)`` called directly returns it).
    """
    # At each run's start, not once at import: Prefect may set its logging up again (dictConfig) in between.
    quiet_expected_tracebacks()
    try:
        return await work
    except ImsflowError as exc:
        return cast("R", failed(exc))


__all__ = ["ending_cleanly", "failed", "failure_line", "quiet_expected_tracebacks"]
