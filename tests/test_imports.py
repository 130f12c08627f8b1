"""Import structure, read from the source (AST), nothing imported: the model packages and
synthetic/ never import train/ or demos/ (nor each other), and no two modules of a package
import each other, counting the imports inside function bodies too: a lazy import hides a
circle from Python, not from a reader (issue #27: each pipeline reached its converter inside
`from_official_checkpoint` while the converter imported the pipeline). One direction: the
converter knows the pipeline."""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
MODEL_PACKAGES = ("coordgan", "gangealing", "cocosnet", "coat")
LIBRARY_PACKAGES = (*MODEL_PACKAGES, "synthetic")
FORBIDDEN = ("train", "demos", "app", "tests", "bench")


def module_name(path: Path, root: Path = ROOT) -> str:
    parts = path.relative_to(root).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def resolve(module: str, is_package: bool, node, root: Path = ROOT) -> list[str]:
    """Absolute module names an import statement names (a relative `from . import x` names the
    submodule x when it exists as a file, else the package itself)."""
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    if node.level == 0:
        return [node.module]
    base = module.split(".") if is_package else module.split(".")[:-1]
    base = base[: len(base) - (node.level - 1)]
    target = ".".join(base + ([node.module] if node.module else []))
    names = []
    for alias in node.names:
        candidate = f"{target}.{alias.name}"
        file = root.joinpath(*candidate.split("."))
        names.append(candidate if file.with_suffix(".py").is_file() or (file / "__init__.py").is_file() else target)
    return names


def imports(path: Path, module_level_only: bool, root: Path = ROOT) -> set[str]:
    """Modules imported by `path`: all of them, or only those imported when the module is (the
    statements outside function bodies, including class bodies and module-level if/try)."""
    tree = ast.parse(path.read_text(), filename=str(path))
    is_package = path.name == "__init__.py"
    found = set()

    def visit(node, in_function: bool):
        for child in ast.iter_child_nodes(node):
            if isinstance(child, (ast.Import, ast.ImportFrom)) and not (module_level_only and in_function):
                found.update(resolve(module_name(path, root), is_package, child, root))
            if isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                continue  # never runs
            visit(child, in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)))

    visit(tree, False)
    return found


def package_files(package: str, root: Path = ROOT) -> list[Path]:
    return sorted((root / package).rglob("*.py"))


def import_graph(package: str, root: Path = ROOT) -> dict:
    """module -> the modules of the same package it imports anywhere (module level or in a function body)."""
    modules = {module_name(path, root): path for path in package_files(package, root)}
    graph = {}
    for name, path in modules.items():
        # an import of a package's submodule also runs the package's __init__; that edge is how
        # Python works and is no cycle, so only imports of other files of the package count
        graph[name] = {
            m
            for m in imports(path, module_level_only=False, root=root)
            if m in modules and m != name and not name.startswith(m + ".")
        }
    return graph


def cycles(graph: dict) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan), plus self-imports."""
    index, low, stack, on_stack, out, counter = {}, {}, [], set(), [], [0]

    def connect(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on_stack.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                connect(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1 or v in graph.get(v, ()):
                out.append(sorted(component))

    for v in graph:
        if v not in index:
            connect(v)
    return out


def test_the_cycle_finder_finds_cycles():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


@pytest.mark.parametrize("package", LIBRARY_PACKAGES)
def test_packages_never_import_train_demos_or_each_other(package):
    if not (ROOT / package).is_dir():
        pytest.skip(f"{package}/ is not in this checkout")
    others = [p for p in MODEL_PACKAGES if p != package]  # synthetic may be imported by evaluation code
    bad = []
    for path in package_files(package):
        for name in imports(path, module_level_only=False):
            top = name.split(".")[0]
            if top in FORBIDDEN or top in others:
                bad.append(f"{path.relative_to(ROOT)} imports {name}")
    assert not bad, "packages are self-contained (DESIGN.md): " + "; ".join(bad)


@pytest.mark.parametrize("package", [*LIBRARY_PACKAGES, "demos"])
def test_no_import_cycle_inside_a_package(package):
    if not (ROOT / package).is_dir():
        pytest.skip(f"{package}/ is not in this checkout")
    graph = import_graph(package)
    assert not cycles(graph), f"import cycles in {package}/ (imports inside functions count): {cycles(graph)}"


def test_a_circle_hidden_in_a_function_body_is_found(tmp_path):
    """The check above on a made-up package: a.py imports b at module level, b.py imports a inside a
    function (Python runs it; the circle is there all the same)."""
    package = tmp_path / "pkg"
    package.mkdir()
    (package / "__init__.py").write_text("from .a import A\n")
    (package / "a.py").write_text("from .b import helper\n\nclass A:\n    pass\n")
    (package / "b.py").write_text("def helper():\n    from .a import A  # lazy\n    return A\n")
    assert import_graph("pkg", tmp_path) == {"pkg": {"pkg.a"}, "pkg.a": {"pkg.b"}, "pkg.b": {"pkg.a"}}
    assert cycles(import_graph("pkg", tmp_path)) == [["pkg.a", "pkg.b"]]
    (package / "b.py").write_text("def helper():\n    return None\n")  # one direction only: no circle
    assert cycles(import_graph("pkg", tmp_path)) == []


def test_converters_build_on_pipelines_not_the_reverse():
    for package in ("coordgan", "gangealing", "cocosnet"):
        converter = imports(ROOT / package / "convert_official.py", module_level_only=True)
        assert f"{package}.pipeline" in converter
        for module in ("convert_official", "releases"):  # not even inside a function
            assert f"{package}.{module}" not in imports(ROOT / package / "pipeline.py", module_level_only=False)
