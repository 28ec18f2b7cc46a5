"""Class names: the 1000 ImageNet classes built in, and turning what a user types into class indices.

A class name is a line such as ``"tench, Tinca tinca"``: comma-separated synonyms, the first being the
usual name. Users may give an index (``90`` or ``"90"``), the official demo's form (``"90) lorikeet"``),
the full line, or any one synonym, in any letter case.
"""

from __future__ import annotations

import difflib
import functools
import operator
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from importlib import resources

__all__ = ["imagenet_class_names", "default_class_names", "resolve_class", "parse_class_list"]

NUM_IMAGENET_CLASSES = 1000

_INDEX = re.compile(r"[+-]?\d+")
_DEMO_FORM = re.compile(r"(\d+)\)\s*(.*)", re.DOTALL)  # "90) lorikeet", as the official demo lists classes


@functools.cache
def imagenet_class_names() -> tuple[str, ...]:
    """The 1000 ImageNet-1k class names in class-index order (index 0 is ``"tench, Tinca tinca"``,
    90 ``"lorikeet"``, 345 ``"ox"``), as listed by the official MaskGIT demo. Each name is the full
    WordNet line of comma-separated synonyms."""
    text = (resources.files("maskgit") / "data" / "imagenet_classes.txt").read_text(encoding="utf-8")
    names = tuple(line.strip() for line in text.splitlines())
    if len(names) != NUM_IMAGENET_CLASSES or not all(names):
        raise RuntimeError(
            f"maskgit/data/imagenet_classes.txt is damaged: expected {NUM_IMAGENET_CLASSES} non-empty lines, "
            f"found {len(names)} lines; reinstall the package"
        )
    return names


def default_class_names(num_classes: int) -> tuple[str, ...]:
    """``("class_0", ..., "class_{n-1}")``: the names of a model that was given none."""
    return tuple(f"class_{index}" for index in range(num_classes))


def resolve_class(spec: str | int, class_names: Sequence[str]) -> int:
    """Turn a class given by a user into its index in ``class_names``.

    ``spec`` may be an index (``90`` or ``"90"``), the official demo's ``"90) lorikeet"``, a full name
    (``"tench, Tinca tinca"``), or one comma-separated synonym (``"Tinca tinca"``). Names are matched
    ignoring letter case and extra spaces. Several classes can share a name: a full-name match wins
    over a first-synonym match, which wins over any-synonym match (``"gong"`` is class 577 ``"gong,
    tam-tam"``, not 494 ``"chime, bell, gong"``); a name still shared at the winning level is ambiguous.

    Returns an int in ``[0, len(class_names))``. Raises ValueError naming the input for an index out
    of range (with the valid range), or an unknown or ambiguous name (with close matches or the
    candidates), and TypeError for a spec that is neither str nor int.
    """
    index = _NameIndex.of(class_names)
    if not isinstance(spec, str):
        if isinstance(spec, bool):
            raise TypeError(f"a class must be an index or a name, not {spec!r}")
        return index.check_index(operator.index(spec))
    text = spec.strip()
    if not text:
        raise ValueError("empty class name")
    if _INDEX.fullmatch(text):
        return index.check_index(int(text))
    demo = _DEMO_FORM.fullmatch(text)
    if demo:
        number = index.check_index(int(demo.group(1)))
        name = demo.group(2).strip()
        if name and _normalize(name) not in index.keys_of(number):
            raise ValueError(f"class {text!r} does not agree with itself: class {number} is {class_names[number]!r}")
        return number
    candidates = index.match(text)
    if len(candidates) == 1:
        return candidates[0]
    if candidates:
        listed = ", ".join(f"{i} ({class_names[i]!r})" for i in candidates)
        raise ValueError(f"class name {text!r} is ambiguous: it names classes {listed}; give the index instead")
    raise ValueError(index.unknown_message(text))


