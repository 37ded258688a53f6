"""The package as users install it: the built wheel's contents, ``twine check``, and a user project that has a
``models`` package of its own (common in ML code) next to gradcheckers.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _run(*command: str, cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("GITHUB_STEP_SUMMARY", "PYTHONPATH")}
    return subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=timeout, env=env)


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The sdist and wheel, built as the README says (``python -m build``; no isolation: no download here)."""
    out = tmp_path_factory.mktemp("dist")
    proc = _run(sys.executable, "-m", "build", "--no-isolation", "--outdir", str(out), str(ROOT), cwd=out)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return out


def test_the_wheel_installs_models_only_inside_gradcheckers(dist: Path) -> None:
    (wheel,) = dist.glob("*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    tops = {name.split("/")[0] for name in names}
    assert "models" not in tops, sorted(tops)
    assert {"gradcheckers/models/two_layer.py", "gradcheckers/models/seed.py", "gradcheckers/py.typed"} <= set(names)


def test_twine_check_passes(dist: Path) -> None:
    proc = _run(sys.executable, "-m", "twine", "check", "--strict", *map(str, sorted(dist.iterdir())), cwd=dist)
    assert proc.returncode == 0, proc.stdout + proc.stderr


# A user's project with a models/ package of its own, as an ML project often has: importing gradcheckers (the
# command line, the plugin, the library) must not pick it up, and the project's own import must still work.
USER_MODELS = "def grad_W1(*args):\n    raise AssertionError('the user project models package was imported')\n"
USER_TEST = """
import models.two_layer
from gradcheckers import check_formulas
from gradcheckers.models import two_layer


def test_check_formulas_with_a_models_package_of_our_own():
    assert models.two_layer.MINE
    result = check_formulas({"W1": two_layer.grad_W1}, max_examples=5)
    assert result.parameters["W1"].passed
"""


@pytest.fixture
def user_project(tmp_path: Path) -> Path:
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "__init__.py").write_text("")
    (tmp_path / "models" / "two_layer.py").write_text("MINE = True\n" + USER_MODELS)
    (tmp_path / "models" / "seed.py").write_text(USER_MODELS)
    (tmp_path / "test_mine.py").write_text(USER_TEST)
    return tmp_path


def test_a_user_projects_own_models_package_does_not_collide(user_project: Path) -> None:
    check = _run(sys.executable, "-m", "gradcheckers", "check", "seed", "--examples", "5", "--quiet",
                 cwd=user_project, timeout=180)
    assert (check.returncode, check.stdout.strip()) == (1, "seed: FAIL (1/4)"), check.stderr
    plugin = _run(sys.executable, "-m", "pytest", "-p", "gradcheckers", "--gradcheckers-submission=seed",
                  "--gradcheckers-examples=5", "-p", "no:cacheprovider", "-q", cwd=user_project, timeout=180)
    assert "3 failed, 1 passed" in plugin.stdout, plugin.stdout[-3000:]
    mine = _run(sys.executable, "-m", "pytest", "test_mine.py", "-p", "no:cacheprovider", "-q", cwd=user_project,
                timeout=180)
    assert mine.returncode == 0, mine.stdout[-3000:]


def _pyproject() -> dict:
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def test_the_lowest_versions_ci_tests_are_the_declared_floors() -> None:
    project = _pyproject()["project"]
    declared = [*project["dependencies"], *project["optional-dependencies"]["test"]]
    floors = {spec.split(">=")[0].strip(): spec.split(">=")[1].strip() for spec in declared if ">=" in spec}
    pinned = {}
    for line in (ROOT / ".ci" / "lowest.txt").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, _, version = line.partition("==")
            pinned[name.strip()] = version.strip()
    for name, version in pinned.items():
        assert floors.get(name) is not None and version.startswith(floors[name]), (name, version, floors.get(name))
    assert floors["torch"] == "2.13"  # the only torch CI can install (see the README)


def test_a_plain_pytest_run_leaves_the_statistical_tests_out() -> None:
    # The README's test command must be green in minutes: the `slow` tests (about 20 minutes) run in .ci/run.
    addopts = _pyproject()["tool"]["pytest"]["ini_options"]["addopts"]
    assert "-m 'not slow'" in addopts
    assert "python -m pytest -n 2 -m slow" in (ROOT / ".ci" / "run").read_text()


def _readme_install_blocks() -> list[list[str]]:
    """The README's install recipes: its ```bash blocks that make a virtual environment and install into it."""
    blocks = re.findall(r"```bash\n(.*?)```", (ROOT / "README.md").read_text(), flags=re.DOTALL)
    recipes = [block.strip().splitlines() for block in blocks if block.startswith("python3 -m venv")]
    assert len(recipes) == 2, recipes  # the quick start and the test suite's
    return recipes


def _runs_in_order(lines: list[str], script: list[str]) -> bool:
    """Whether ``lines`` appear in ``script`` one after the other, as they are written (indentation aside)."""
    stripped = [line.strip() for line in script]
    return any(stripped[i : i + len(lines)] == lines for i in range(len(stripped)))


def test_ci_runs_the_readmes_install_recipes_as_written() -> None:
    script = (ROOT / ".ci" / "run").read_text().splitlines()
    for recipe in _readme_install_blocks():
        assert _runs_in_order(recipe, script), f".ci/run does not run this README recipe as written: {recipe}"
    # Every torch that the README or CI installs comes the same way: pinned, the CPU index an extra one.
    torch = "torch==2.13.0 --extra-index-url https://download.pytorch.org/whl/cpu"
    readme = (ROOT / "README.md").read_text().splitlines()
    installs = [line for line in readme + script if re.search(r"pip3? install .*torch==", line)]
    assert len(installs) >= 6 and all(line.rstrip().endswith(torch) for line in installs), installs
