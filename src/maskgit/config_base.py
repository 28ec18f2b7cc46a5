"""The typed config base that model configs (``maskgit.configs``) and training configs
(``maskgit.training.config``) share.

A config is a frozen dataclass whose fields have plain types: ``int``, ``float``, ``str``, ``bool``,
``X | None``, ``tuple[...]``, ``dict[str, Any]`` (a JSON object) or another config (nested, such as a
training config's ``model``).
The base gives every config:

- type checks at construction (``filters="64"`` is an error naming the class and the key; an int
  where a float is expected becomes a float, a list where a tuple is expected becomes a tuple);
- a dict round trip (``to_dict`` / ``from_dict``) that rejects unknown keys and lists the valid ones;
- ``updated`` with dotted keys into nested configs (``{"model.filters": 64}``, as ``--set`` passes);
- JSON or YAML files (``save`` / ``load``, chosen by the file suffix).

``differences`` lists the settings that differ between two such dicts (a resumed run's checks).
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import re
import types
import typing
from pathlib import Path
from typing import Any, ClassVar, TypeVar

__all__ = ["Config", "ConfigError", "read_config_file", "parse_override", "differences"]


class ConfigError(ValueError):
    """A config is malformed: unknown key, wrong type or an inconsistent value."""


C = TypeVar("C", bound="Config")

# PyYAML (YAML 1.1) reads "1e-4" as a string; files and overrides may spell a float that way.
_EXPONENT_FLOAT = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+")


class Config:
    """Base of the frozen config dataclasses; see the module docstring.

    ``tag_key`` names the class attribute that tags a saved config with its kind (``model_type``
    for the models, ``stage`` for training), so that one kind is never read as another. A nested
    config is written without its tag: the field's type says what it is.
    """

    tag_key: ClassVar[str]

    def __post_init__(self) -> None:
        name = type(self).__name__
        for key, annotation in _field_types(type(self)).items():
            value = getattr(self, key)
            checked = _coerce(value, annotation, f"{name}: {key}")
            if checked is not value:
                object.__setattr__(self, key, checked)  # frozen: normalise int → float, list → tuple

    # -- dict round trip --------------------------------------------------------------------------

    @classmethod
    def tag(cls) -> str:
        return getattr(cls, cls.tag_key)

    @classmethod
    def valid_keys(cls) -> list[str]:
        return sorted(_field_types(cls))

    def to_dict(self) -> dict[str, Any]:
        """``{tag_key: tag, field: value, ...}`` with tuples as lists and nested configs as dicts
        (without their tag): what ``json.dumps`` writes and ``from_dict`` reads."""
        return {self.tag_key: self.tag(), **self._values()}

    def _values(self) -> dict[str, Any]:
        data: dict[str, Any] = {}
        for key in _field_types(type(self)):
            value = getattr(self, key)
            if isinstance(value, Config):
                value = value._values()
            elif isinstance(value, tuple):
                value = list(value)
            data[key] = value
        return data

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2)

    @classmethod
    def from_dict(cls: type[C], data: dict[str, Any], *, source: str = "config") -> C:
        """Build a config from a dict such as ``to_dict`` writes; keys left out take the field
        defaults. Raises ConfigError naming ``source`` for a wrong tag, unknown keys (listing the
        valid ones) or a value of the wrong type."""
        data = dict(data)
        tag = data.pop(cls.tag_key, cls.tag())
        if tag != cls.tag():
            raise ConfigError(f"{source}: {cls.tag_key} is {tag!r}, expected {cls.tag()!r}")
        types_ = _field_types(cls)
        unknown = sorted(set(data) - set(types_))
        if unknown:
            raise ConfigError(f"{source}: unknown key(s) {unknown} for {cls.__name__}; valid keys are {sorted(types_)}")
        values = {key: _coerce(value, types_[key], f"{source}: {key}") for key, value in data.items()}
        return cls(**values)

    def updated(self: C, changes: dict[str, Any], *, source: str = "config") -> C:
        """A copy with ``changes`` applied. A key may be dotted into a nested config
        (``"model.filters"``), or a nested config may be given as a dict of its keys or as the name
        of one of its presets (``"model": "imagenet256"``). Every key and value is checked."""
        types_ = _field_types(type(self))
        nested: dict[str, Any] = {}
        updates: dict[str, Any] = {}
        for key, value in changes.items():
            if not isinstance(key, str):
                raise ConfigError(f"{source}: keys must be strings, got {key!r}")
            head, dot, tail = key.partition(".")
            if head not in types_:
                raise ConfigError(
                    f"{source}: unknown key {key!r} for {self.describe()}; valid keys are {self.valid_keys()}"
                )
            annotation = types_[head]
            is_config = isinstance(annotation, type) and issubclass(annotation, Config)
            if dot and (not is_config or "." in tail):
                raise ConfigError(f"{source}: unknown key {key!r}; only '<nested config>.<key>' may be dotted")
            if not is_config:
                updates[head] = _coerce(value, annotation, f"{source}: {head}")
            elif not dot and not isinstance(value, (str, dict)):
                raise ConfigError(f"{source}: {head!r} must be a mapping of its config keys or a preset name")
            elif isinstance(value, str) and not dot:  # a preset name
                if head in nested:
                    raise ConfigError(f"{source}: {head!r} given both as a preset name and as {head}.<key>")
                nested[head] = value
            else:
                if isinstance(nested.get(head), str):
                    raise ConfigError(f"{source}: {head!r} given both as a preset name and as {key}")
                nested.setdefault(head, {}).update({tail: value} if dot else value)
        for head, value in nested.items():
            kind = types_[head]
            if isinstance(value, str):
                updates[head] = kind.preset(value)
            else:
                base = getattr(self, head)
                updates[head] = kind.from_dict({**base._values(), **value}, source=f"{source}: {head}")
        return dataclasses.replace(self, **updates)  # type: ignore[type-var]

    def replace(self: C, **changes: Any) -> C:
        """A copy with fields replaced (checked like a new config)."""
        return dataclasses.replace(self, **changes)  # type: ignore[type-var]

    @classmethod
    def describe(cls) -> str:
        """How error messages name this kind of config."""
        return cls.__name__

    @classmethod
    def preset(cls: type[C], name: str) -> C:
        """The named preset of this config class; ConfigError listing the valid names."""
        raise ConfigError(f"{cls.__name__} has no presets (asked for {name!r})")

    # -- files ------------------------------------------------------------------------------------

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the config atomically, as YAML for a ``.yaml``/``.yml`` path and JSON otherwise."""
        from maskgit.io import atomic_write_text

        path = Path(path)
        if path.suffix.lower() in (".yaml", ".yml"):
            import yaml

            text = yaml.safe_dump(self.to_dict(), sort_keys=False)
        else:
            text = self.to_json() + "\n"
        atomic_write_text(path, text)

    @classmethod
    def load(cls: type[C], path: str | os.PathLike[str]) -> C:
        """Read a config written by ``save`` (JSON, or YAML by suffix)."""
        return cls.from_dict(read_config_file(path), source=str(path))

    # -- checks for subclasses' __post_init__ -----------------------------------------------------

    def _check_at_least(self, minimum: int, *keys: str, note: str = "") -> None:
        for key in keys:
            value = getattr(self, key)
            if value < minimum:
                raise ConfigError(f"{type(self).__name__}: {key} must be >= {minimum}{note}, got {value}")

    def _check_interval(self, key: str, low: float, high: float, *, include_high: bool) -> None:
        value = getattr(self, key)
        if not (low <= value <= high if include_high else low <= value < high):
            bracket = "]" if include_high else ")"
            raise ConfigError(f"{type(self).__name__}: {key} must be in [{low:g}, {high:g}{bracket}, got {value}")

    def _check_choice(self, key: str, choices: tuple[str, ...]) -> None:
        value = getattr(self, key)
        if value not in choices:
            listed = ", ".join(repr(c) for c in choices[:-1]) + f" or {choices[-1]!r}"
            raise ConfigError(f"{type(self).__name__}: {key} must be {listed}, got {value!r}")


