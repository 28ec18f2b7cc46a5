"""The built-in ImageNet class names and the rules that turn user input into class indices."""

from __future__ import annotations

import numpy as np
import pytest

from maskgit.class_names import imagenet_class_names, parse_class_list, resolve_class

NAMES = imagenet_class_names()


def test_imagenet_names_are_the_1000_classes_in_index_order():
    assert len(NAMES) == 1000
    assert NAMES[0] == "tench, Tinca tinca"
    assert NAMES[1] == "goldfish, Carassius auratus"
    assert NAMES[90] == "lorikeet"  # the official demo's default "90) lorikeet"
    assert NAMES[207] == "golden retriever"
    assert NAMES[345] == "ox"  # the official demo's edit target "345) ox"
    assert NAMES[517] == "crane"
    assert NAMES[999] == "toilet tissue, toilet paper, bathroom tissue"
    assert all(name == name.strip() and name for name in NAMES)
    assert imagenet_class_names() is NAMES  # read once


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        (90, 90),
        (np.int64(345), 345),
        ("90", 90),
        (" 0 ", 0),
        ("90) lorikeet", 90),
        ("345) ox", 345),
        ("0) tench, Tinca tinca", 0),
        ("lorikeet", 90),
        ("LORIKEET", 90),
        ("tench, Tinca tinca", 0),
        ("tench,Tinca   tinca", 0),
        ("Tinca tinca", 0),
        ("tench", 0),
        ("golden retriever", 207),
        ("bathroom tissue", 999),
        # A full name beats a synonym of another class: 'partridge' is 86, not 82's second synonym.
        ("partridge", 86),
        ("maillot", 638),
        # A first synonym beats a later one: 577 'gong, tam-tam' over 494 'chime, bell, gong'.
        ("gong", 577),
    ],
)
def test_resolve_class_accepts_indices_full_names_and_synonyms(spec, expected):
    assert resolve_class(spec, NAMES) == expected


@pytest.mark.parametrize(("spec", "number"), [(1000, "1000"), ("1000", "1000"), (-1, "-1"), ("-1", "-1")])
def test_index_out_of_range_names_the_valid_range(spec, number):
    with pytest.raises(ValueError, match=rf"class index {number} is out of range: valid indices are 0 to 999"):
        resolve_class(spec, NAMES)


def test_unknown_name_suggests_close_matches():
    with pytest.raises(ValueError) as error:
        resolve_class("lorikeat", NAMES)
    message = str(error.value)
    assert "'lorikeat'" in message
    assert "90 ('lorikeet')" in message
    assert "0 to 999" in message


def test_shared_names_are_ambiguous_and_list_the_candidates():
    with pytest.raises(ValueError, match=r"'crane' is ambiguous.*134 \('crane'\).*517 \('crane'\)"):
        resolve_class("crane", NAMES)
    # 'grass snake' is a later synonym of both 55 and 57.
    with pytest.raises(ValueError, match=r"ambiguous.*55 .*57 "):
        resolve_class("grass snake", NAMES)
    assert resolve_class("134", NAMES) == 134


def test_demo_form_must_agree_with_itself():
    with pytest.raises(ValueError, match=r"class 90 is 'lorikeet'"):
        resolve_class("90) ox", NAMES)
    assert resolve_class("517) crane", NAMES) == 517  # the index settles an ambiguous name


def test_bad_inputs_are_rejected():
    with pytest.raises(ValueError, match="empty class name"):
        resolve_class("  ", NAMES)
    with pytest.raises(TypeError):
        resolve_class(True, NAMES)
    with pytest.raises(TypeError):
        resolve_class(1.5, NAMES)
    with pytest.raises(TypeError):
        resolve_class("a", "abc")


def test_works_for_any_class_list():
    fashion = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]
    assert resolve_class("ankle boot", fashion) == 9
    assert resolve_class("3", fashion) == 3
    with pytest.raises(ValueError, match="valid indices are 0 to 9"):
        resolve_class(10, fashion)


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        (["tench, Tinca tinca"], [0]),
        (["tench, goldfish"], [0, 1]),
        (["90,345"], [90, 345]),
        (["tench, Tinca tinca, 345"], [0, 345]),
        (["tench, Tinca tinca, goldfish, Carassius auratus"], [0, 1]),
        (["Tinca tinca, goldfish"], [0, 1]),
        (["lorikeet", "ox", 207], [90, 345, 207]),
        (["ox", "ox"], [345, 345]),
        (["toilet tissue, toilet paper, bathroom tissue, ox"], [999, 345]),
        ([], []),
    ],
)
def test_parse_class_list_splits_commas_only_between_names(values, expected):
    assert parse_class_list(values, NAMES) == expected


def test_parse_class_list_names_the_bad_piece():
    with pytest.raises(ValueError, match="unknown class name 'lorikeat'"):
        parse_class_list(["ox, lorikeat"], NAMES)
    with pytest.raises(ValueError, match="empty class name in 'ox,,lorikeet'"):
        parse_class_list(["ox,,lorikeet"], NAMES)
    with pytest.raises(ValueError, match="'crane' is ambiguous"):
        parse_class_list(["ox, crane"], NAMES)
    with pytest.raises(ValueError, match="out of range"):
        parse_class_list(["ox, 1000"], NAMES)
