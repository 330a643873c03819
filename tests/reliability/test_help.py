"""Every command's help is complete and current (issue 17, item 17)."""

import argparse

import pytest

from echokdm.cli import build_parser, main


def _parsers(parser: argparse.ArgumentParser, name: str = "echokdm"):
    """``(name, parser)`` of the parser and every sub-command, nested ones included (``train seg`` ...)."""
    yield name, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub_name, sub in action.choices.items():
                yield from _parsers(sub, f"{name} {sub_name}")


PARSERS = dict(_parsers(build_parser()))


def test_the_walk_reaches_nested_commands():
    assert {"echokdm", "echokdm segment", "echokdm evaluate", "echokdm train seg", "echokdm train flow"} <= set(PARSERS)


@pytest.mark.parametrize("name", sorted(PARSERS))
def test_every_option_and_command_has_help(name):
    parser = PARSERS[name]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for choice in action._choices_actions:  # the one-line help of each sub-command
                assert choice.help and choice.help.strip(), f"{name} {choice.dest}: no help"
            continue
        label = "/".join(action.option_strings) or action.dest
        assert action.help and action.help.strip() and action.help != argparse.SUPPRESS, f"{name} {label}: no help"


@pytest.mark.parametrize("name", sorted(PARSERS))
def test_help_text_has_no_stale_or_escaped_text(name):
    text = PARSERS[name].format_help()
    assert "%%" not in text, f"{name}: a doubled percent sign in its help"
    assert "later release" not in text.lower(), f"{name}: promises features 'in later releases'"


def test_top_level_help_says_what_the_toolkit_does(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert "Key-point guided Diffusion Model" in out and "seg_phantom_112" in out


def test_mode_defaults_are_explained_where_they_differ():
    """evaluate defaults to per_frame, generate/synthesize to gamma: evaluate's help says why."""
    modes = {}
    for name in ("echokdm evaluate", "echokdm generate", "echokdm synthesize"):
        action = next(a for a in PARSERS[name]._actions if "--mode" in a.option_strings)
        modes[name] = action
    defaults = {name: a.default for name, a in modes.items()}
    if len(set(defaults.values())) > 1:
        text = modes["echokdm evaluate"].help
        assert "Table 3" in text and "generate and synthesize" in text, text
