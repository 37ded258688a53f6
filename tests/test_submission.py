"""Tests of gradcheckers.submission: reading .py and .ipynb submissions into code, without running them.

The fixture notebooks in tests/submissions/ are built by `NOTEBOOKS` below; after changing it, rewrite them with
`python tests/test_submission.py`.
"""

from __future__ import annotations

import json
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

from gradcheckers.errors import LoadError
from gradcheckers.submission import EXAMPLES, SubmissionSource, load_source, resolve_submission

SUBMISSIONS = Path(__file__).parent / "submissions"

GRADIENTS_CELL = """\
def grad_W1(X, Y, W1, b1, W2, b2):
    Hs = torch.sigmoid(X @ W1 + b1)
    G = -2 * (Y - (Hs @ W2 + b2))
    return X.T @ ((G @ W2.T) * Hs * (1 - Hs))

files = !ls
torch.sum?

def uses_net(X):
    return net(X)

sigmoid = lambda z: 1 / (1 + torch.exp(-z))
"""

NOTEBOOKS = {
    # A student's lab book: installs, plots, data, a model, a training loop, and the gradient formulas.
    "notebook_magics.ipynb": new_notebook(
        cells=[
            new_markdown_cell("# Homework 5: a two-layer network"),
            new_code_cell(
                "!pip install torch\n%matplotlib inline\nimport torch\nimport torch.nn as nn\n"
                "import matplotlib.pyplot as plt"
            ),
            new_code_cell(
                "torch.manual_seed(1)  # reproducible\n"
                "x = torch.unsqueeze(torch.linspace(-1, 1, 100), dim=1)\n"
                "y = x.pow(2) + 0.2 * torch.rand(x.size())\n"
                "N_HIDDEN = 20\n"
                "LR = 0.5 / N_HIDDEN\n"
                "DTYPE = torch.float64\n"
                "import torch.nn.functional as F; scratch = torch.zeros(3)"
            ),
            new_code_cell(
                "class Net(nn.Module):\n"
                "    def __init__(self, n_feature, n_hidden, n_output):\n"
                "        super().__init__()\n"
                "        self.linear1 = nn.Linear(n_feature, n_hidden)\n"
                "        self.linear2 = nn.Linear(n_hidden, n_output)\n"
                "\n"
                "    def forward(self, x):\n"
                "        return self.linear2(torch.sigmoid(self.linear1(x)))"
            ),
            new_code_cell("%%time\nfor t in range(100):\n    pass"),
            new_code_cell(
                "net = Net(1, N_HIDDEN, 1)\n"
                "optimizer = torch.optim.SGD(net.parameters(), lr=LR)\n"
                "while True:  # trains until interrupted: must never run when checking\n"
                "    loss = ((net(x) - y) ** 2).sum()\n"
                "    optimizer.zero_grad()\n"
                "    loss.backward()\n"
                "    optimizer.step()"
            ),
            new_code_cell(GRADIENTS_CELL),
            new_code_cell("print(net)\nplt.plot(x, y)"),
        ]
    ),
    # Cell 3 (counting the markdown cell) has a syntax error on its second line.
    "notebook_syntax_error.ipynb": new_notebook(
        cells=[
            new_code_cell("import torch"),
            new_markdown_cell("The gradients:"),
            new_code_cell("def grad_W1(X, Y, W1, b1, W2, b2):\n    return X.T @@ Y"),
        ]
    ),
}


def write_notebooks() -> None:
    for name, notebook in NOTEBOOKS.items():
        nbformat.write(notebook, str(SUBMISSIONS / name))


def test_fixture_notebooks_are_up_to_date() -> None:
    for name, notebook in NOTEBOOKS.items():
        stored = nbformat.read(str(SUBMISSIONS / name), as_version=4)
        assert [(c.cell_type, c.source) for c in stored.cells] == [(c.cell_type, c.source) for c in notebook.cells], (
            f"{name} is stale: run `python tests/test_submission.py`"
        )


