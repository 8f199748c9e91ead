"""The layering holds: errors <- gpu <- kernels <- model <- plan/runtime <- api <- server/cli.

Every import in every module of the package (also the ones inside functions) is read with
`ast`; a module may import its own layer and those below it, and production code never
imports wgllm.testing.
"""

import ast
from pathlib import Path

import pytest

import wgllm

ROOT = Path(wgllm.__file__).parent
RANK = {"errors": 0, "gpu": 1, "kernels": 2, "model": 3, "plan": 4, "runtime": 4, "hub": 4, "api": 5,
        "server": 6, "cli": 6, "doctor": 6, "__main__": 7, "__init__": 7}


def _layer(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def _imports(path: Path) -> list[str]:
    tree = ast.parse(path.read_text("utf-8"))
    pkg = "wgllm." + ".".join(path.relative_to(ROOT).with_suffix("").parts[:-1])
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = pkg.rsplit(".", node.level - 1)[0] if node.level > 1 else pkg
                out.append(f"{base}.{node.module}" if node.module else base)
            elif node.module == "wgllm":  # from wgllm import hub: the submodule's layer
                out += [f"wgllm.{a.name}" for a in node.names]
            else:
                out.append(node.module or "")
    return [m for m in out if m == "wgllm" or m.startswith("wgllm.")]


MODULES = sorted(p for p in ROOT.rglob("*.py"))


@pytest.mark.parametrize("path", MODULES, ids=[str(p.relative_to(ROOT)) for p in MODULES])
def test_imports_point_down(path):
    me = "wgllm." + ".".join(path.relative_to(ROOT).with_suffix("").parts)
    mine = _layer(me)
    if mine == "testing":
        return  # test helpers may import anything
    for target in _imports(path):
        if target == "wgllm":
            continue  # the package root (its __version__); it imports its API lazily
        layer = _layer(target)
        assert layer != "testing", f"{me} imports {target}: production code never imports wgllm.testing"
        assert RANK[layer] <= RANK[mine], f"{me} ({mine}) imports {target} ({layer}), a higher layer"
