"""The pytest plugin: ``pytest -p gradcheckers`` (auto-loaded through the ``pytest11`` entry point).

Loading it must cost nothing in projects that never use it: this module imports only pytest and the
standard library; torch, Hypothesis and the rest of gradcheckers are imported when a check actually runs.
Hooks stay short and delegate to :class:`PluginState`; per-test results ride on the test reports (an attribute
of the report, which pytest-xdist serialises with it, as Hypothesis's own plugin does), never as
``user_properties``: those become ``<properties>`` inside ``<testcase>`` in ``--junitxml`` output, which Jenkins'
JUnit schema refuses.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shlex
from collections.abc import Generator, Iterator
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
    from gradcheckers.limits import Limits
    from gradcheckers.property import CheckSettings
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
RESULT_KEY = "gradcheckers_result"  # the attribute of a test report that carries a parameter's verdict
CACHE_SEED_KEY = "gradcheckers/seed"
WORKER_SEED_KEY = "gradcheckers_seed"  # the controller's seed, handed to pytest-xdist workers
CANNOT_CHECK = "cannot check the submission: "
# The item of a layer submission's forward (gradcheckers.forward_verdict.FORWARD, without importing torch here).
FORWARD_ITEM = "forward"
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
    DEVICES: (name_list(DEVICE_CHOICES), None, "devices, comma-separated (default: cpu or $GRADCHECKERS_DEVICES)"),
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
        # Every option is read (and so validated) now: a bad ini value is a usage error before collection,
        # not a crash in whichever test first needs it.
        self.values: dict[str, Any] = {option: _value(config, option) for option in (*OPTIONS, *FLAGS)}
        if (self.values[RTOL] is None) != (self.values[ATOL] is None):
            raise pytest.UsageError(f"{RTOL} and {ATOL} go together: give both or neither")
        for option in (JSON_REPORT, MARKDOWN_REPORT):
            if self.values[option] and Path(self.values[option]).is_dir():
                raise pytest.UsageError(f"{option}={self.values[option]}: is a directory, expected a file path")
        if self.values[DATABASE] and Path(self.values[DATABASE]).is_file():
            raise pytest.UsageError(f"{DATABASE}={self.values[DATABASE]}: is a file, expected a directory")
        self.seed = self._settle_seed(config, self.values[SEED])
        self.seed_given = config.getoption(_ini_name(SEED)) is not None or bool(config.getini(_ini_name(SEED)))
        self.submission: str | None = self.values[SUBMISSION]
        self.submission_path: Path | None = None
        self.submission_id = ""  # the node id of the submission's collector, e.g. "hw.py"
        self.load_error: str | None = None  # why the submission could not be collected, if it could not
        self.sessions: dict[str, SubmissionSession] = {}
        self.results: dict[str, dict[str, Any]] = {}  # parameter -> ParameterResult JSON, from reports
        self.load_reason: str | None = None
        self.output = ""  # the submission's captured output (the longest any xdist worker saw)
        self.cell_notes: list[str] = []  # a notebook's cells stopped while loading (as any xdist worker saw them)
        self.timings: dict[str, float] = {}  # summed over the items, like the CLI's
        self._hypothesis_home: Any = None  # a tempfile.TemporaryDirectory while a gate run needs one

    @staticmethod
    def _settle_seed(config: pytest.Config, value: str) -> int:
        # Settled once, printed in the header as a flag that reproduces the run (as pytest-randomly does).
        # pytest-xdist workers take the controller's seed: "random" must not draw one per worker.
        workerinput = getattr(config, "workerinput", None)
        if workerinput is not None and WORKER_SEED_KEY in workerinput:
            return int(workerinput[WORKER_SEED_KEY])
        cache = getattr(config, "cache", None)  # absent under -p no:cacheprovider
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
            "max_examples": self.values[EXAMPLES],
            "seed": self.seed,
            "dtypes": tuple(self.values[DTYPES]),
            "stress": self.values[STRESS],
            "rtol": self.values[RTOL],
            "atol": self.values[ATOL],
            "database": self.values[DATABASE],
        }
        if self.values[DEVICES]:
            values["devices"] = tuple(self.values[DEVICES])  # else CheckSettings' machine-independent default
        if self.values[ASSIGNMENT]:
            values["assignment"] = self.values[ASSIGNMENT]
        values.update(overrides)
        return CheckSettings(**values)

    def limits(self) -> Limits:
        from gradcheckers.limits import Limits

        return Limits(call_timeout=self.values[TIMEOUT], allow_autograd=self.values[ALLOW_AUTOGRAD])

    def session(self, path: Path) -> SubmissionSession:
        from gradcheckers.session import SubmissionSession

        key = str(path)
        if key not in self.sessions:
            self.sessions[key] = SubmissionSession(key, self.settings(), self.limits())
        return self.sessions[key]

    def check(self, parameter: str) -> dict[str, Any]:
        """The JSON form of one parameter's verdict on the submission, with what the JSON report gathers from
        every item: the load error and its reason, the submission's output so far, the time spent."""
        assert self.submission_path is not None
        session = self.session(self.submission_path)
        before = dict(session.report.timings)
        result = self._verdict(session, parameter)
        worker = session._worker
        return {
            **result,
            "load_error": session.report.load_error,
            "load_reason": session.report.load_reason,
            "output": worker.output if worker is not None else session.report.output,
            "cell_notes": session.report.cell_notes,
            "timings": {k: v - before.get(k, 0.0) for k, v in session.report.timings.items()},
        }

    @staticmethod
    def _verdict(session: SubmissionSession, parameter: str) -> dict[str, Any]:
        from gradcheckers.errors import LoadError

        if session.report.load_error is None:
            try:
                if parameter == FORWARD_ITEM:
                    forward = session.check_forward()
                    assert forward is not None, "a forward item is collected only for an assignment with a forward"
                    return forward.to_json()
                return session.check(parameter).to_json()
            except LoadError:
                pass  # recorded on session.report
        # The submission died while loading (it compiled, so at import). Load it once: a submission that hangs
        # at import would otherwise cost one load timeout per parameter.
        return {
            "passed": False,
            "examples": 0,
            "inconclusive": 0,
            "reason": "error",
            "message": f"cannot load the submission: {session.report.load_error}",
            "counterexample": None,
            "worst": None,
            "diagnosis": None,
        }

    def reproduce(self, parameter: str) -> str:
        """The one command that reproduces a parameter's verdict: every option that decides it, and -k."""
        words = ["pytest", "-p", "gradcheckers", f"{SUBMISSION}={self.submission}", f"{SEED}={self.seed}"]
        for option in (ASSIGNMENT, EXAMPLES, DTYPES, DEVICES, RTOL, ATOL, TIMEOUT):
            value = self.values[option]
            if value is not None and value != OPTIONS[option][1]:
                words.append(f"{option}={','.join(value) if isinstance(value, tuple) else value}")
        words += [flag for flag in FLAGS if self.values[flag]]
        return shlex.join([*words, "-k", parameter if parameter == FORWARD_ITEM else f"grad_{parameter}"])

    @pytest.hookimpl(optionalhook=True)
    def pytest_configure_node(self, node: Any) -> None:
        # pytest-xdist, on the controller: hand the settled seed to each worker.
        node.workerinput[WORKER_SEED_KEY] = self.seed

    def pytest_collectreport(self, report: pytest.CollectReport) -> None:
        # Runs on the xdist controller too, so the JSON and Markdown reports can say why nothing was checked.
        if report.failed and self.submission_id and report.nodeid == self.submission_id:
            self.load_error = str(report.longrepr).removeprefix(CANNOT_CHECK)
            self.load_reason = _load_reason(self.submission_path)

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        # Runs on the xdist controller too: the results arrive on the reports, not from this process.
        value = getattr(report, RESULT_KEY, None)
        if report.when != "call" or value is None:
            return
        data = json.loads(str(value))
        parameter = data.pop("parameter")
        for key, seconds in data.pop("timings", {}).items():
            self.timings[key] = self.timings.get(key, 0.0) + seconds
        output = data.pop("output", "") or ""
        self.output = output if len(output) > len(self.output) else self.output
        notes = data.pop("cell_notes", []) or []
        self.cell_notes = notes if len(notes) > len(self.cell_notes) else self.cell_notes
        load_error, load_reason = data.pop("load_error", None), data.pop("load_reason", None)
        if load_error is not None and self.load_error is None:
            self.load_error, self.load_reason = load_error, load_reason
        self.results[parameter] = {**data, "seconds": round(report.duration, 4)}

    def private_hypothesis_home(self) -> None:
        """A gate run (no example database) writes nothing into the current folder: Hypothesis's storage
        (its constants cache) goes to a temporary folder, removed in :meth:`close`, as the command line's does."""
        import tempfile

        from hypothesis.configuration import set_hypothesis_home_dir

        self._hypothesis_home = tempfile.TemporaryDirectory(prefix="gradcheckers-hypothesis-")
        set_hypothesis_home_dir(self._hypothesis_home.name)

    def close(self) -> None:
        for session in self.sessions.values():
            session.close()
        self.sessions.clear()
        home = self._hypothesis_home
        if home is not None:
            from hypothesis.configuration import set_hypothesis_home_dir

            set_hypothesis_home_dir(None)  # back to Hypothesis's own default for whatever runs after
            home.cleanup()
            self._hypothesis_home = None


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
        _prepare_submission(config, state)


