"""Copies that cannot drift (diffusers' `make fix-copies` idea, as a check).

The model packages are self-contained, so a few small helpers live in several of them on purpose.
Each copy carries a comment line right above it (above its decorators):

    # Copied from coordgan.matching.PointMatches
    # Copied from coordgan.pipeline.CoordGANPipeline.to_images
    # Copied from coordgan.convert_official._shorten with coordgan->cocosnet, CoordGAN->CoCosNet

naming the source as package.module.name (a function, class, method or module-level assignment),
optionally with `old->new` text replacements applied to the source before comparing. The copy must
then equal the source line for line (indentation aside); this test prints a diff where it does not.
"""

from __future__ import annotations

import ast
import difflib
import io
import re
import textwrap
import tokenize
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MARKER = re.compile(r"^\s*# Copied from ([A-Za-z_][\w.]*)(?: with (.+?))?\s*$")
SKIP = {".git", ".venv", ".venv-ci", "runs", "outputs", "__pycache__", "node_modules"}


def python_files(root: Path = ROOT) -> list[Path]:
    return sorted(p for p in root.rglob("*.py") if not SKIP.intersection(p.relative_to(root).parts))


def _segment(text: str, node: ast.AST) -> str:
    """The node's lines, decorators included, dedented."""
    start = min([node.lineno, *(d.lineno for d in getattr(node, "decorator_list", []))])
    return textwrap.dedent("\n".join(text.splitlines()[start - 1 : node.end_lineno]))


def _statements(tree: ast.AST):
    for node in ast.walk(tree):
        body = getattr(node, "body", [])
        yield from (n for n in body if isinstance(n, ast.stmt)) if isinstance(body, list) else ()


def _named(body: list, name: str):
    for node in body:
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and node.name == name:
            return node
        targets = node.targets if isinstance(node, ast.Assign) else [getattr(node, "target", None)]
        if any(isinstance(t, ast.Name) and t.id == name for t in targets):
            return node
    return None


def source_of(dotted: str, root: Path = ROOT) -> str:
    """The source text of `package.module.name[.attribute]`; ValueError when it does not exist."""
    parts = dotted.split(".")
    for cut in range(len(parts) - 1, 0, -1):
        path = root.joinpath(*parts[:cut]).with_suffix(".py")
        if path.is_file():
            text = path.read_text()
            node = ast.parse(text)
            for name in parts[cut:]:
                node = _named(getattr(node, "body", []), name)
                if node is None:
                    raise ValueError(f"{dotted}: no {name!r} in {path.relative_to(root)}")
            return _segment(text, node)
    raise ValueError(f"{dotted}: no module file for it under {root}")


def markers(text: str) -> list[tuple[int, re.Match]]:
    """(line, match) of each `# Copied from` comment alone on its line (not in strings)."""
    tokens = tokenize.generate_tokens(io.StringIO(text).readline)
    comments = [t for t in tokens if t.type == tokenize.COMMENT and t.line.strip() == t.string]
    found = [(t.start[0], MARKER.match(t.string)) for t in comments]
    return [(line, match) for line, match in found if match]


def drift(text: str, where: str, root: Path = ROOT) -> list[str]:
    """One readable message per `# Copied from` copy in `text` (the file `where`) that differs from
    its source, or whose marker names nothing."""
    lines, tree, problems = text.splitlines(), ast.parse(text), []
    starts = {}
    for node in _statements(tree):
        start = min([node.lineno, *(d.lineno for d in getattr(node, "decorator_list", []))])
        starts.setdefault(start, node)
    for number, match in markers(text):
        following = next((n for n in range(number + 1, len(lines) + 1) if lines[n - 1].strip()), None)
        if following not in starts:
            problems.append(f"{where}:{number}: the marker is not right above a def, class or assignment")
            continue
        try:
            source = source_of(match.group(1), root)
        except ValueError as e:
            problems.append(f"{where}:{number}: {e}")
            continue
        for pair in filter(None, (p.strip() for p in (match.group(2) or "").split(","))):
            old, arrow, new = pair.partition("->")
            if not arrow:
                problems.append(f"{where}:{number}: a replacement must read old->new, got {pair!r}")
            source = source.replace(old.strip(), new.strip())
        copy = _segment(text, starts[following])
        if copy != source:
            diff = difflib.unified_diff(source.splitlines(), copy.splitlines(), match.group(1), f"{where}:{following}",
                                        lineterm="")
            problems.append(f"{where}:{number}: the copy of {match.group(1)} has drifted:\n" + "\n".join(diff))
    return problems


def test_every_marked_copy_equals_its_source():
    marked = [p for p in python_files() if "# Copied from" in p.read_text()]
    problems = [m for p in marked for m in drift(p.read_text(), str(p.relative_to(ROOT)))]
    assert not problems, "\n\n".join(problems)
    assert sum(len(markers(p.read_text())) for p in marked) >= 10


def test_a_drifted_copy_is_caught_and_shown():
    path = ROOT / "gangealing" / "losses.py"
    text = path.read_text()
    assert drift(text, "gangealing/losses.py") == []
    changed = text.replace('"Arguments other than a weight enum"', '"Arguments other than weights"')
    assert changed != text
    (problem,) = drift(changed, "gangealing/losses.py")
    assert "copy of coordgan.losses.lpips_quietly has drifted" in problem
    assert '+        warnings.filterwarnings("ignore", "Arguments other than weights", UserWarning)' in problem


def test_replacements_and_bad_markers(tmp_path):
    (tmp_path / "pkg").mkdir()
    (tmp_path / "pkg" / "source.py").write_text('class Box:\n    def area(self):\n        return "coordgan" * 2\n')
    copy = '# Copied from pkg.source.Box.area with coordgan->cocosnet\ndef area(self):\n    return "cocosnet" * 2\n'
    assert drift(copy, "copy.py", tmp_path) == []
    assert "has drifted" in drift(copy.replace("* 2", "* 3"), "copy.py", tmp_path)[0]
    assert "no 'volume'" in drift(copy.replace("Box.area", "Box.volume"), "copy.py", tmp_path)[0]
    assert "not right above" in drift("x = 1\n# Copied from pkg.source.Box\n", "copy.py", tmp_path)[0]
