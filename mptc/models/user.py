"""A user's own model, named by an import path ``package.module:Factory`` and keyword arguments.

A ticket of such a model records the path and the arguments (and, for pre-trained weights, their
hash), so that ``mptc export`` and friends rebuild it in another process. The factory is either an
``nn.Module`` subclass or a function returning one (``torchvision.models:resnet18``,
``my_pkg.nets:Net``).

The module is imported as Python would (the current folder is searched too, last). Rebuilding
a model named in a ticket imports that module and calls the factory: a ticket of a user model
is only as trustworthy as the package it names. Standard-library callables are refused
outright (``os:system`` is no model).

The model is constructed under a torch RNG seeded from the run's seed, so parameters that mptc
does not draw itself (a LayerNorm's, an embedding's) are the same in every process.
"""

from __future__ import annotations

import importlib
import inspect
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from mptc.config import is_import_path
from mptc.errors import InputError, first_line
from mptc.nn.init import derive_seed


def import_path_of(factory: Callable[..., Any]) -> str:
    """``module:qualname`` of a class or function, the way a ticket records it.

    A factory defined in a script run as ``python path/to/script.py`` lives in ``__main__``; it is
    recorded under the script's own module name when the script's folder is on ``sys.path`` (it
    is, for the script Python was started with), so another process can import it.

    Raises:
        InputError: defined inside a function (``<locals>``), or in a ``__main__`` that cannot
            be imported by name.
    """
    module, qualname = getattr(factory, "__module__", None), getattr(factory, "__qualname__", "")
    if not module or "<locals>" in qualname or not qualname:
        raise InputError(
            f"{factory!r} is not importable by name (defined inside a function?): define the model at module level"
        )
    if module == "__main__":
        module = _main_module_name(factory)
    return f"{module}:{qualname}"


def _main_module_name(factory: Callable[..., Any]) -> str:
    main = sys.modules.get("__main__")
    spec = getattr(main, "__spec__", None)
    if spec is not None and spec.name and spec.name != "__main__":
        return str(spec.name)  # python -m package.module
    path = getattr(main, "__file__", None)
    if path is not None:
        folder = Path(path).resolve().parent
        if any(Path(entry or ".").resolve() == folder for entry in sys.path):
            return Path(path).stem
    raise InputError(
        f"{factory.__qualname__} is defined in __main__, which another process cannot import: "
        "move it to a module, or pass its import path as 'module:Factory'"
    )


def resolve_factory(path: str) -> Callable[..., nn.Module]:
    """The class or function ``path`` (``module:attr.attr``) names.

    Raises:
        InputError: a malformed path, a module or attribute that does not import, a
            standard-library callable, or something that is neither an ``nn.Module`` subclass
            nor a Python function.
    """
    if not is_import_path(path):
        raise InputError(f"model {path!r} is neither a zoo model nor an import path 'package.module:Factory'")
    module_name, _, attribute = path.partition(":")
    if module_name.split(".")[0] in sys.stdlib_module_names:
        raise InputError(f"model {path!r} names a standard-library callable, not a model factory")
    try:
        target: Any = _import(module_name)
    except Exception as error:  # noqa: BLE001 - importing user code can raise anything
        raise InputError(f"cannot import {module_name!r} for model {path!r}: {first_line(error)}") from error
    for part in attribute.split("."):
        try:
            target = getattr(target, part)
        except AttributeError as error:
            raise InputError(f"model {path!r}: {module_name} has no attribute {attribute!r}") from error
    is_module_class = inspect.isclass(target) and issubclass(target, nn.Module)
    if not is_module_class and not inspect.isfunction(target):
        raise InputError(f"model {path!r} is a {type(target).__name__}, not an nn.Module subclass or a function")
    return target


def _import(module_name: str) -> Any:
    """Import ``module_name``; a top-level package that is not found is looked for in the current
    folder too, last on ``sys.path`` (as ``python -m`` would find it: the ``mptc`` script's own
    ``sys.path`` starts at its bin folder instead)."""
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as error:
        cwd = str(Path.cwd())
        if error.name != module_name.split(".")[0] or cwd in sys.path or "" in sys.path:
            raise
        sys.path.append(cwd)
        return importlib.import_module(module_name)


def instantiate(path: str, args: Mapping[str, Any], seed: int) -> nn.Module:
    """``factory(**args)`` under a torch RNG seeded from ``(seed, path)``; the global RNG is untouched.

    Raises:
        InputError: the factory does not resolve (:func:`resolve_factory`), fails, or returns
            something that is not an ``nn.Module``.
    """
    factory = resolve_factory(path)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(derive_seed(seed, "model", path))
        try:
            model = factory(**dict(args))
        except Exception as error:  # noqa: BLE001 - the user's constructor can raise anything
            raise InputError(f"model {path}(**{dict(args)}) failed: {first_line(error)}") from error
    if not isinstance(model, nn.Module):
        raise InputError(f"model {path}(**{dict(args)}) returned a {type(model).__name__}, not an nn.Module")
    return model