def _prepare_submission(config: pytest.Config, state: PluginState) -> None:
    from gradcheckers.assignment import get_assignment
    from gradcheckers.errors import InvalidArgument, LoadError
    from gradcheckers.submission import resolve_submission

    try:
        path = resolve_submission(state.submission or "").resolve()
    except LoadError as error:
        raise pytest.UsageError(f"{SUBMISSION}: {error}") from None
    try:  # what only CheckSettings knows: which devices this machine has
        settings = state.settings()
    except InvalidArgument as error:
        raise pytest.UsageError(f"gradcheckers: {error}") from None
    try:
        get_assignment(settings.assignment)
    except InvalidArgument as error:
        raise pytest.UsageError(f"{ASSIGNMENT}: {error}") from None
    state.submission_path = path
    if not state.values[DATABASE]:
        state.private_hypothesis_home()
    if not getattr(config.option, "numprocesses", None) or hasattr(config, "workerinput"):
        from gradcheckers.sandbox import prestart

        prestart()  # overlap the worker server's torch import with this process's (not on an xdist controller)
    state.submission_id = _node_id(config.rootpath, path)
    # The submission is not collected by pytest's walk over the file system: that walk imports the conftest.py
    # and __init__.py files beside it into this process, and the submission is untrusted. SubmissionFile is
    # added to the session's own collection instead (pytest_make_collect_report). Without explicit paths,
    # pytest would also collect the project's tests: check only the submission then.
    if config.args_source != pytest.Config.ArgsSource.ARGS:
        config.args = []
    else:
        root = config.invocation_params.dir
        config.args = [arg for arg in config.args if (root / arg.split("::")[0]).resolve() != path]


