"""Turning a submission's path into the Python source a worker will run. Nothing here executes the submission.

A ``.py`` file runs as it is. A notebook runs as Jupyter's "Run All" would: every code cell in order, each
within a time budget (:data:`CELL_SECONDS`). The worker stops a cell that runs longer, raises, or makes a call
the grader refuses (``loss.backward()`` in a training cell), names it in the report, and runs the cells after
it (see ``_worker.py``). ``definitions_only=True`` keeps only *definitions* instead (imports, ``def``,
``class``, and assignments of plain constants), as one program. Either way ``%%time``/``%%capture`` cells keep
their body, ``%time stmt`` keeps ``stmt``, other IPython-only syntax (magics, ``!shell`` lines, ``?`` help) is
dropped, and every line keeps a way back to its cell and line in the notebook, for messages.
"""

from __future__ import annotations

import ast
import bisect
import builtins
import dataclasses
import importlib.util
import io
import os
import re
import stat
import tokenize
from dataclasses import dataclass
from pathlib import Path

from gradcheckers._worker import BLOCKED_PACKAGES
from gradcheckers.errors import LoadError

__all__ = ["SubmissionSource", "load_error", "load_source", "resolve_submission"]

EXAMPLES = Path(__file__).with_name("examples")
SUFFIXES = (".py", ".ipynb")
# Largest submission read: a homework is kilobytes of code; 16 MiB still holds a notebook with embedded plots,
# and the parent never holds more than that of a file a student controls.
MAX_SOURCE_BYTES = 16 * 2**20
# Sibling modules a submission may import: a homework splits into a few helper files; 32 files and 1 MiB of
# code in all is far more than that, and bounds what the grader reads and sends per student.
MAX_SIBLINGS = 32
MAX_SIBLING_BYTES = 2**20
# Time budget of one notebook cell. A cell that imports, defines functions or sets up tensors runs in well under
# a second (torch is already imported in the worker's fork server); 5 s leaves a margin of 5x on a loaded machine,
# and eleven cut-off cells still fit in the 60 s load timeout of the command line (--load-timeout), which bounds
# the total whatever the cells do.
CELL_SECONDS = 5.0
# Cell magics whose body is Python to run; any other (%%bash, %%writefile, %%html…) leaves the cell to IPython.
PYTHON_CELL_MAGICS = ("time", "timeit", "capture", "prun")
# Line magics whose argument is a Python statement to run (`%time loss = f(x)`), with the options each takes
# before the statement (IPython's `%timeit?` and `%prun?`): flags alone, and flags followed by a value.
PYTHON_LINE_MAGICS = ("time", "timeit", "prun")
_MAGIC_OPTIONS = {
    "time": re.compile(r""),
    "timeit": re.compile(r"(?:-[nrp]\s*\d+\s+|-[tcqo]\s+)*"),
    "prun": re.compile(r"(?:-[lsTD]\s*\S+\s+|-[rq]\s+)*"),
}


def load_error(message: str, reason: str) -> LoadError:
    """A LoadError that also carries a short machine-readable ``reason`` (e.g. "syntax", "forbidden")."""
    return LoadError(message, reason)


