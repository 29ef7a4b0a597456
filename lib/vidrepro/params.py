"""Typed notebook parameters.

Each notebook ``notebooks/<paper>/<name>.ipynb`` has a pydantic model (``vidrepro.<paper>.params``
maps notebook names to models in ``NOTEBOOKS``) and two YAML files,
``params/<paper>/{tiny,full}/<name>.yaml``. Everything is validated before a notebook starts, so
a misspelled key in a two-hour run fails in the first second, naming the key and the file.
"""

from __future__ import annotations

import difflib
import hashlib
import importlib
import json
import re
import warnings
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, ValidationError

SCALES = ("tiny", "full")


class ParamsError(ValueError):
    """Bad parameters; the message names the file and the key."""


class Params(BaseModel):
    """Base of every notebook's parameter model: unknown keys and wrong types are errors, and
    nothing is coerced (``true`` is not the number 1, ``"5e-5"`` is not a float, ``8.0`` is not
    a count); a whole number is accepted where a float is expected."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True, frozen=False, strict=True)

    def digest(self) -> str:
        """A stable hash of the values, for provenance and step caching."""
        return hashlib.sha256(canonical_json(self.model_dump(mode="json")).encode()).hexdigest()


def canonical_json(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)


# --- YAML ------------------------------------------------------------------------------------


class _Loader(yaml.SafeLoader):
    """SafeLoader that reads ``1e-4`` as a float; PyYAML follows YAML 1.1, which needs a dot."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(
        r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
        |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
        |\.[0-9_]+(?:[eE][-+]?[0-9]+)?
        |[-+]?\.(?:inf|Inf|INF)
        |\.(?:nan|NaN|NAN))$""",
        re.X,
    ),
    list("-+0123456789."),
)


def load_yaml(path: str | Path) -> Any:
    path = Path(path)
    try:
        text = path.read_text()
    except FileNotFoundError:
        raise ParamsError(f"{path}: file not found") from None
    try:
        return yaml.load(text, Loader=_Loader)  # noqa: S506 - _Loader is a SafeLoader
    except yaml.YAMLError as e:
        raise ParamsError(f"{path}: not valid YAML: {e}") from None


def parse_value(text: str) -> Any:
    """A command-line value with YAML's typing (``8``, ``1e-4``, ``true``, ``[4, 8]``);
    the model then checks it against the field's type."""
    try:
        return yaml.load(text, Loader=_Loader)  # noqa: S506
    except yaml.YAMLError:
        return text


def parse_overrides(items: list[str] | None) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for item in items or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ParamsError(f"override {item!r}: expected key=value")
        out[key.strip()] = parse_value(value)
    return out


# --- validation ----------------------------------------------------------------------------


def validate(model: type[BaseModel], values: Any, source: str) -> Any:
    """Build ``model`` from ``values``; errors name ``source`` and every bad key."""
    if not isinstance(values, dict):
        raise ParamsError(
            f"{source}: expected a mapping of parameter names to values, "
            f"got {type(values).__name__}"
        )
    try:
        return model(**values)
    except ValidationError as e:
        raise ParamsError(_describe(e, model, source)) from None


def _describe(error: ValidationError, model: type[BaseModel], source: str) -> str:
    known = list(model.model_fields)
    lines = [f"{source}: invalid {model.__name__}"]
    for err in error.errors():
        key = ".".join(str(p) for p in err["loc"]) or "(root)"
        if err["type"] == "extra_forbidden":
            near = (
                difflib.get_close_matches(str(err["loc"][0]), known, n=1)
                if len(err["loc"]) == 1
                else []
            )
            hint = f"; did you mean {near[0]!r}?" if near else ""
            lines.append(f"  key {key!r}: unknown parameter{hint}")
        elif err["type"] == "missing":
            lines.append(f"  key {key!r}: required but missing")
        else:
            lines.append(f"  key {key!r}: {err['msg']} (got {err.get('input')!r})")
    return "\n".join(lines)


def load(model: type[Params], path: str | Path, overrides: dict[str, Any] | None = None) -> Params:
    """Read a params YAML, apply ``overrides`` (already typed by :func:`parse_value`), validate."""
    values = load_yaml(path)
    if values is None:
        values = {}
    if not isinstance(values, dict):
        raise ParamsError(f"{path}: expected a mapping at the top level")
    source = str(path)
    if overrides:
        source += f" (with overrides {', '.join(overrides)})"
        values = {**values, **overrides}
    return validate(model, values, source)


# --- which model belongs to which notebook -------------------------------------------------

_REGISTRY: dict[tuple[str, str], type[Params]] = {}


def register(paper: str, notebook: str, model: type[Params]) -> None:
    """Declare the model of ``notebooks/<paper>/<notebook>.ipynb`` (tests use it for scratch
    notebooks; the kit's own papers declare theirs in ``vidrepro.<paper>.params.NOTEBOOKS``)."""
    _REGISTRY[(paper, notebook)] = model


def schema_for(paper: str, notebook: str) -> type[Params]:
    if (paper, notebook) in _REGISTRY:
        return _REGISTRY[(paper, notebook)]
    try:
        module = importlib.import_module(f"vidrepro.{paper}.params")
    except ModuleNotFoundError as e:
        raise ParamsError(
            f"no parameter models for paper {paper!r} (expected module vidrepro.{paper}.params)"
        ) from e
    notebooks: dict[str, type[Params]] = getattr(module, "NOTEBOOKS", {})
    if notebook not in notebooks:
        raise ParamsError(
            f"vidrepro.{paper}.params.NOTEBOOKS has no entry for {notebook!r} "
            f"(has: {', '.join(sorted(notebooks)) or 'none'})"
        )
    return notebooks[notebook]


def params_path(root: Path, paper: str, notebook: str, scale: str) -> Path:
    if scale not in SCALES:
        raise ParamsError(f"scale {scale!r}: expected one of {', '.join(SCALES)}")
    return root / "params" / paper / scale / f"{notebook}.yaml"


def from_namespace(model: type[Params], namespace: dict[str, Any]) -> Params:
    """Validate a notebook's parameter variables (after papermill's injected cell) in-kernel,
    so that a notebook opened by hand in Jupyter gets the same checks as a headless run."""
    return validate(
        model,
        {k: namespace[k] for k in model.model_fields if k in namespace},
        "notebook parameters cell",
    )


def untrained(key: str, value: str, configs: Iterable[str], allow: bool, hint: str) -> bool:
    """Whether ``value`` (of params key ``key``) names a model config, i.e. an untrained model,
    rather than a trained one. Unless ``allow`` that is an error that says ``hint`` (where the
    trained models are); allowed, it warns: what an untrained model outputs is noise."""
    if value not in set(configs) or Path(value).is_dir():
        return False
    message = f"{key}: {value!r} is a config name, an untrained model whose output is noise"
    if not allow:
        raise ParamsError(f"{message}. {hint}; or set allow_untrained: true to try it out")
    warnings.warn(f"{message} (allow_untrained: true)", stacklevel=3)
    return True


def one_of(value: str, known: Iterable[str], what: str) -> str:
    """``value`` if it is one of ``known``, else an error listing them (with a "did you mean")."""
    known = sorted(known)
    if value in known:
        return value
    near = difflib.get_close_matches(value, known, n=1)
    hint = f"; did you mean {near[0]!r}?" if near else ""
    raise ValueError(f"{value!r} is not {what}{hint} (known: {', '.join(known[:12])})")