def _load_reason(path: Path | None) -> str | None:
    """Why a submission that failed to collect cannot be checked (reading and compiling it runs nothing)."""
    from gradcheckers.errors import LoadError
    from gradcheckers.submission import load_source

    try:
        load_source(path) if path is not None else None
    except LoadError as error:
        return error.reason
    return None


def _node_id(root: Path, path: Path) -> str:
    try:
        return path.relative_to(root).as_posix()
    except ValueError:
        return path.name  # a bundled example, or a file outside the rootdir


def pytest_unconfigure(config: pytest.Config) -> None:
    state = config.stash.get(STATE, None)
    if state is not None:
        state.close()


def pytest_report_header(config: pytest.Config) -> list[str] | None:
    state = config.stash[STATE]
    if not state.submission and not state.seed_given:
        return None
    return [f"gradcheckers: using {SEED}={state.seed}"]


@pytest.hookimpl(wrapper=True)
def pytest_make_collect_report(
    collector: pytest.Collector,
) -> Generator[None, pytest.CollectReport, pytest.CollectReport]:
    # The session's own collection (the paths on the command line) gets the submission's collector added.
    report = yield
    state = collector.config.stash[STATE]
    if isinstance(collector, pytest.Session) and report.passed and state.submission_path is not None:
        name = state.submission_id
        report.result.append(SubmissionFile.from_parent(collector, name=name, nodeid=name))
    return report


def pytest_ignore_collect(collection_path: Path, config: pytest.Config) -> bool | None:
    # A project's own run (`pytest . --gradcheckers-submission hw.py`) must not import hw.py as a test module.
    path = config.stash[STATE].submission_path
    if path is not None and collection_path.name == path.name and collection_path.resolve() == path:
        return True
    return None