@dataclass(frozen=True)
class SubmissionSource:
    """The code of one submission, ready to be sent to a worker, and the way back to the file's own lines."""

    path: Path
    code: str
    filename: str
    # Notebooks only: (first line of the cell in `code`, the cell's number in the notebook, counting from 1
    # and counting markdown cells too, as a student counts them when scrolling).
    cells: tuple[tuple[int, int], ...] = ()
    # Notebooks only: (name, line in `code`) for names bound by top-level statements that were not kept, so a
    # NameError at call time can say where the name was meant to come from.
    skipped: tuple[tuple[str, int], ...] = ()
    # Modules of the submission's own folder it may import (name, source), read here and handed to the worker,
    # which cannot read the folder itself; empty unless asked for (``sibling_imports=True``).
    siblings: tuple[tuple[str, str], ...] = ()
    # Notebooks run cell by cell: (the cell's number, its first line in `code`, its number of lines) for each
    # cell with code to run; empty for a .py file and with ``definitions_only``, which run `code` as one program.
    # Lines of `code` after the last cell (an assignment's adapter) run after the cells, as one program.
    run_cells: tuple[tuple[int, int, int], ...] = ()

    @property
    def is_notebook(self) -> bool:
        return self.path.suffix.lower() == ".ipynb"

    def locate(self, lineno: int) -> str:
        """Where line ``lineno`` of :attr:`code` is in the file: "line 7", or "cell 3, line 2" in a notebook."""
        cell, line = self.position(lineno)
        return f"line {line}" if cell is None else f"cell {cell}, line {line}"

    def position(self, lineno: int) -> tuple[int | None, int]:
        """Line ``lineno`` of :attr:`code` as (its notebook cell's number, its line in that cell); (None,
        ``lineno``) in a .py file or outside any cell."""
        index = bisect.bisect_right([start for start, _ in self.cells], lineno) - 1
        if not self.is_notebook or index < 0:
            return None, lineno
        start, number = self.cells[index]
        return number, lineno - start + 1

    def line(self, lineno: int) -> str:
        """The text of line ``lineno`` of :attr:`code`, stripped; "" when there is no such line."""
        lines = self.code.splitlines()
        return lines[lineno - 1].strip() if 1 <= lineno <= len(lines) else ""

    def skipped_binding(self, name: str) -> int | None:
        """The line of a skipped notebook statement that would have bound ``name``, if there was one."""
        return next((lineno for bound, lineno in self.skipped if bound == name), None)


def resolve_submission(spec: str) -> Path:
    """A path that exists, else a bundled example: ``seed`` (the homework's formulas, ``models/seed.py``) or
    ``gradcheckers/examples/<spec>.py``."""
    path = Path(spec)
    if path.exists():
        return path
    if spec == "seed":
        # The homework's own formulas live once, in models/seed.py (installed as gradcheckers.models.seed),
        # where the tests import them too. find_spec locates it without importing torch.
        import importlib.util

        found = importlib.util.find_spec("gradcheckers.models.seed")
        assert found is not None and found.origin is not None
        return Path(found.origin)
    for suffix in SUFFIXES:
        example = EXAMPLES / f"{spec}{suffix}"
        if os.sep not in spec and "/" not in spec and example.is_file():
            return example
    bundled = {p.stem for p in EXAMPLES.glob("*") if p.suffix in SUFFIXES and not p.stem.startswith("_")}
    names = sorted({"seed"} | bundled)
    known = ", ".join(names) if names else "none are installed"
    raise load_error(
        f"no such file: {spec} (and no bundled example of that name; the bundled examples are: {known})",
        "not-found",
    )


def load_source(
    path: str | os.PathLike[str],
    *,
    definitions_only: bool = False,
    root: str | os.PathLike[str] | None = None,
    sibling_imports: bool = False,
) -> SubmissionSource:
    """Read a ``.py`` or ``.ipynb`` submission and check that it compiles; raises LoadError when it cannot.

    A notebook runs every cell, one by one (:attr:`SubmissionSource.run_cells`); with ``definitions_only``,
    only its imports, definitions and plain constants, as one program.

    Only a regular file is read, and a symbolic link only when it leads to a file inside ``root`` (default:
    the folder the path names, e.g. the submissions folder), so a link to an instructor's solution or to
    ``/etc/passwd`` is refused before a byte of it is read, and a FIFO or a device never blocks the grader.
    With ``sibling_imports``, the ``.py`` modules beside the submission (at most :data:`MAX_SIBLINGS` of them,
    :data:`MAX_SIBLING_BYTES` in all) come along, so that ``import helpers`` works in the worker.
    """
    path = Path(path)
    if not path.exists() and not path.is_symlink():
        raise load_error(f"no such file: {path}", "not-found")
    if path.is_dir():
        raise load_error(f"{path} is a directory: expected a .py or .ipynb file", "not-found")
    # Case-insensitive, as `grade` finds submissions: sam.PY is a Python file.
    if path.suffix.lower() not in SUFFIXES:
        raise load_error(f"expected a .py or .ipynb file, got {path.name}", "not-found")
    check_regular_file(path, Path(root) if root is not None else path.parent)
    if path.suffix.lower() == ".py":
        source = SubmissionSource(path=path, code=_read_text(path), filename=str(path))
    else:
        source = _notebook_source(path, definitions_only=definitions_only)
    _compile(source.code, source)
    if sibling_imports:
        source = dataclasses.replace(source, siblings=_siblings(path, Path(root) if root is not None else path.parent))
    return source


