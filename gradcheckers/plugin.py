"""The pytest plugin: ``pytest -p gradcheckers`` (auto-loaded through the ``pytest11`` entry point).

Loading it must cost nothing in projects that never use it: this module imports only pytest and the
standard library; torch, Hypothesis and the rest of gradcheckers are imported when a check actually runs.
Hooks stay short and delegate to :class:`PluginState`; per-test results ride on the test reports
(``user_properties``) so that they survive pytest-xdist and land in ``--junitxml`` output.
"""

from __future__ import annotations

import argparse
import json
import random
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from gradcheckers.options import (
    DEVICE_CHOICES,
    DTYPE_CHOICES,
    name_list,
    non_negative_float,
    positive_float,
    positive_int,
    seed_value,
)

if TYPE_CHECKING:
    from gradcheckers.property import CheckSettings
    from gradcheckers.sandbox import Limits
    from gradcheckers.session import SubmissionSession

# Option names, kept as constants (each also an ini key: "--gradcheckers-x-y" -> "gradcheckers_x_y").
SUBMISSION = "--gradcheckers-submission"
ASSIGNMENT = "--gradcheckers-assignment"
EXAMPLES = "--gradcheckers-examples"
SEED = "--gradcheckers-seed"
DTYPES = "--gradcheckers-dtypes"
DEVICES = "--gradcheckers-devices"
RTOL = "--gradcheckers-rtol"
ATOL = "--gradcheckers-atol"
STRESS = "--gradcheckers-stress"
TIMEOUT = "--gradcheckers-timeout"
JSON_REPORT = "--gradcheckers-json"
MARKDOWN_REPORT = "--gradcheckers-markdown"
DATABASE = "--gradcheckers-database"
ALLOW_AUTOGRAD = "--gradcheckers-allow-autograd"
MARKER = "gradcheckers"
RESULT_PROPERTY = "gradcheckers_result"
CACHE_SEED_KEY = "gradcheckers/seed"
DEFAULT_EXAMPLES = 100
DEFAULT_TIMEOUT = 10.0


def _ini_name(option: str) -> str:
    return option.lstrip("-").replace("-", "_")


# option -> (type, default, help); the ini key of the same name takes the same values.
OPTIONS: dict[str, tuple[Any, Any, str]] = {
    SUBMISSION: (str, None, "check this .py/.ipynb submission (or bundled example name): one test per parameter"),
    ASSIGNMENT: (str, None, "assignment name or definition file (default: two-layer-sigmoid, the seed)"),
    EXAMPLES: (positive_int, DEFAULT_EXAMPLES, "Hypothesis examples per parameter (default: 100)"),
    SEED: (seed_value, "0", "seed of the case search: an integer, 'random', or 'last' (default: 0)"),
    DTYPES: (name_list(DTYPE_CHOICES), ("float64", "float32"), "dtypes to draw, comma-separated"),
    DEVICES: (name_list(DEVICE_CHOICES), None, "devices to draw, comma-separated (default: all available)"),
    RTOL: (non_negative_float, None, "relative tolerance; replaces the derived policy, needs --gradcheckers-atol"),
    ATOL: (non_negative_float, None, "absolute tolerance; needs --gradcheckers-rtol"),
    TIMEOUT: (positive_float, DEFAULT_TIMEOUT, "seconds one call of a submitted function may take"),
    JSON_REPORT: (str, None, "write the JSON report of the submission check here"),
    MARKDOWN_REPORT: (str, None, "write a Markdown summary of the submission check here"),
    DATABASE: (str, None, "keep Hypothesis's example database in this directory (local exploration only)"),
}
FLAGS = {
    STRESS: "also draw large magnitudes (numerical-stability check)",
    ALLOW_AUTOGRAD: "let submitted functions call autograd (refused by default)",
}


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("gradcheckers", "gradient checks of hand-derived formulas")
    for option, (kind, _default, text) in OPTIONS.items():
        group.addoption(option, dest=_ini_name(option), type=kind, default=None, help=text)
        parser.addini(_ini_name(option), text, default=None)
    for option, text in FLAGS.items():
        group.addoption(option, dest=_ini_name(option), action="store_true", default=None, help=text)
        parser.addini(_ini_name(option), text, type="bool", default=False)


