"""The shape of the package (issue 11, "a layout a newcomer can live in"):

- every module of rltasks/ imports on its own, first, in a fresh interpreter;
- the static import graph (every ``import`` statement, function-local ones included) has no
  cycle and follows the layers: commands > orion > trial > tasks > the Task base > envs and
  blocks; a module imports its own layer or lower ones only (``rltasks/__init__.py``, the
  public facade, is exempt);
- no function is over 60 lines;
- ``rltasks.commands.cli`` dispatches through its ``COMMANDS`` table, with a short ``main``;
- the "Module map" of docs/design.md names every module, and only modules.

Each check prints every offender it finds.
"""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import ROOT, environ

PACKAGE = ROOT / "rltasks"
MAX_FUNCTION_LINES = 60
MAX_MAIN_LINES = 24  # "under 25"
FACADE = "rltasks"  # rltasks/__init__.py: make_task and known_tasks, exempt from the layers
#: (rank, layer, module prefixes): a module may import modules of its rank or lower
LAYERS = [
    (7, "commands", ("rltasks.commands", "rltasks.__main__")),
    (6, "orion", ("rltasks.orion",)),
    (5, "trial", ("rltasks.trial",)),
    (4, "population", ("rltasks.population",)),
    (3, "tasks", ("rltasks.tasks",)),
    (2, "the Task base", ("rltasks.task",)),
    (1, "envs and blocks", ("rltasks.envs", "rltasks.hparams", "rltasks.nets",
                            "rltasks.buffers", "rltasks.explore", "rltasks.checkpoint",
                            "rltasks.optim", "rltasks.device", "rltasks.failpoints",
                            "rltasks.safeio")),
]


def module_name(path: Path) -> str:
    """``rltasks/tasks/ppo.py`` -> ``rltasks.tasks.ppo``; a package's ``__init__.py`` is the
    package."""
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = {module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}

# Runs in a fresh interpreter: imports each module named on the command line with every
# module of the package (argv[1]) dropped from sys.modules first, so that each is the first of
# its package to be imported, as in a fresh interpreter (third-party modules stay loaded:
# that keeps it fast and changes nothing for an import cycle inside the package). A
# ``__main__`` module runs its command when imported: only its import statements run. Each
# source file is compiled once (the tests may run without bytecode files).
# Prints {module: the end of its traceback} for those that fail.
IMPORT_EACH = r"""
import ast, contextlib, importlib, importlib.machinery, importlib.util, io, json, sys, traceback
package, names = sys.argv[1], sys.argv[2:]
compiled, compile_source = {}, importlib.machinery.SourceFileLoader.source_to_code

def source_to_code(self, data, path, *, _optimize=-1):
    if (path, data) not in compiled:
        compiled[path, data] = compile_source(self, data, path, _optimize=_optimize)
    return compiled[path, data]

importlib.machinery.SourceFileLoader.source_to_code = source_to_code
failures = {}
for name in names:
    for loaded in [m for m in sys.modules if m == package or m.startswith(package + ".")]:
        del sys.modules[loaded]
    try:
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            if name.endswith(".__main__"):
                importlib.import_module(name.rpartition(".")[0])
                origin = importlib.util.find_spec(name).origin
                tree = ast.parse(open(origin).read(), origin)
                tree.body = [n for n in tree.body if isinstance(n, (ast.Import, ast.ImportFrom))]
                exec(compile(tree, origin, "exec"), {"__name__": name})
            else:
                importlib.import_module(name)
    except BaseException:
        failures[name] = "".join(traceback.format_exc().splitlines(True)[-6:])
print(json.dumps(failures))
"""


def failing_imports(package: str, names: list[str], path: Path) -> dict[str, str]:
    """The modules of ``names`` that fail to import first (``IMPORT_EACH``), from ``path``."""
    import json

    proc = subprocess.run([sys.executable, "-c", IMPORT_EACH, package, *names], cwd=path,
                          env=environ(PYTHONPATH=str(path), PYTHONWARNINGS="ignore"),
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_the_import_check_catches_a_cycle_that_shows_only_when_its_module_comes_first(
        tmp_path):
    """``pkg.a`` imports fine after ``pkg.b`` but not first: the check must see it."""
    pkg = tmp_path / "pkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text("from pkg.b import B\nA = 1\n")
    (pkg / "b.py").write_text("B = 2\nfrom pkg.a import A\n")
    (pkg / "__main__.py").write_text("import pkg.b\nraise SystemExit('ran the command')\n")
    found = failing_imports("pkg", ["pkg.b", "pkg.a", "pkg.__main__"], tmp_path)
    assert set(found) == {"pkg.a"}, found


def test_every_module_imports_on_its_own_in_a_fresh_interpreter():
    failures = failing_imports("rltasks", sorted(MODULES), ROOT)
    assert not failures, f"{len(failures)} module(s) fail to import first:\n" + "\n".join(
        f"--- {name}\n{error}" for name, error in failures.items())


def imported_modules(name: str, path: Path) -> list[tuple[str, int]]:
    """(module of the package, line) of every import in module ``name``, function-local ones
    included: ``from rltasks import checkpoint`` is the module rltasks.checkpoint,
    ``from rltasks.tasks import REGISTRY`` the package rltasks.tasks."""
    found = []
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(encoding="utf8"), str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.rsplit(".", node.level - 1)[0] if node.level > 1 else package
                base = f"{anchor}.{base}" if base else anchor
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in MODULES else base
                       for a in node.names]
        else:
            continue
        for target in targets:
            while target and target not in MODULES:  # rltasks.x.name -> rltasks.x
                target = target.rpartition(".")[0]
            if target and target != name:
                found.append((target, node.lineno))
    return found