def _siblings(path: Path, root: Path) -> tuple[tuple[str, str], ...]:
    """The importable ``.py`` modules in the submission's folder, regular files inside ``root`` only."""
    found: list[tuple[str, str]] = []
    total = 0
    for candidate in sorted(path.parent.glob("*.py")):
        name = candidate.stem
        if candidate.name == path.name or not name.isidentifier() or name.partition(".")[0] in BLOCKED_PACKAGES:
            continue
        if len(found) == MAX_SIBLINGS:
            message = f"{path.parent} holds more than {MAX_SIBLINGS} modules: submit only your own"
            raise load_error(message, "unreadable")
        check_regular_file(candidate, root)
        code = _read_text(candidate)
        total += len(code.encode("utf-8", "surrogatepass"))
        if total > MAX_SIBLING_BYTES:
            raise load_error(
                f"the modules beside {path.name} hold more than {MAX_SIBLING_BYTES // 2**20} MiB of code", "unreadable"
            )
        found.append((name, code))
    return tuple(found)


def read_text(path: Path) -> str:
    """A submission's text, read as the gate reads it (bounded, never blocking; LoadError when it cannot)."""
    return _read_text(path)


def sibling_modules(path: Path, root: Path) -> tuple[tuple[str, str], ...]:
    """The ``.py`` modules beside ``path`` that it may import, read under the rules of :func:`load_source`."""
    return _siblings(path, root)


def check_regular_file(path: Path, root: Path) -> None:
    """Refuse (LoadError "unreadable") anything but a regular file inside ``root``, before it is opened."""
    try:
        target = path.resolve(strict=True)
        mode = os.stat(target).st_mode
    except (OSError, RuntimeError):  # a dangling link, a loop of links
        raise load_error(f"{path} is a link that leads nowhere: submit the file itself", "unreadable") from None
    if path.is_symlink() and not target.is_relative_to(root.resolve()):
        raise load_error(
            f"{path} is a symbolic link leading outside {root}: submit the file itself, not a link to it",
            "unreadable",
        )
    if not stat.S_ISREG(mode):
        raise load_error(f"{path} is not a regular file (a FIFO, a socket or a device): submit a file", "unreadable")


def _read_text(path: Path) -> str:
    try:
        # O_NONBLOCK: should the file have been swapped for a FIFO since the check, opening it cannot block;
        # the fstat below then refuses it.
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        with os.fdopen(fd, "rb") as handle:
            if not stat.S_ISREG(os.fstat(handle.fileno()).st_mode):
                raise load_error(f"{path} is not a regular file: submit a file", "unreadable")
            data = handle.read(MAX_SOURCE_BYTES + 1)
    except OSError as exc:
        raise load_error(f"cannot read {path}: {exc.strerror or exc}", "unreadable") from None
    if len(data) > MAX_SOURCE_BYTES:
        raise load_error(f"{path} is larger than {MAX_SOURCE_BYTES // 2**20} MiB: submit only the code", "unreadable")
    try:
        # utf-8-sig: editors on Windows start files with a byte-order mark, which compile() rejects.
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise load_error(
            f"{path} is not valid UTF-8 (byte {data[exc.start]:#04x} at offset {exc.start}): save it as UTF-8",
            "unreadable",
        ) from None