def _value(config: pytest.Config, option: str) -> Any:
    """Command line first, then the ini file (validated with the option's own type), then the default."""
    name = _ini_name(option)
    given = config.getoption(name)
    if given is not None:
        return given
    raw = config.getini(name)
    if option in FLAGS:
        return bool(raw)
    kind, default, _ = OPTIONS[option]
    if raw in (None, "", []):
        return default
    try:
        return kind(str(raw))
    except argparse.ArgumentTypeError as error:
        raise pytest.UsageError(f"ini option {name}: {error}") from None


class PluginState:
    """Everything the plugin holds for one pytest run: settings, the seed, sessions, gathered results."""

    def __init__(self, config: pytest.Config) -> None:
        self.config = config
        self.seed = self._settle_seed(config, _value(config, SEED))
        self.seed_given = config.getoption(_ini_name(SEED)) is not None or bool(config.getini(_ini_name(SEED)))
        self.submission: str | None = _value(config, SUBMISSION)
        self.submission_path: Path | None = None
        self.sessions: dict[str, SubmissionSession] = {}
        self.results: dict[str, dict[str, Any]] = {}  # parameter -> ParameterResult JSON, from reports
        if (_value(config, RTOL) is None) != (_value(config, ATOL) is None):
            raise pytest.UsageError(f"{RTOL} and {ATOL} go together: give both or neither")

    @staticmethod
    def _settle_seed(config: pytest.Config, value: str) -> int:
        # Settled once, printed in the header as a flag that reproduces the run (as pytest-randomly does).
        cache = config.cache
        if value == "last":
            last = cache.get(CACHE_SEED_KEY, None) if cache is not None else None
            seed = int(last) if last is not None else 0
        elif value == "random":
            seed = random.Random().randrange(2**32)
        else:
            seed = int(value)
        if cache is not None:
            cache.set(CACHE_SEED_KEY, seed)
        return seed

    def settings(self, **overrides: Any) -> CheckSettings:
        from gradcheckers.property import CheckSettings

        values: dict[str, Any] = {
            "max_examples": _value(self.config, EXAMPLES),
            "seed": self.seed,
            "dtypes": tuple(_value(self.config, DTYPES)),
            "devices": _value(self.config, DEVICES),
            "stress": _value(self.config, STRESS),
            "rtol": _value(self.config, RTOL),
            "atol": _value(self.config, ATOL),
        }
        assignment = _value(self.config, ASSIGNMENT)
        if assignment:
            values["assignment"] = assignment
        values.update(overrides)
        return CheckSettings(**values)

    def limits(self) -> Limits:
        from gradcheckers.sandbox import Limits

        return Limits(call_timeout=_value(self.config, TIMEOUT), allow_autograd=_value(self.config, ALLOW_AUTOGRAD))

    def session(self, path: Path) -> SubmissionSession:
        from gradcheckers.session import SubmissionSession

        key = str(path)
        if key not in self.sessions:
            self.sessions[key] = SubmissionSession(key, self.settings(), self.limits())
        return self.sessions[key]

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        # Runs on the xdist controller too: the results arrive on the reports, not from this process.
        if report.when != "call":
            return
        for name, value in report.user_properties:
            if name == RESULT_PROPERTY:
                data = json.loads(str(value))
                self.results[data.pop("parameter")] = data

    def close(self) -> None:
        for session in self.sessions.values():
            session.close()
        self.sessions.clear()


STATE = pytest.StashKey[PluginState]()


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        f"{MARKER}(**settings): per-test CheckSettings for the gradcheckers fixtures, e.g. "
        "max_examples=50, dtypes=('float32',), size_bounds={'batch': (1, 8)}, rtol=1e-4, atol=1e-6",
    )
    state = PluginState(config)
    config.stash[STATE] = state
    config.pluginmanager.register(state, "gradcheckers-state")
    if state.submission:
        _collect_submission(config, state)


def _collect_submission(config: pytest.Config, state: PluginState) -> None:
    from gradcheckers.errors import LoadError
    from gradcheckers.submission import resolve_submission

    try:
        path = resolve_submission(state.submission or "").resolve()
    except LoadError as error:
        raise pytest.UsageError(f"{SUBMISSION}: {error}") from None
    state.submission_path = path
    # Without explicit paths pytest would collect the project's tests too: check only the submission then.
    if config.args_source != pytest.Config.ArgsSource.ARGS:
        config.args = [str(path)]
    elif str(path) not in config.args:
        config.args.append(str(path))


def pytest_unconfigure(config: pytest.Config) -> None:
    state = config.stash.get(STATE, None)
    if state is not None:
        state.close()