@functools.cache
def _field_types(cls: type) -> dict[str, Any]:
    """``{field name: resolved type}`` of a config dataclass, in field order."""
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls)}


def _coerce(value: Any, annotation: Any, where: str) -> Any:
    """``value`` checked against a field type (int, float, str, bool, X | None, tuple[...],
    dict[str, ...], a config class); raises ConfigError ``"<where> must be <type>, got <value>"``."""
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        (inner,) = [a for a in args if a is not type(None)]
        return _coerce(value, inner, where)
    if isinstance(annotation, type) and issubclass(annotation, Config):
        if isinstance(value, annotation):
            return value
        if isinstance(value, dict):
            return annotation.from_dict(value, source=where)
    elif annotation is bool:
        if isinstance(value, bool):
            return value
    elif annotation is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif annotation is float:
        if isinstance(value, float):
            return value
        if isinstance(value, int) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str) and _EXPONENT_FLOAT.fullmatch(value.strip()):
            return float(value)
    elif annotation is str:
        if isinstance(value, str):
            return value
    elif origin is dict:  # a JSON object kept as it is (a subclass checks what it holds)
        if isinstance(value, dict) and all(isinstance(key, str) for key in value):
            return value
    elif origin is tuple:
        if isinstance(value, (list, tuple)) and (args[-1] is Ellipsis or len(value) == len(args)):
            element_types = [args[0]] * len(value) if args[-1] is Ellipsis else list(args)
            items = tuple(_coerce(v, t, f"{where}[{i}]") for i, (v, t) in enumerate(zip(value, element_types)))
            return value if isinstance(value, tuple) and all(a is b for a, b in zip(items, value)) else items
    name = getattr(annotation, "__name__", str(annotation))
    raise ConfigError(f"{where} must be {name}, got {value!r}")


