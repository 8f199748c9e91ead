"""Packaging: the runtime install stays free of the test stack, CI runs README's commands,
and the build metadata is the non-deprecated form. Reads files only (no pip, no network)."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

tomllib = pytest.importorskip("tomllib")  # Python 3.11+

ROOT = Path(__file__).resolve().parents[2]
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
TEST_STACK = {"torch", "transformers", "accelerate", "pytest", "hypothesis", "sentencepiece"}


def _name(req: str) -> str:
    return re.split(r"[\s<>=!~;\[(]", req, maxsplit=1)[0].lower()


def test_runtime_dependencies_exclude_the_test_stack():
    runtime = {_name(r) for r in PYPROJECT["project"]["dependencies"]}
    assert not runtime & TEST_STACK
    assert {_name(r) for r in PYPROJECT["project"]["optional-dependencies"]["test"]} >= {"torch", "transformers", "pytest"}


def test_torch_pinned_exactly_once_in_the_test_extra():
    # scripts/test.sh reads this pin with sed: one `"torch==X",` line in pyproject.toml.
    pins = re.findall(r'^ *"torch==([^"]+)"', (ROOT / "pyproject.toml").read_text(), flags=re.M)
    assert len(pins) == 1 and re.fullmatch(r"\d+\.\d+\.\d+", pins[0])
    assert f"torch=={pins[0]}" in PYPROJECT["project"]["optional-dependencies"]["test"]


def test_license_is_an_spdx_string_and_setuptools_supports_it():
    assert PYPROJECT["project"]["license"] == "Apache-2.0"
    (req,) = [r for r in PYPROJECT["build-system"]["requires"] if _name(r) == "setuptools"]
    m = re.search(r">=\s*(\d+)", req)
    assert m and int(m.group(1)) >= 77  # setuptools 77: `project.license` as an SPDX expression


def _readme_command(heading: str) -> str:
    text = (ROOT / "README.md").read_text()
    section = re.search(rf"^## {heading}.*?$(.*?)(?=^## |\Z)", text, flags=re.M | re.S)
    assert section, f"README has no '## {heading}' section"
    block = re.search(r"```bash\n(.*?)```", section.group(1), flags=re.S)
    assert block, f"README's {heading} section has no bash block"
    (command,) = [line for line in block.group(1).splitlines() if line.strip() and not line.startswith("#")]
    return command.strip()


def test_ci_runs_readmes_install_then_test_command():
    ci = [line.strip() for line in (ROOT / ".ci/run").read_text().splitlines()
          if line.strip() and not line.lstrip().startswith(("#", "set ", "cd ", "export "))]
    assert ci == [_readme_command("Install"), _readme_command("Tests")]


@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
@pytest.mark.parametrize("script", ["scripts/_common.sh", "scripts/install.sh", "scripts/test.sh", ".ci/run"])
def test_scripts_parse(script):
    subprocess.run(["bash", "-n", str(ROOT / script)], check=True)
