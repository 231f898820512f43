"""Renamed keywords, kept working for one release with a ``DeprecationWarning``.

The Python API says ``nonneg`` for non-negative features (UFM+: a ReLU before the loss), as ``ufm.Problem`` does;
``relu=`` was the older spelling of the same idea in the measurement, tracker and deep-net code. A function that
still takes the old keyword lists it after the new one (keyword-only, default None) and calls :func:`renamed`.
"""
from __future__ import annotations

import inspect
import warnings
from typing import Any, Callable

__all__ = ["renamed", "call_renamed"]


def renamed(old: str, old_value: Any, new: str, new_value: Any, *, stacklevel: int = 3) -> Any:
    """The value of keyword ``new``: ``old_value`` (with a ``DeprecationWarning`` naming both) when the caller
    gave the old keyword (not None), else ``new_value``.

    Args:
      old, old_value: the deprecated keyword and what the caller gave for it (None: not given).
      new, new_value: the keyword's name now and its value (its default when the caller gave only ``old``).
      stacklevel: passed to ``warnings.warn``; 3 points at the caller of the function that calls this.
    Returns:
      The value to use.
    """
    if old_value is None:
        return new_value
    warnings.warn(f"{old}= is deprecated; use {new}= (the same meaning)", DeprecationWarning, stacklevel=stacklevel)
    return old_value


def call_renamed(fn: Callable, *args: Any, old: str = "relu", new: str = "nonneg", **kwargs: Any) -> Any:
    """``fn(*args, **kwargs)``, with keyword ``new`` passed as ``old`` (and a ``DeprecationWarning``) when ``fn``
    takes ``old`` and not ``new``: a user's callable written for the old spelling keeps working.

    Args:
      fn: the callable (a UFM reference, ``ufm.measurement``).
      args, kwargs: its arguments, ``kwargs`` holding ``new``.
      old, new: the deprecated keyword and its name now.
    Returns:
      What ``fn`` returns.
    """
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):  # no signature to read: call it with the new keyword
        return fn(*args, **kwargs)
    if new in kwargs and old in params and new not in params:
        name = getattr(fn, "__qualname__", None) or type(fn).__name__
        warnings.warn(f"{name} takes {old}=, which is deprecated; take {new}= (the same meaning)",
                      DeprecationWarning, stacklevel=3)
        kwargs[old] = kwargs.pop(new)
    return fn(*args, **kwargs)
