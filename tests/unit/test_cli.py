"""The CLI surface: --version, --help, and every subcommand's --help shows examples."""

from __future__ import annotations

import subprocess

import pytest
from fieldlink_host import __version__
from fieldlink_host.cli import build_parser, main


def subcommands() -> list[str]:
    parser = build_parser()
    for action in parser._actions:  # argparse keeps subparsers here
        if action.__class__.__name__ == "_SubParsersAction":
            return sorted(action.choices)  # type: ignore[attr-defined]
    return []


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as ei:
        main(["--version"])
    assert ei.value.code == 0
    assert capsys.readouterr().out.strip() == f"fieldlink {__version__}"


def test_console_script_help() -> None:
    proc = subprocess.run(["fieldlink", "--help"], capture_output=True, text=True)
    assert proc.returncode == 0 and "examples:" in proc.stdout


def test_subcommands_registered() -> None:
    names = subcommands()
    assert "boards" in names and len(names) >= 1


@pytest.mark.parametrize("name", subcommands())
def test_every_subcommand_help_has_examples(name: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as ei:
        main([name, "--help"])
    assert ei.value.code == 0
    out = capsys.readouterr().out
    assert "example" in out.lower() and "fieldlink " + name in out


def test_no_command_prints_help(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 2
    assert "usage:" in capsys.readouterr().out