def _compile(code: str, source: SubmissionSource, offset: int = 0, *, cell: bool = False) -> ast.Module:
    """Parse and compile ``code``: all of a submission, or (``cell``) one notebook cell, which is only parsed,
    and whose first line is line ``offset + 1`` of the submission's code."""
    # A filename that is no file: for one that exists, CPython recomputes a SyntaxError's offset from the
    # file's own line, and a notebook's file is JSON.
    try:
        tree = ast.parse(code, "<submission>")
        if not cell:
            compile(tree, "<submission>", "exec", dont_inherit=True)
        return tree
    except SyntaxError as exc:
        where = source.locate((exc.lineno or 1) + offset)
        lines = code.splitlines()
        text = lines[exc.lineno - 1] if exc.lineno and 0 < exc.lineno <= len(lines) else ""
        shown = ""
        if text.strip():
            indent = len(text) - len(text.lstrip())
            caret = " " * max((exc.offset or 1) - 1 - indent, 0) + "^"
            shown = f"\n    {text.strip()}\n    {caret}"
        raise load_error(f"{source.path}: syntax error at {where}: {exc.msg}{shown}", "syntax") from None
    except (ValueError, RecursionError, MemoryError) as exc:  # null bytes; absurdly deep nesting
        raise load_error(f"{source.path} cannot be compiled: {exc}", "syntax") from None


# ---------------------------------------------------------------------------------------------------------
# Notebooks.

# IPython syntax that is not Python: `%magic`, `!shell`, `x = !shell`, `x = %magic`, `?name`, `name?`, `name??`.
_MAGIC_LINE = re.compile(r"^\s*(?:[%!?]|[\w.,\s\[\]()*]+?\s*=\s*[%!]|[\w.\[\]()]+\?\??\s*$)")


def _notebook_source(path: Path, *, definitions_only: bool) -> SubmissionSource:
    import nbformat

    raw = _read_text(path)
    try:
        notebook = nbformat.reads(raw, as_version=4)
        cells = [(cell.get("cell_type"), cell.get("source", "")) for cell in notebook.cells]
    except Exception as exc:  # nbformat raises many types (JSON, validation, version) for a malformed file
        raise load_error(f"{path} is not a readable Jupyter notebook: {exc}", "unreadable") from None

    code: list[str] = []
    starts: list[tuple[int, int]] = []
    skipped: list[tuple[str, int]] = []
    runnable: list[tuple[int, int, int]] = []  # (cell number, first line in `code`, number of lines)
    names = _Names()
    for number, (cell_type, text) in enumerate(cells, start=1):
        if cell_type != "code" or not isinstance(text, str):
            continue
        lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
        magic = _cell_magic(lines)
        if magic is not None and magic not in PYTHON_CELL_MAGICS:
            continue  # %%bash, %%writefile, %%html…: the whole cell is IPython's business
        if magic is not None:
            lines[0] = ""  # %%time: the body is Python, and keeps its line numbers
        first = len(code) + 1
        starts.append((first, number))
        partial = SubmissionSource(path=path, code="", filename=str(path), cells=tuple(starts))
        tree = _parse_cell(lines, partial, first - 1)
        if tree is None:
            lines = _without_magics(lines)
            tree = _compile("\n".join(lines), partial, first - 1, cell=True)
        kept = _keep(tree, lines, names, definitions_only=definitions_only)
        skipped.extend((name, first - 1 + lineno) for name, lineno in kept.skipped)
        code.extend(kept.lines)
        if any(line.strip() for line in kept.lines):
            runnable.append((number, first, len(kept.lines)))
    return SubmissionSource(
        path=path,
        code="\n".join(code) + "\n",
        filename=str(path),
        cells=tuple(starts),
        skipped=tuple(skipped),
        run_cells=() if definitions_only else tuple(runnable),
    )


def _cell_magic(lines: list[str]) -> str | None:
    """The name of a cell magic on the cell's first line (``%%time`` -> ``time``), or None."""
    first = lines[0].strip() if lines else ""
    if not first.startswith("%%"):
        return None
    return first[2:].split(maxsplit=1)[0] if first[2:].strip() else ""