def parse_class_list(values: Iterable[str | int], class_names: Sequence[str]) -> list[int]:
    """Parse classes given on a command line into indices, in the order given (duplicates kept).

    ``values`` holds one item per occurrence of a repeatable option (``--class 90 --class ox``); each
    string may itself be a comma-separated list (``"tench, goldfish, 90"``). Because ImageNet names
    contain commas (``"tench, Tinca tinca"``), a string is split by this rule: at each position, the
    longest run of comma-separated pieces that names exactly one class is taken as that class; a single
    piece must name a class (see :func:`resolve_class`). So ``"tench, Tinca tinca"`` is [0],
    ``"tench, goldfish"`` is [0, 1] and ``"tench, Tinca tinca, 345"`` is [0, 345].

    Raises ValueError naming the offending piece (unknown, ambiguous, out of range or empty).
    """
    index = _NameIndex.of(class_names)
    classes: list[int] = []
    for value in values:
        if not isinstance(value, str):
            classes.append(resolve_class(value, class_names))
            continue
        pieces = [piece.strip() for piece in value.split(",")]
        if not all(pieces):
            raise ValueError(f"empty class name in {value!r}")
        start = 0
        while start < len(pieces):
            # Try the longest run first; runs longer than the longest name cannot match.
            for stop in range(min(len(pieces), start + index.max_pieces), start + 1, -1):
                candidates = index.match(", ".join(pieces[start:stop]))
                if len(candidates) == 1:
                    classes.append(candidates[0])
                    start = stop
                    break
            else:
                classes.append(resolve_class(pieces[start], class_names))
                start += 1
    return classes


def _normalize(text: str) -> str:
    """Case-folded, one space between words and ``", "`` between synonyms."""
    return ", ".join(" ".join(part.split()) for part in text.split(",")).casefold()


def _synonyms(name: str) -> list[str]:
    return [key for key in (" ".join(part.split()).casefold() for part in name.split(",")) if key]


@dataclass(frozen=True)
class _NameIndex:
    """Lookup tables for one list of class names, from the strongest match level to the weakest."""

    names: tuple[str, ...]
    levels: tuple[dict[str, tuple[int, ...]], ...]  # full name, first synonym, any synonym
    max_pieces: int

    @staticmethod
    def of(class_names: Sequence[str]) -> _NameIndex:
        if isinstance(class_names, str):
            raise TypeError("class_names must be a sequence of names, not a single string")
        return _build_index(tuple(class_names))

    def check_index(self, number: int) -> int:
        if not 0 <= number < len(self.names):
            raise ValueError(f"class index {number} is out of range: valid indices are 0 to {len(self.names) - 1}")
        return number

    def keys_of(self, number: int) -> set[str]:
        name = self.names[number]
        return {_normalize(name), *_synonyms(name)}

    def match(self, text: str) -> tuple[int, ...]:
        """The classes that ``text`` names at the strongest level where it names any (empty: none)."""
        key = _normalize(text)
        for level in self.levels:
            if key in level:
                return level[key]
        return ()

    def unknown_message(self, text: str) -> str:
        message = f"unknown class name {text!r}"
        close = difflib.get_close_matches(_normalize(text), list(self.levels[2]), n=5, cutoff=0.6)
        suggestions = dict.fromkeys(i for key in close for i in self.levels[2][key])
        if suggestions:
            listed = ", ".join(f"{i} ({self.names[i]!r})" for i in list(suggestions)[:5])
            message += f"; close matches: {listed}"
        return message + f"; or give a class index from 0 to {len(self.names) - 1}"


@functools.lru_cache(maxsize=8)
def _build_index(names: tuple[str, ...]) -> _NameIndex:
    if not names:
        raise ValueError("the list of class names is empty")
    full: dict[str, list[int]] = {}
    first: dict[str, list[int]] = {}
    anywhere: dict[str, list[int]] = {}
    for number, name in enumerate(names):
        synonyms = _synonyms(name)
        full.setdefault(_normalize(name), []).append(number)
        if synonyms:
            first.setdefault(synonyms[0], []).append(number)
        for key in dict.fromkeys(synonyms):
            anywhere.setdefault(key, []).append(number)
    levels = tuple({key: tuple(numbers) for key, numbers in level.items()} for level in (full, first, anywhere))
    max_pieces = max(name.count(",") + 1 for name in names)
    return _NameIndex(names, levels, max_pieces)