class SubmissionFile(pytest.Collector):
    """A submission: one item per parameter of the assignment.

    Its nodes keep the rootdir as their path, so the hooks and fixtures they see come from the project's
    conftest.py files, never from the submission's directory.
    """

    def collect(self) -> Iterator[pytest.Item]:
        from gradcheckers.assignment import get_assignment
        from gradcheckers.errors import LoadError
        from gradcheckers.submission import load_source

        state = self.config.stash[STATE]
        assert state.submission_path is not None
        try:
            load_source(state.submission_path)  # reads and compiles it; runs nothing
        except LoadError as error:
            raise self.CollectError(f"{CANNOT_CHECK}{error}") from None
        assignment = get_assignment(state.settings().assignment)
        if assignment.forward is not None and assignment.adapter is not None:  # a layer: its forward first
            yield SubmissionItem.from_parent(self, name=FORWARD_ITEM, parameter=FORWARD_ITEM)
        for parameter in assignment.parameters:
            yield SubmissionItem.from_parent(self, name=f"grad_{parameter}", parameter=parameter)


ITEM_RESULT = pytest.StashKey[str]()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Generator[None, Any, Any]:
    # The verdict rides on the call's report as a plain attribute: pytest-xdist sends a report's attributes to
    # the controller, and --junitxml leaves them out.
    report = yield
    if call.when == "call" and ITEM_RESULT in item.stash:
        setattr(report, RESULT_KEY, item.stash[ITEM_RESULT])
    return report


class GradientCheckFailed(Exception):
    """Raised by a submission item; rendered by ``repr_failure`` without a traceback."""