# --- .py files --------------------------------------------------------------------------------------------


def test_a_py_file_is_kept_as_it_is() -> None:
    path = SUBMISSIONS / "correct.py"
    source = load_source(path)
    assert source == SubmissionSource(path=path, code=path.read_text(), filename=str(path))
    assert not source.is_notebook
    assert source.locate(7) == "line 7"
    assert source.line(6) == "def _forward(X, W1, b1, W2, b2):"
    assert source.line(999) == ""


def test_a_syntax_error_names_the_line_and_shows_the_text() -> None:
    with pytest.raises(LoadError) as caught:
        load_source(SUBMISSIONS / "syntax_error.py")
    assert str(caught.value) == (
        f"{SUBMISSIONS / 'syntax_error.py'}: syntax error at line 5: invalid syntax\n    return X.T @@ Y\n"
        "                ^"
    )
    assert caught.value.reason == "syntax"  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("does_not_exist.py", "no such file: {dir}/does_not_exist.py"),
        ("", "{dir} is a directory: expected a .py or .ipynb file"),
        ("README.txt", "expected a .py or .ipynb file, got README.txt"),
    ],
)
def test_paths_that_are_not_submissions(tmp_path: Path, name: str, message: str) -> None:
    (tmp_path / "README.txt").write_text("hello")
    with pytest.raises(LoadError, match="^" + message.format(dir=tmp_path) + "$"):
        load_source(tmp_path / name)


def test_text_that_is_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "latin1.py"
    path.write_bytes("# café\n".encode("latin-1"))
    with pytest.raises(LoadError, match=r"latin1.py is not valid UTF-8 \(byte 0xe9 at offset 5\): save it as UTF-8"):
        load_source(path)


def test_a_byte_order_mark_is_accepted(tmp_path: Path) -> None:
    path = tmp_path / "bom.py"
    path.write_bytes(b"\xef\xbb\xbfX = 1\n")
    assert load_source(path).code == "X = 1\n"


def test_null_bytes_are_a_load_error(tmp_path: Path) -> None:
    path = tmp_path / "nul.py"
    path.write_bytes(b"X = 1\x00\n")
    with pytest.raises(LoadError, match=r"nul\.py.*: source code string cannot contain null bytes$"):
        load_source(path)


# --- notebooks --------------------------------------------------------------------------------------------


def code_line(source: SubmissionSource, text: str) -> int:
    return next(i for i, line in enumerate(source.code.splitlines(), start=1) if line.strip() == text)


def test_a_notebook_keeps_its_definitions_only_when_asked() -> None:
    source = load_source(SUBMISSIONS / "notebook_magics.ipynb", definitions_only=True)
    assert source.is_notebook
    kept = [line for line in source.code.splitlines() if line.strip()]
    assert kept == [
        "import torch",
        "import torch.nn as nn",
        # matplotlib is not installed in the test environment: skipped, not fatal.
        *(["import matplotlib.pyplot as plt"] if _installed("matplotlib") else []),
        "N_HIDDEN = 20",
        "LR = 0.5 / N_HIDDEN",
        "DTYPE = torch.float64",
        "import torch.nn.functional as F",
        *NOTEBOOKS["notebook_magics.ipynb"].cells[3].source.replace("\n\n", "\n").splitlines(),
        *[line for line in GRADIENTS_CELL.splitlines() if line.strip() and "!" not in line and "?" not in line],
    ]


