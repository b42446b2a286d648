"""One place for what spicenet tells the user on stderr while it works: progress bars and log lines.

Verbosity is process-wide and set once (the CLI's global ``-q`` / ``-v``, or :func:`set_verbosity` from Python):

* ``QUIET`` (0, ``-q``): no progress bars, no info lines; warnings and errors only.
* ``NORMAL`` (1, default): progress bars on stderr for long work, info lines.
* ``VERBOSE`` (2, ``-v``): also debug lines (what was resumed, which files were read, per-step detail).

Every progress bar in spicenet goes through :func:`progress_bar` (a ``tqdm`` on stderr, never stdout, so a verb's
``--json`` output stays one JSON object); a caller's own ``enabled=False`` (e.g. ``progress=False``) still wins.
Log lines go to the ``spicenet`` logger (:func:`logger`), whose level follows the verbosity.
"""

from __future__ import annotations

import logging
import sys
from typing import Any, Iterable, Iterator, TypeVar

__all__ = ["QUIET", "NORMAL", "VERBOSE", "set_verbosity", "verbosity", "progress_bar", "progress_iter", "logger",
           "note"]

QUIET, NORMAL, VERBOSE = 0, 1, 2
_LEVELS = {QUIET: logging.WARNING, NORMAL: logging.INFO, VERBOSE: logging.DEBUG}
_state = {"verbosity": NORMAL}
_T = TypeVar("_T")


class _StderrHandler(logging.StreamHandler):
    """A stream handler that writes to whatever ``sys.stderr`` is at emit time (``logging.StreamHandler()`` binds
    the stream it finds when created: a handler made under a redirected stderr would later write to a closed one)."""

    @property
    def stream(self):  # noqa: D102
        return sys.stderr

    @stream.setter
    def stream(self, _value) -> None:
        pass


def logger() -> logging.Logger:
    """The ``spicenet`` logger; one stderr handler (``spicenet: <message>``) is attached on first use."""
    log = logging.getLogger("spicenet")
    if not any(getattr(h, "_spicenet", False) for h in log.handlers):
        handler = _StderrHandler()
        handler.setFormatter(logging.Formatter("spicenet: %(message)s"))
        handler._spicenet = True  # type: ignore[attr-defined]
        log.addHandler(handler)
        log.propagate = False
        log.setLevel(_LEVELS[_state["verbosity"]])
    return log


def set_verbosity(level: int) -> None:
    """Set the process-wide verbosity: ``QUIET`` (0), ``NORMAL`` (1) or ``VERBOSE`` (2)."""
    if level not in _LEVELS:
        raise ValueError(f"verbosity: expected 0 (quiet), 1 (normal) or 2 (verbose), got {level!r}")
    _state["verbosity"] = int(level)
    logger().setLevel(_LEVELS[level])


def verbosity() -> int:
    """The current verbosity (``QUIET``, ``NORMAL`` or ``VERBOSE``)."""
    return _state["verbosity"]


def note(text: str) -> None:
    """Print a status line ``text`` to stderr as written (no prefix), unless the verbosity is ``QUIET``."""
    if verbosity() != QUIET:
        print(text, file=sys.stderr, flush=True)


def progress_bar(total: float | None = None, desc: str = "", *, enabled: bool = True, initial: float = 0,
                 **kwargs: Any) -> Any:
    """A ``tqdm`` bar on stderr counting ``total`` units of work (``initial`` already done, e.g. on resume);
    disabled when ``enabled`` is False or the verbosity is ``QUIET``. Extra keywords go to tqdm."""
    from tqdm import tqdm

    opts: dict[str, Any] = {"file": sys.stderr, "leave": False, "dynamic_ncols": True}
    opts.update(kwargs)
    return tqdm(total=total, desc=desc, initial=initial, disable=not enabled or verbosity() == QUIET, **opts)


def progress_iter(iterable: Iterable[_T], total: float | None = None, desc: str = "", *, enabled: bool = True,
                  initial: float = 0, **kwargs: Any) -> Iterator[_T]:
    """Iterate ``iterable`` with a :func:`progress_bar` (``total`` defaults to ``len(iterable)`` when it has one)."""
    if total is None and hasattr(iterable, "__len__"):
        total = len(iterable)  # type: ignore[arg-type]
    bar = progress_bar(total, desc, enabled=enabled, initial=initial, **kwargs)
    try:
        for item in iterable:
            yield item
            bar.update(1)
    finally:
        bar.close()