def import_edges() -> list[tuple[str, str, int]]:
    """(importer, imported, line) between the package's modules, the facade left out."""
    return sorted({(name, target, line) for name, path in MODULES.items() if name != FACADE
                   for target, line in imported_modules(name, path) if target != FACADE})


def cycles(edges: list[tuple[str, str, int]]) -> list[list[str]]:
    """The strongly connected groups of more than one module (Tarjan's algorithm)."""
    graph: dict[str, set[str]] = {}
    for src, dst, _ in edges:
        graph.setdefault(src, set()).add(dst)
        graph.setdefault(dst, set())
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    groups: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for nxt in sorted(graph[node]):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            group = []
            while (top := stack.pop()) != node:
                group.append(top)
            group.append(node)
            if len(group) > 1:
                groups.append(sorted(group))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return groups


def test_the_static_import_graph_has_no_cycle():
    edges = import_edges()
    found = cycles(edges)
    lines = [f"cycle between {', '.join(group)}:\n" + "\n".join(
        f"  {src} -> {dst} ({MODULES[src].relative_to(ROOT)}:{line})"
        for src, dst, line in edges if src in group and dst in group) for group in found]
    assert not found, "\n".join(lines)


def layer_of(name: str) -> tuple[int, str] | None:
    for rank, layer, prefixes in LAYERS:
        if any(name == p or name.startswith(p + ".") for p in prefixes):
            return rank, layer
    return None


def test_imports_flow_down_the_layers():
    unplaced = [f"{name} ({MODULES[name].relative_to(ROOT)}) is in no layer: add it to LAYERS"
                for name in MODULES if name != FACADE and layer_of(name) is None]
    upward = []
    for src, dst, line in import_edges():
        (src_rank, src_layer), (dst_rank, dst_layer) = layer_of(src) or (0, "?"), layer_of(
            dst) or (0, "?")
        if dst_rank > src_rank:
            upward.append(f"{src} ({src_layer}) imports {dst} ({dst_layer}) at "
                          f"{MODULES[src].relative_to(ROOT)}:{line}")
    assert not unplaced and not upward, "\n".join(
        [*unplaced, f"{len(upward)} import(s) against the layers:", *upward])


def test_no_function_is_over_60_lines():
    long = []
    for path in MODULES.values():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf8"), str(path))):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                length = node.end_lineno - node.lineno + 1
                if length > MAX_FUNCTION_LINES:
                    long.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.name}: "
                                f"{length} lines")
    assert not long, f"{len(long)} function(s) over {MAX_FUNCTION_LINES} lines:\n" + "\n".join(
        long)


def test_the_cli_dispatches_through_its_table_of_subcommands(capsys):
    from rltasks.commands import cli

    path = PACKAGE / "commands" / "cli.py"
    tree = ast.parse(path.read_text(encoding="utf8"), str(path))
    table = [node for node in tree.body if isinstance(node, ast.Assign | ast.AnnAssign)
             and "COMMANDS" in [t.id for t in (node.targets if isinstance(node, ast.Assign)
                                               else [node.target]) if isinstance(t, ast.Name)]]
    assert table, "rltasks/commands/cli.py has no module-level COMMANDS table"
    assert isinstance(cli.COMMANDS, dict)
    with pytest.raises(SystemExit):
        cli.main(["--help"])
    usage = re.search(r"\{([\w,-]+)\}", capsys.readouterr().out)
    assert usage, "rltasks --help names no subcommands"
    assert set(usage.group(1).split(",")) == set(cli.COMMANDS)  # every subcommand, no other
    handlers = {name: entry if callable(entry) else getattr(entry, "handler", None)
                for name, entry in cli.COMMANDS.items()}
    assert all(callable(h) for h in handlers.values()), f"not callable: {handlers}"
    (main,) = [n for n in tree.body if isinstance(n, ast.FunctionDef) and n.name == "main"]
    length = main.end_lineno - main.lineno + 1
    assert length <= MAX_MAIN_LINES, f"cli.main is {length} lines; under 25 dispatch a table"
    assert any(isinstance(n, ast.Name) and n.id == "COMMANDS" for n in ast.walk(main)), (
        "cli.main does not dispatch through COMMANDS")


def test_the_module_map_of_the_design_doc_names_exactly_the_modules():
    design = ROOT / "docs" / "design.md"
    assert design.is_file(), "docs/design.md is missing"
    section = re.search(r"^## Module map[ \t]*\n(.*?)(?=^## |\Z)",
                        design.read_text(encoding="utf8"), flags=re.S | re.M)
    assert section, 'docs/design.md has no "## Module map" section'
    blocks = re.findall(r"^[ \t]*```[^\n]*\n(.*?)^[ \t]*```", section.group(1), flags=re.S | re.M)
    assert len(blocks) == 1, f"the Module map holds {len(blocks)} fenced code blocks, not one"
    named = set()
    for line in blocks[0].splitlines():
        token = line.split()[0] if line.split() else ""
        if token.startswith("rltasks/"):
            named.add(token + "__init__.py" if token.endswith("/") else token)
    files = {path.relative_to(ROOT).as_posix() for path in MODULES.values()}
    missing, extra = sorted(files - named), sorted(named - files)
    assert not missing and not extra, (
        f"missing from the Module map: {missing or 'none'}\n"
        f"named by the Module map but not a module: {extra or 'none'}")
