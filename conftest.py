"""Test-suite configuration: deterministic Hypothesis for our own tests.

The plugin itself is not registered here: it is loaded through its ``pytest11`` entry point, and pluggy
refuses a module registered under two names.
"""

from __future__ import annotations

from hypothesis import HealthCheck, settings

# Seeded, no deadline (a loaded CI machine must not turn slow examples into failures), no example database
# (a test's outcome must not depend on what an earlier run stored).
settings.register_profile(
    "gradcheckers-tests",
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
settings.load_profile("gradcheckers-tests")

pytest_plugins = ["pytester"]
