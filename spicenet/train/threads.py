"""torch's intra-op thread count is process-wide state: a trainer that sets it for its own solves must give it back.

``restores_torch_threads`` wraps an entry point so that whatever ``torch.set_num_threads`` it calls, the caller's
count is restored when it returns or raises (a notebook that trains two models in a row, or a test suite, keeps its
own setting).
"""

from __future__ import annotations

import functools
from typing import Callable, TypeVar, cast

F = TypeVar("F", bound=Callable[..., object])


def restores_torch_threads(fn: F) -> F:
    """Decorator: run ``fn`` and restore ``torch.get_num_threads()`` to its value at entry afterwards."""

    @functools.wraps(fn)
    def wrapper(*args: object, **kwargs: object) -> object:
        import torch

        before = torch.get_num_threads()
        try:
            return fn(*args, **kwargs)
        finally:
            if torch.get_num_threads() != before:
                torch.set_num_threads(before)

    return cast(F, wrapper)