def _installed(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is not None


def test_notebook_lines_map_back_to_cells() -> None:
    source = load_source(SUBMISSIONS / "notebook_magics.ipynb")
    assert source.locate(code_line(source, "import torch")) == "cell 2, line 3"
    assert source.locate(code_line(source, "def grad_W1(X, Y, W1, b1, W2, b2):")) == "cell 7, line 1"
    assert source.locate(code_line(source, "return net(X)")) == "cell 7, line 10"
    assert source.locate(code_line(source, "class Net(nn.Module):")) == "cell 4, line 1"


def test_a_notebook_remembers_where_skipped_names_were_set() -> None:
    source = load_source(SUBMISSIONS / "notebook_magics.ipynb", definitions_only=True)
    net = source.skipped_binding("net")
    assert net is not None and source.locate(net) == "cell 6, line 1"
    scratch = source.skipped_binding("scratch")
    assert scratch is not None and source.locate(scratch) == "cell 3, line 7"
    assert source.skipped_binding("grad_W1") is None


def test_every_cell_is_kept_by_default_but_ipython_syntax() -> None:
    source = load_source(SUBMISSIONS / "notebook_magics.ipynb")
    assert "while True:" in source.code
    assert "print(net)" in source.code
    assert "pip" not in source.code and "%" not in source.code and "torch.sum?" not in source.code
    assert "for t in range(100)" in source.code  # a %%time cell's body is Python: it runs
    assert source.locate(code_line(source, "print(net)")) == "cell 8, line 1"
    assert source.skipped == ()


def test_a_syntax_error_in_a_notebook_names_the_cell() -> None:
    path = SUBMISSIONS / "notebook_syntax_error.ipynb"
    with pytest.raises(LoadError) as caught:
        load_source(path)
    assert str(caught.value) == (
        f"{path}: syntax error at cell 3, line 2: invalid syntax\n    return X.T @@ Y\n                ^"
    )


def test_a_notebook_that_is_not_json(tmp_path: Path) -> None:
    path = tmp_path / "broken.ipynb"
    path.write_text('{"cells": [')
    with pytest.raises(LoadError, match=r"^.*broken.ipynb is not a readable Jupyter notebook: "):
        load_source(path)


def test_a_notebook_with_list_sources_and_indented_magic(tmp_path: Path) -> None:
    # Older notebooks store sources as lists of lines; nbformat joins them. A magic inside a block becomes `pass`.
    path = tmp_path / "old.ipynb"
    cell = {"cell_type": "code", "metadata": {}, "outputs": [], "execution_count": None}
    source = ["def f(x):\n", "    !echo hi\n", "    return x\n"]
    path.write_text(
        json.dumps({"nbformat": 4, "nbformat_minor": 2, "metadata": {}, "cells": [{**cell, "source": source}]})
    )
    assert load_source(path).code.splitlines() == ["def f(x):", "    pass", "    return x", ""]


def test_constant_assignments_need_their_names(tmp_path: Path) -> None:
    notebook = new_notebook(
        cells=[
            new_code_cell(
                "from __future__ import annotations\n"
                "import torch\n"
                "A = torch.float32\n"
                "B = unknown.attr\n"
                "C: int = 3\n"
                "D = [A, (1, 2), {'k': -1.5}, f'{C}']\n"
                "E = torch.randn(3)\n"
                "F = A if C else None\n"
                "G, H = 1, 2\n"
                "I += 1\n"
                "J = D[0]\n"
                "K = lambda x, y=C: x + y\n"
                "L = lambda x, y=print(): x\n"
                "if __name__ == '__main__':\n    main()"
            )
        ]
    )
    path = tmp_path / "constants.ipynb"
    nbformat.write(notebook, str(path))
    kept = [line for line in load_source(path, definitions_only=True).code.splitlines() if line]
    assert kept == [
        "import torch",
        "A = torch.float32",
        "C: int = 3",
        "D = [A, (1, 2), {'k': -1.5}, f'{C}']",
        "G, H = 1, 2",
        "K = lambda x, y=C: x + y",
    ]


# --- bundled examples -------------------------------------------------------------------------------------


def test_an_existing_path_resolves_to_itself() -> None:
    assert resolve_submission(str(SUBMISSIONS / "correct.py")) == SUBMISSIONS / "correct.py"


def test_a_bundled_example_resolves_by_name() -> None:
    names = sorted(p.stem for p in EXAMPLES.glob("*.py") if not p.stem.startswith("_"))
    assert names, "gradcheckers/examples/ holds no example"
    assert resolve_submission(names[0]) == EXAMPLES / f"{names[0]}.py"


def test_an_unknown_name_lists_the_examples() -> None:
    names = ", ".join(sorted({"seed"} | {p.stem for p in EXAMPLES.glob("*.py") if not p.stem.startswith("_")}))
    with pytest.raises(LoadError) as caught:
        resolve_submission("no_such_example")
    assert str(caught.value) == (
        f"no such file: no_such_example (and no bundled example of that name; the bundled examples are: {names})"
    )


def test_seed_names_the_homework_formulas() -> None:
    assert resolve_submission("seed").resolve() == (Path(__file__).parent.parent / "models" / "seed.py").resolve()


if __name__ == "__main__":
    write_notebooks()


# --- notebooks as students write them (issue 13, item 7) ----------------------------------------------------------


def _notebook(tmp_path: Path, *cells: str) -> Path:
    path = tmp_path / "student.ipynb"
    nbformat.write(new_notebook(cells=[new_code_cell(c) for c in cells]), str(path))
    return path


def test_a_line_magic_leaves_a_continuation_line_alone(tmp_path: Path) -> None:
    # Before: the `% 7` continuation line (the modulo operator) was taken for a magic and became `pass`.
    path = _notebook(tmp_path, "%matplotlib inline\ntotal = (10\n         % 7)\n")
    source = load_source(path)
    assert source.code.splitlines()[1:3] == ["total = (10", "         % 7)"]
    namespace: dict[str, object] = {}
    exec(source.code, namespace)
    assert namespace["total"] == 3


def test_a_magic_continued_with_a_backslash_takes_its_lines_with_it(tmp_path: Path) -> None:
    path = _notebook(tmp_path, "!pip install numpy \\\n    torch\nX = 1\n")
    assert load_source(path).code.splitlines()[:3] == ["pass", "", "X = 1"]


def test_time_magics_run_their_python(tmp_path: Path) -> None:
    path = _notebook(tmp_path, "%%time\ndef grad_b2(X, Y, W1, b1, W2, b2):\n    return b2\n",
                     "%time LR = 0.5\n")
    source = load_source(path)
    assert "def grad_b2(X, Y, W1, b1, W2, b2):" in source.code and "LR = 0.5" in source.code
    assert source.locate(code_line(source, "def grad_b2(X, Y, W1, b1, W2, b2):")) == "cell 1, line 2"
    assert source.locate(code_line(source, "LR = 0.5")) == "cell 2, line 1"


def test_other_cell_magics_stay_ipythons(tmp_path: Path) -> None:
    path = _notebook(tmp_path, "%%bash\necho hi\n", "X = 1\n")
    assert [line for line in load_source(path).code.splitlines() if line] == ["X = 1"]


def test_timeit_options_are_not_python(tmp_path: Path) -> None:
    path = _notebook(tmp_path, "%timeit -n1 -r 3 -q total = (10\n              % 7)\n%prun -l 5 -s time X = 1\n")
    assert load_source(path).code.splitlines()[:3] == ["total = (10", "              % 7)", "X = 1"]


def test_a_suffix_in_capitals_is_the_same_file_type(tmp_path: Path) -> None:
    # As `grade` reads it: sam.PY is a Python file, HW.IPYNB a notebook.
    (tmp_path / "sam.PY").write_text("X = 1\n")
    assert load_source(tmp_path / "sam.PY").code == "X = 1\n"
    nbformat.write(new_notebook(cells=[new_code_cell("X = 1")]), str(tmp_path / "HW.IPYNB"))
    source = load_source(tmp_path / "HW.IPYNB")
    assert source.is_notebook and source.locate(1) == "cell 1, line 1"