def _parse_cell(lines: list[str], source: SubmissionSource, offset: int) -> ast.Module | None:
    """The cell parsed as it is, or None when it does not parse (magics are then removed and it is parsed again)."""
    try:
        return ast.parse("\n".join(lines), "<submission>")
    except SyntaxError:
        return None
    except (ValueError, RecursionError, MemoryError):
        return _compile("\n".join(lines), source, offset, cell=True)  # raises the LoadError with the cell and line


def _without_magics(lines: list[str]) -> list[str]:
    """The cell's lines with IPython syntax replaced; only a line that starts a statement can be a magic (a
    continuation line starting with `%` is the modulo operator). `%time stmt` keeps `stmt`; a magic continued
    with a backslash takes its continuation lines with it."""
    out = list(lines)
    index = 0
    while index < len(out):
        line = out[index]
        if _MAGIC_LINE.search(line) and _starts_statement(out[:index]):
            indent = line[: len(line) - len(line.lstrip())]
            word, _, rest = line.strip().partition(" ")
            statement = _magic_statement(word, rest)
            if statement:
                out[index] = indent + statement
            else:
                # `pass`, not "": a magic inside an indented block must still leave the block a statement.
                out[index] = indent + "pass"
                while line.rstrip().endswith("\\") and index + 1 < len(out):
                    index += 1
                    line, out[index] = out[index], ""
        index += 1
    return out


def _magic_statement(word: str, rest: str) -> str:
    """The Python statement of `%time stmt`, `%timeit -n1 stmt` or `%prun -l 5 stmt`; "" for any other magic."""
    options = _MAGIC_OPTIONS.get(word[1:]) if word.startswith("%") and not word.startswith("%%") else None
    if options is None:
        return ""
    rest = rest.strip() + " "
    found = options.match(rest)  # a pattern of `(...)*` matches every string, if only with nothing
    return rest[found.end() if found else 0 :].strip()


def _starts_statement(before: list[str]) -> bool:
    """Whether the line after ``before`` starts a statement: not inside brackets, a string or a backslash
    continuation of the lines before it."""
    if before and before[-1].rstrip().endswith("\\"):
        return False
    try:
        for _ in tokenize.generate_tokens(io.StringIO("\n".join(before) + "\n").readline):
            pass
    except tokenize.TokenError:
        return False  # "EOF in multi-line statement": an open bracket or string
    except (SyntaxError, ValueError):
        return True  # the lines before are not Python anyway (another magic): the cell's parse will say where
    return True


class _Names:
    """Names bound so far by kept statements, to decide whether a constant assignment can run on its own."""

    def __init__(self) -> None:
        self.bound: set[str] = set(dir(builtins))
        self.star = False  # after `from x import *` any name may be bound

    def known(self, name: str) -> bool:
        return self.star or name in self.bound


@dataclass
class _Kept:
    lines: list[str]
    skipped: list[tuple[str, int]]


def _keep(tree: ast.Module, lines: list[str], names: _Names, *, definitions_only: bool) -> _Kept:
    """The cell's lines with the statements that are not kept blanked out, so line numbers do not move."""
    out = [""] * len(lines)
    skipped: list[tuple[str, int]] = []
    for group in _line_groups(tree.body):
        decisions = [_decide(statement, names, definitions_only=definitions_only) for statement in group]
        first, last = _first_line(group[0]), max(s.end_lineno or s.lineno for s in group)
        for statement, keep in zip(group, decisions):
            if not keep:
                skipped.extend((name, statement.lineno) for name in _bound_by(statement))
        if len(group) == 1 and decisions[0]:
            out[first - 1 : last] = lines[first - 1 : last]
        elif any(decisions):
            # Several statements share a line (`import torch; net = Net()`): keep only the chosen ones' text.
            text = "\n".join(lines)
            segments = [ast.get_source_segment(text, s) or "" for s, k in zip(group, decisions) if k]
            joined = "; ".join(segments).split("\n")
            out[first - 1 : first - 1 + len(joined)] = joined
    return _Kept(out, skipped)


def _line_groups(body: list[ast.stmt]) -> list[list[ast.stmt]]:
    groups: list[list[ast.stmt]] = []
    for statement in body:
        if groups and _first_line(statement) <= (groups[-1][-1].end_lineno or groups[-1][-1].lineno):
            groups[-1].append(statement)
        else:
            groups.append([statement])
    return groups