def read_config_file(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The mapping in a JSON file, or a YAML file (``.yaml``/``.yml``, where an empty file is ``{}``).

    Raises ConfigError naming the file when it is missing, unparsable or not a mapping.
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: config file not found")
    text = path.read_text()
    if path.suffix.lower() in (".yaml", ".yml"):
        import yaml

        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as error:
            raise ConfigError(f"{path}: not valid YAML ({error})") from None
    else:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as error:
            raise ConfigError(f"{path}: not valid JSON ({error})") from None
    if data is None:  # an empty YAML file, or JSON null
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of config keys at the top level")
    return data


def parse_override(text: str) -> tuple[str, Any]:
    """``"model.filters=64"`` → ``("model.filters", 64)``. The value is read as YAML, so ``null``,
    ``true``, ``1e-4`` and ``[1, 2]`` work; anything else stays a string."""
    import yaml

    key, sep, raw = text.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"override {text!r} is not KEY=VALUE")
    try:
        value = yaml.safe_load(raw)
    except yaml.YAMLError:  # not a YAML value (e.g. a bare path with odd characters): keep the text
        value = raw
    return key.strip(), value


def differences(before: dict[str, Any], after: dict[str, Any], *, ignore: frozenset[str] = frozenset()) -> list[str]:
    """One ``key: before -> after`` line per setting that differs, nested dicts flattened to dotted
    keys (``sampler.num_steps``); top-level keys in ``ignore`` are skipped."""

    def flat(data: dict[str, Any], prefix: str = "") -> dict[str, Any]:
        items: dict[str, Any] = {}
        for key, value in data.items():
            if prefix == "" and key in ignore:
                continue
            if isinstance(value, dict):
                items.update(flat(value, f"{prefix}{key}."))
            else:
                items[f"{prefix}{key}"] = value
        return items

    old, new = flat(before), flat(after)
    return [f"{key}: {old.get(key)!r} -> {new.get(key)!r}" for key in sorted(set(old) | set(new)) if old.get(key) != new.get(key)]
