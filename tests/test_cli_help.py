"""Every command's ``--help`` shows the default of every option that has one."""

from __future__ import annotations

import argparse

import pytest

from maskgit.cli import build_parser


def _commands():
    parser = build_parser()
    subparsers = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return sorted(subparsers.choices.items())


@pytest.mark.parametrize("name, command", _commands(), ids=[name for name, _ in _commands()])
def test_help_shows_every_default(name, command):
    help_page = command.format_help()
    text = " ".join(help_page[help_page.index("options:"):].split())  # past the usage line
    for action in command._actions:
        if not action.option_strings or action.default in (None, False, argparse.SUPPRESS):
            continue
        if isinstance(action, argparse._HelpAction):
            continue
        flag = action.option_strings[-1]
        entry = text[text.index(flag + " "):]
        help_text = " ".join((action.help or "").split())
        assert "default" in entry[: len(help_text) + 120].lower(), f"{name} {flag}: no default in --help"