def _first_line(statement: ast.stmt) -> int:
    decorators = getattr(statement, "decorator_list", [])
    return min([statement.lineno, *(d.lineno for d in decorators)])


def _decide(statement: ast.stmt, names: _Names, *, definitions_only: bool) -> bool:
    """Whether a top-level statement is kept; records the names a kept statement binds."""
    if isinstance(statement, ast.ImportFrom) and statement.module == "__future__":
        return False  # only legal at the very top, which a cell's code no longer is once cells are joined
    if not definitions_only:
        names.bound.update(_bound_by(statement))
        return True
    keep = False
    if isinstance(statement, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
        keep = True
    elif isinstance(statement, ast.Import):
        keep = all(_importable(alias.name) for alias in statement.names)
    elif isinstance(statement, ast.ImportFrom):
        keep = statement.level == 0 and _importable(statement.module or "")
        names.star = names.star or (keep and any(alias.name == "*" for alias in statement.names))
    elif isinstance(statement, ast.Assign):
        keep = all(_plain_target(t) for t in statement.targets) and _plain(statement.value, names)
    elif isinstance(statement, ast.AnnAssign):
        keep = (
            isinstance(statement.target, ast.Name)
            and _plain(statement.annotation, names)
            and (statement.value is None or _plain(statement.value, names))
        )
    if keep:
        names.bound.update(_bound_by(statement))
    return keep


def _importable(module: str) -> bool:
    # A notebook's `import matplotlib.pyplot as plt` is for its plots; if matplotlib is not installed where the
    # checks run, skipping the import beats failing the whole submission. The checker's own packages are kept
    # so that the worker refuses them loudly.
    top = module.partition(".")[0]
    if top in BLOCKED_PACKAGES:
        return True
    try:
        return importlib.util.find_spec(top) is not None
    except (ImportError, ValueError):
        return False


def _plain_target(target: ast.expr) -> bool:
    if isinstance(target, (ast.Tuple, ast.List)):
        return all(isinstance(t, ast.Name) for t in target.elts)
    return isinstance(target, ast.Name)


def _plain(node: ast.expr | None, names: _Names) -> bool:
    """A value computed without calling anything: constants, known names, attributes, operators, lambdas."""
    if node is None or isinstance(node, ast.Constant):
        return True
    if isinstance(node, ast.Name):
        return names.known(node.id)
    if isinstance(node, ast.Attribute):
        return _plain(node.value, names)
    if isinstance(node, ast.UnaryOp):
        return _plain(node.operand, names)
    if isinstance(node, ast.BinOp):
        return _plain(node.left, names) and _plain(node.right, names)
    if isinstance(node, ast.BoolOp):
        return all(_plain(v, names) for v in node.values)
    if isinstance(node, ast.Compare):
        return _plain(node.left, names) and all(_plain(c, names) for c in node.comparators)
    if isinstance(node, (ast.Tuple, ast.List, ast.Set)):
        return all(_plain(e, names) for e in node.elts)
    if isinstance(node, ast.Dict):
        return all(_plain(k, names) for k in node.keys) and all(_plain(v, names) for v in node.values)
    if isinstance(node, ast.JoinedStr):
        return all(_plain(v, names) for v in node.values)
    if isinstance(node, ast.FormattedValue):
        return _plain(node.value, names) and _plain(node.format_spec, names)
    if isinstance(node, ast.Lambda):  # a definition: only its defaults run now
        return all(_plain(d, names) for d in [*node.args.defaults, *node.args.kw_defaults])
    return False


def _bound_by(statement: ast.stmt) -> list[str]:
    """Names a top-level statement binds (over-approximated: hints only, and the filter's bookkeeping)."""
    bound: list[str] = []
    for node in ast.walk(statement):
        if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            bound.append(node.id)
        elif isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            bound.append(node.name)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            bound.extend((a.asname or a.name).partition(".")[0] for a in node.names if a.name != "*")
    return bound