def pytest_report_header(config: pytest.Config) -> list[str] | None:
    state = config.stash[STATE]
    if not state.submission and not state.seed_given:
        return None
    return [f"gradcheckers: using {SEED}={state.seed}"]


def _is_submission(state: PluginState, path: Path) -> bool:
    return state.submission_path is not None and path.resolve() == state.submission_path


@pytest.hookimpl(tryfirst=True)
def pytest_pycollect_makemodule(module_path: Path, parent: pytest.Collector) -> pytest.Collector | None:
    # A .py submission must never be imported into the pytest process as a test module: it is untrusted.
    state = parent.config.stash[STATE]
    if _is_submission(state, module_path):
        return SubmissionFile.from_parent(parent, path=module_path)
    return None


def pytest_collect_file(file_path: Path, parent: pytest.Collector) -> pytest.Collector | None:
    state = parent.config.stash[STATE]
    if file_path.suffix == ".ipynb" and _is_submission(state, file_path):
        return SubmissionFile.from_parent(parent, path=file_path)
    return None


class SubmissionFile(pytest.File):
    """A submission: one item per parameter of the assignment."""

    def collect(self) -> Iterator[pytest.Item]:
        from gradcheckers.assignment import get_assignment

        state = self.config.stash[STATE]
        for parameter in get_assignment(state.settings().assignment).parameters:
            yield SubmissionItem.from_parent(self, name=f"grad_{parameter}", parameter=parameter)


class GradientCheckFailed(Exception):
    """Raised by a submission item; rendered by ``repr_failure`` without a traceback."""


