"""One job: reusing references across the submissions of a process gives the verdicts of single checks."""

from __future__ import annotations

from pathlib import Path

from gradcheckers import jobs
from gradcheckers.jobs import GradeSpec, Job, run_job, settings_digest
from gradcheckers.property import CheckSettings
from gradcheckers.sandbox import Limits
from gradcheckers.session import check_submission

SUBMISSIONS = Path(__file__).parent / "submissions"
# Correct first, so that the wrong ones after it meet a cache full of the cases it passed on.
NAMES = ("correct.py", "gate_wrong_shape.py", "gate_nan.py", "correct.py", "syntax_error.py")


def test_reused_references_give_the_verdicts_of_single_checks() -> None:
    settings, limits = CheckSettings(max_examples=15, seed=3), Limits(call_timeout=20)
    spec = GradeSpec(settings, limits, reuse=True)
    jobs._CACHES.clear()
    for name in NAMES:
        path = SUBMISSIONS / name
        shared = run_job(Job(name, str(path), path.read_bytes()), spec)
        alone = check_submission(str(path), settings, limits).to_json()
        timeless = lambda report: {p: {k: v for k, v in r.items() if k != "seconds"}
                                   for p, r in report["parameters"].items()}
        assert timeless(shared) == timeless(alone), name
        assert (shared["load_error"], shared["submission"]) == (alone["load_error"], str(path)), name
    assert len(jobs._CACHES[settings.assignment]._entries) > 0  # the cache was used, and kept


def test_the_settings_digest_changes_with_what_decides_a_verdict() -> None:
    base = GradeSpec(CheckSettings(), Limits())
    assert settings_digest(base) == settings_digest(GradeSpec(CheckSettings(), Limits(), reuse=False))
    for other in (GradeSpec(CheckSettings(seed=1), Limits()), GradeSpec(CheckSettings(), Limits(call_timeout=3)),
                  GradeSpec(CheckSettings(), Limits(), definitions_only=True),
                  GradeSpec(CheckSettings(), Limits(), parameters=("W1",))):
        assert settings_digest(other) != settings_digest(base)
