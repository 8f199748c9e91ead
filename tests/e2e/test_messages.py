"""Every command and option that a user-facing message names exists.

Messages are the string literals of wgllm's source (docstrings and comments excluded): a
`wgllm NAME ...` must be a subcommand of the CLI, each --option it names must be an option of
that subcommand, and an option named in passing, like "(--ctx)", an option of some subcommand.
"""

import ast
import re
from pathlib import Path

import pytest

import wgllm
from wgllm import hub
from wgllm.cli import build_parser
from wgllm.errors import ModelNotFoundError

SRC = Path(wgllm.__file__).parent
PIP_FLAGS = {"--no-deps", "--only-binary", "--disable-pip-version-check", "--retries"}  # hub's `pip download`


def _subcommands() -> dict[str, set[str]]:
    """Each subcommand's options (with the top-level ones, like --version)."""
    parser = build_parser()
    top = {o for a in parser._actions for o in a.option_strings}
    sub = parser._subparsers._group_actions[0]
    return {name: top | {o for a in p._actions for o in a.option_strings} for name, p in sub.choices.items()}


def _message_strings() -> list[tuple[str, str]]:
    """(file:line, text) of every string literal in the package that is not a docstring (an f-string's
    fields read as {}; adjacent literals are one constant already)."""
    found = []
    for path in sorted(SRC.rglob("*.py")):
        tree = ast.parse(path.read_text(), str(path))
        skip = set()
        for node in ast.walk(tree):
            if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
                body = node.body
                if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                    skip.add(id(body[0].value))
            if isinstance(node, ast.JoinedStr):
                skip.update(id(v) for v in node.values)
                text = "".join(v.value if isinstance(v, ast.Constant) else "{}" for v in node.values)
                found.append((f"{path.relative_to(SRC)}:{node.lineno}", text))
        for node in ast.walk(tree):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in skip:
                found.append((f"{path.relative_to(SRC)}:{node.lineno}", node.value))
    return found


def test_messages_name_only_existing_commands_and_options():
    commands = _subcommands()
    every_option = set().union(*commands.values())
    bad = []
    for where, text in _message_strings():
        for m in re.finditer(r"`wgllm ([a-z][a-z-]*)([^`]*)`", text):
            name, rest = m.group(1), m.group(2)
            if name not in commands:
                bad.append(f"{where}: `wgllm {name}` is not a command")
                continue
            bad += [f"{where}: `wgllm {name}` has no option {o}"
                    for o in re.findall(r"--[a-z][a-z0-9-]*", rest) if o not in commands[name]]
        bad += [f"{where}: no command has the option {o}" for o in re.findall(r"(?<![\w-])--[a-z][a-z0-9-]*", text)
                if o not in every_option and o not in PIP_FLAGS]
    assert not bad, "\n".join(bad)


def test_missing_model_file_points_to_wgllm_models(tmp_path, monkeypatch):
    monkeypatch.setenv("WGLLM_HOME", str(tmp_path))
    with pytest.raises(ModelNotFoundError) as info:
        hub.resolve_model(str(tmp_path / "missing.gguf"))
    assert "`wgllm models`" in info.value.message and "wgllm list" not in info.value.message