class SubmissionItem(pytest.Item):
    def __init__(self, *, parameter: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.parameter = parameter

    def runtest(self) -> None:
        from gradcheckers.errors import LoadError
        from gradcheckers.report import format_failure

        state = self.config.stash[STATE]
        session = state.session(self.path)
        try:
            result = session.check(self.parameter).to_json()
        except LoadError as error:
            result = {"passed": False, "examples": 0, "reason": "error", "message": f"cannot load: {error}",
                      "counterexample": None, "worst": None, "diagnosis": None, "inconclusive": 0}
        self.user_properties.append((RESULT_PROPERTY, json.dumps({"parameter": self.parameter, **result})))
        for key in ("reason", "examples"):
            self.user_properties.append((f"gradcheckers_{key}", str(result.get(key))))
        if not result["passed"]:
            command = self._reproduce()
            raise GradientCheckFailed(format_failure(self.parameter, result, command))

    def _reproduce(self) -> str:
        state = self.config.stash[STATE]
        return (
            f"pytest -p gradcheckers {SUBMISSION}={state.submission} {SEED}={state.seed} "
            f"-k {self.name}" + (f" {EXAMPLES}={_value(self.config, EXAMPLES)}"
                                 if _value(self.config, EXAMPLES) != DEFAULT_EXAMPLES else "")
        )

    def repr_failure(self, excinfo: pytest.ExceptionInfo[BaseException], style: Any = None) -> str:
        if isinstance(excinfo.value, GradientCheckFailed):
            return str(excinfo.value)
        return str(super().repr_failure(excinfo, style))

    def reportinfo(self) -> tuple[Path, int | None, str]:
        return self.path, None, f"{self.path.name}::{self.name}"


# -- seeding ordinary @given tests -------------------------------------------------------------------------


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    state = config.stash[STATE]
    for item in items:
        function = getattr(item, "obj", None)
        # A Hypothesis test carries a .hypothesis attribute; @seed sets _hypothesis_internal_use_seed. Seed
        # it from the plugin when the user asked for a seed or marked the test, unless it has its own.
        if function is None or not hasattr(function, "hypothesis"):
            continue
        if (state.seed_given or item.get_closest_marker(MARKER)) and not hasattr(
            function, "_hypothesis_internal_use_seed"
        ):
            function._hypothesis_internal_use_seed = state.seed


# -- fixtures -----------------------------------------------------------------------------------------------


@pytest.fixture
def gradcheckers_settings(request: pytest.FixtureRequest) -> CheckSettings:
    """The configured CheckSettings, with the test's ``@pytest.mark.gradcheckers(...)`` applied."""
    state = request.config.stash[STATE]
    marker = request.node.get_closest_marker(MARKER)
    return state.settings(**(marker.kwargs if marker else {}))


@pytest.fixture
def gradcheckers_case(request: pytest.FixtureRequest, gradcheckers_settings: CheckSettings) -> Any:
    """One case drawn from the settings, the same for a given test and seed on every run."""
    from gradcheckers.assignment import SIZE_NAMES, Case, Sizes
    from gradcheckers.strategies import DEFAULT_SIZE_BOUNDS, available_devices

    s = gradcheckers_settings
    rng = random.Random(f"{s.seed}:{request.node.nodeid}")
    bounds = {**DEFAULT_SIZE_BOUNDS, **s.size_bounds}
    sizes = Sizes(**{name: rng.randint(*bounds[name]) for name in SIZE_NAMES})
    devices = s.devices or available_devices()
    return Case(sizes, rng.choice(s.dtypes), rng.choice(devices), rng.randrange(2**32))


@pytest.fixture
def gradcheckers_tensors(gradcheckers_case: Any, gradcheckers_settings: CheckSettings) -> dict[str, Any]:
    """The case's tensors by argument name (``X, Y, W1, b1, W2, b2`` for the seed)."""
    from gradcheckers.assignment import get_assignment

    return get_assignment(gradcheckers_settings.assignment).tensors(gradcheckers_case)


@pytest.fixture
def gradcheckers_references(gradcheckers_tensors: dict[str, Any], gradcheckers_settings: CheckSettings) -> Any:
    """Autograd and finite-difference gradients (float64) of the case, as a ``References``."""
    from gradcheckers.assignment import get_assignment
    from gradcheckers.references import compute_references

    return compute_references(get_assignment(gradcheckers_settings.assignment), gradcheckers_tensors)


# -- reporting ----------------------------------------------------------------------------------------------


def pytest_sessionfinish(session: pytest.Session) -> None:
    state = session.config.stash[STATE]
    state.close()
    if hasattr(session.config, "workerinput") or not state.results:
        return  # xdist workers report to the controller, which writes the reports
    from gradcheckers.report import markdown_summary, write_json, write_text

    report = _plugin_report(state)
    if _value(session.config, JSON_REPORT):
        write_json(_value(session.config, JSON_REPORT), report)
    if _value(session.config, MARKDOWN_REPORT):
        write_text(_value(session.config, MARKDOWN_REPORT), markdown_summary(report))


def _plugin_report(state: PluginState) -> dict[str, Any]:
    settings = state.settings()
    params = {name: state.results[name] for name in sorted(state.results, key=_parameter_order(state))}
    return {
        "submission": state.submission,
        "assignment": settings.assignment,
        "passed": all(r["passed"] for r in params.values()),
        "seed": state.seed,
        "settings": {"examples": settings.max_examples, "dtypes": list(settings.dtypes),
                     "devices": None if settings.devices is None else list(settings.devices),
                     "stress": settings.stress, "rtol": settings.rtol, "atol": settings.atol},
        "load_error": None,
        "score": float(sum(1 for r in params.values() if r["passed"])),
        "max_score": float(len(params)),
        "parameters": params,
    }


def _parameter_order(state: PluginState) -> Any:
    from gradcheckers.assignment import get_assignment

    order = list(get_assignment(state.settings().assignment).parameters)
    return lambda name: order.index(name) if name in order else len(order)


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    state = config.stash.get(STATE, None)
    if state is None or not state.results:
        return
    from gradcheckers.report import describe_case

    tr = terminalreporter
    tr.section("gradcheckers")
    report = _plugin_report(state)
    for name, result in report["parameters"].items():
        if result["passed"]:
            tr.write_line(f"{name}: passed ({result['examples']} examples)")
        else:
            tr.write_line(f"{name}: FAILED ({result['reason']}) after {result['examples']} examples; "
                          f"smallest case: {describe_case(result.get('counterexample')) or 'n/a'}")
            if result.get("worst"):
                w = result["worst"]
                tr.write_line(f"    worst element {tuple(w['index'])}: analytic {w['analytic']:.6g}, autograd "
                              f"{w['autograd']:.6g}, finite differences {w['finite_differences']:.6g}")
            if result.get("diagnosis"):
                tr.write_line(f"    likely cause: {result['diagnosis']}")
            tr.write_line(f"    reproduce: pytest -p gradcheckers {SUBMISSION}={state.submission} "
                          f"{SEED}={state.seed} -k grad_{name}")
    tr.write_line(f"score {report['score']:g} / {report['max_score']:g} (seed {state.seed})")
