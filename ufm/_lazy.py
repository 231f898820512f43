"""Public names that load on first use (PEP 562), shared by ``ufm`` and ``solvers``: ``import ufm`` costs nothing,
and JAX is imported only by what needs it (which keeps ``ufm --help`` fast)."""
from __future__ import annotations

import importlib
import sys

__all__ = ["lazy"]


def lazy(package: str, exports: dict, names) -> tuple:
    """``(__getattr__, __dir__)`` for the package ``package``.

    Args:
      package: the package's ``__name__``.
      exports: public name -> ``(submodule, attribute)``; attribute None: the submodule itself.
      names: the package's ``__all__``.
    Returns:
      the two module-level functions; a loaded name is stored in the package, so it loads once.
    """
    def __getattr__(name: str):
        try:
            module, attr = exports[name]
        except KeyError:
            raise AttributeError(f"module {package!r} has no attribute {name!r}") from None
        mod = importlib.import_module(f".{module}", package)
        value = mod if attr is None else getattr(mod, attr)
        setattr(sys.modules[package], name, value)
        return value

    def __dir__():
        return sorted(set(vars(sys.modules[package])) | set(names))

    return __getattr__, __dir__