class SubmissionItem(pytest.Item):
    def __init__(self, *, parameter: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.parameter = parameter

    def runtest(self) -> None:
        from gradcheckers.report import format_failure

        state = self.config.stash[STATE]
        result = state.check(self.parameter)
        self.stash[ITEM_RESULT] = json.dumps({"parameter": self.parameter, **result})
        if not result["passed"]:
            raise GradientCheckFailed(format_failure(self.parameter, result, state.reproduce(self.parameter)))

    def repr_failure(self, excinfo: pytest.ExceptionInfo[BaseException], style: Any = None) -> Any:
        if isinstance(excinfo.value, GradientCheckFailed):
            # The message alone, no traceback ("value" style, as pytest.fail(pytrace=False) gets). Not a plain
            # string: before pytest 9 the short summary takes its text from the repr's crash entry, which a
            # string lacks, and pytest-xdist sends a repr with one along with the report.
            representation = excinfo.getrepr(style="value")
            crash = getattr(representation, "reprcrash", None)
            if crash is not None:
                crash.message = str(excinfo.value)
            return representation
        return super().repr_failure(excinfo, style)

    def reportinfo(self) -> tuple[Path, int | None, str]:
        # The domain is the item's name: pytest -v turns dots in it into "::" (hw.py would read hw::py).
        return self.config.stash[STATE].submission_path or self.path, None, self.name


# -- seeding ordinary @given tests -------------------------------------------------------------------------


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    state = config.stash[STATE]
    for item in items:
        function = getattr(item, "obj", None)
        # A Hypothesis test carries a .hypothesis attribute, and _hypothesis_internal_use_seed: None unless
        # @seed set it. Seed it from the plugin when the user asked for a seed or marked the test, unless it
        # has its own.
        if function is None or not hasattr(function, "hypothesis"):
            continue
        if (state.seed_given or item.get_closest_marker(MARKER)) and getattr(
            function, "_hypothesis_internal_use_seed", None
        ) is None:
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
    """One case drawn from the settings as the check draws them (any assignment's named sizes and hyperparameters,
    its bounds and constraints), at the default data regime and scale; the same for a given test and seed on every
    run."""
    import dataclasses

    from gradcheckers.assignment import get_assignment
    from gradcheckers.strategies import example

    s = gradcheckers_settings
    strategy = s.case_strategy(get_assignment(s.assignment))
    case = example(strategy, random.Random(f"{s.seed}:{request.node.nodeid}").randrange(2**32))
    return dataclasses.replace(case, scale=1.0, regime="normal")


@pytest.fixture
def gradcheckers_tensors(gradcheckers_case: Any, gradcheckers_settings: CheckSettings) -> dict[str, Any]:
    """The case's tensors by argument name (``X, Y, W1, b1, W2, b2`` for the seed)."""
    from gradcheckers.assignment import get_assignment

    return get_assignment(gradcheckers_settings.assignment).tensors(gradcheckers_case)


@pytest.fixture
def gradcheckers_references(gradcheckers_case: Any, gradcheckers_tensors: dict[str, Any],
                            gradcheckers_settings: CheckSettings) -> Any:
    """Autograd and finite-difference gradients (float64) of the case, as a ``References`` (at the case's
    hyperparameters, for an assignment that has some)."""
    from gradcheckers.assignment import get_assignment
    from gradcheckers.references import compute_references

    assignment = get_assignment(gradcheckers_settings.assignment).bound(gradcheckers_case)
    return compute_references(assignment, gradcheckers_tensors)


# -- reporting ----------------------------------------------------------------------------------------------


def pytest_sessionfinish(session: pytest.Session) -> None:
    state = session.config.stash[STATE]
    state.close()
    if hasattr(session.config, "workerinput") or not (state.results or state.load_error):
        return  # xdist workers report to the controller, which writes the reports
    from gradcheckers.report import markdown_summary, write_json, write_text

    report = _plugin_report(state)
    if state.values[JSON_REPORT]:
        write_json(state.values[JSON_REPORT], report)
    # As the command line does: the summary also goes to a GitHub Actions job's summary, with or without a file.
    summary = os.environ.get("GITHUB_STEP_SUMMARY")
    if state.values[MARKDOWN_REPORT] or summary:
        text = markdown_summary(report)
        if state.values[MARKDOWN_REPORT]:
            write_text(state.values[MARKDOWN_REPORT], text)
        if summary:
            write_text(summary, text, append=True)


def _plugin_report(state: PluginState) -> dict[str, Any]:
    """The JSON report of the checked parameters, in the schema of ``SubmissionReport.to_json()``."""
    from gradcheckers.assignment import get_assignment

    settings = state.settings()
    order = list(get_assignment(settings.assignment).parameters)
    rank = {name: index for index, name in enumerate(order)}
    params = {name: state.results[name] for name in sorted(state.results, key=lambda n: rank.get(n, len(order)))
              if name != FORWARD_ITEM}
    forward = state.results.get(FORWARD_ITEM)  # a layer's forward: a verdict of its own, not scored
    return {
        "submission": state.submission,
        "assignment": settings.assignment,
        "passed": state.load_error is None and all(r["passed"] for r in params.values())
        and (forward is None or forward["passed"]),
        "seed": state.seed,
        "settings": {
            "examples": settings.max_examples,
            "dtypes": list(settings.dtypes),
            "devices": None if settings.devices is None else list(settings.devices),
            "stress": settings.stress,
            "rtol": settings.rtol,
            "atol": settings.atol,
        },
        "load_error": state.load_error,
        "load_reason": state.load_reason,
        "internal_error": None,
        "score": float(sum(1 for r in params.values() if r["passed"] and state.load_error is None)),
        # The parameters checked (-k may select some); all of them when the submission could not be loaded.
        "max_score": float(len(params) or len(order)),
        "parameters": {} if state.load_error else params,
        "forward": None if state.load_error else forward,
        "output": state.output,
        "cell_notes": state.cell_notes,
        "timings": {k: round(v, 4) for k, v in state.timings.items()},
    }


def _number(value: Any) -> str:
    # The JSON form writes non-finite values as strings ("nan", "inf"): they have no :g format.
    return f"{value:.6g}" if isinstance(value, (int, float)) else str(value)


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    state = config.stash.get(STATE, None)
    if state is None or not state.results:
        return  # nothing was checked
    from gradcheckers.report import count_cases, describe_case

    tr = terminalreporter
    tr.section("gradcheckers")
    report = _plugin_report(state)
    if state.load_error:
        tr.write_line(f"{CANNOT_CHECK}{state.load_error}")
    verdicts = {**({FORWARD_ITEM: report["forward"]} if report["forward"] else {}), **report["parameters"]}
    for name, result in verdicts.items():
        if result["passed"]:
            tr.write_line(f"{name}: passed ({count_cases(result)})")
            continue
        tr.write_line(
            f"{name}: FAILED ({result['reason']}) after {count_cases(result)}; "
            f"smallest case: {describe_case(result.get('counterexample')) or 'n/a'}"
        )
        if result.get("worst"):
            w = result["worst"]
            tr.write_line(
                f"    worst element {tuple(w['index'])}: analytic {_number(w['analytic'])}, autograd "
                f"{_number(w['autograd'])}, finite differences {_number(w['finite_differences'])}"
            )
        if result.get("diagnosis"):
            tr.write_line(f"    likely cause: {result['diagnosis']}")
        tr.write_line(f"    reproduce: {state.reproduce(name)}")
    tr.write_line(f"score {report['score']:g} / {report['max_score']:g} ({SEED}={state.seed})")
