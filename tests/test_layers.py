"""Imports run one way: deployments -> serve_app.api -> the pipeline -> engine, diarization,
models, jobs -> the shared modules at serve_app's top. Read from the source, so that a wrong
import fails here before it makes a cycle."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SHARED = {
    "serve_app.settings",
    "serve_app.errors",
    "serve_app.transcript",
    "serve_app.formats",
    "serve_app.languages",
    "serve_app.options",
    "serve_app.metrics",
}
LIBRARY = ("serve_app.engine", "serve_app.diarization", "serve_app.models", "serve_app.jobs")
ABOVE_THE_LIBRARY = ("serve_app.api", "serve_app.batch", "serve_app.pipeline", "serve_app.client", "serve_app.local")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path) -> set[str]:
    """What a module imports when it runs (imports for type checkers alone left out)."""
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and ast.unparse(node.test) in ("TYPE_CHECKING", "typing.TYPE_CHECKING"):
            node.body = []
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return {name for name in found if name.split(".")[0] in ("serve_app", "deployments")}


MODULES = {module_name(path): imports(path) for path in sorted((ROOT / "serve_app").rglob("*.py"))}


def under(name: str, packages: tuple[str, ...] | set[str]) -> bool:
    return any(name == package or name.startswith(package + ".") for package in packages)


@pytest.mark.parametrize("module", sorted(MODULES))
def test_imports_run_one_way(module: str) -> None:
    imported = MODULES[module]
    assert not any(under(name, ("deployments",)) for name in imported), "the library never imports the Serve layer"
    if module in SHARED:
        assert imported <= SHARED, f"a shared module imports a layer: {sorted(imported - SHARED)}"
    if under(module, LIBRARY):
        wrong = sorted(name for name in imported if under(name, ABOVE_THE_LIBRARY))
        assert not wrong, f"{module} reaches up into {wrong}"
    if under(module, ("serve_app.api",)):
        assert not any(under(name, ("serve_app.batch",)) for name in imported)


def test_every_deployment_has_its_own_file_and_the_graph_is_built_there() -> None:
    files = {path.stem for path in (ROOT / "deployments").glob("*.py")} - {"__init__"}
    assert files == {"app", "ingress", "transcriber", "diarizer", "model_store", "job_queue", "multiplexing", "metrics"}
    assert "serve.deployment" not in "".join(path.read_text() for path in (ROOT / "serve_app").rglob("*.py"))
