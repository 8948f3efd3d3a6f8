"""The suite's warning policy (pyproject.toml's `filterwarnings`): a deprecation that names
our code (apps, core, sigsentry, tests) as its caller fails the test, so the next Django,
DRF or Python release's removals are met in CI; one raised inside a third-party package is
the package's to fix and stays a warning."""

from __future__ import annotations

import warnings

import pytest

OURS = ["apps.accounts.emails", "core.mail", "sigsentry.settings", "tests.factories", "core"]
THEIRS = ["rest_framework.fields", "django.core.mail.message", "environ.environ", "appsflyer"]


def warn_from(module: str, category: type[Warning]) -> None:
    """A warning attributed to `module`, as `stacklevel` attributes one to its caller."""
    path = module.replace(".", "/") + ".py"
    warnings.warn_explicit("an API on its way out", category, path, 1, module=module)


@pytest.mark.parametrize("category", [DeprecationWarning, PendingDeprecationWarning])
@pytest.mark.parametrize("module", OURS)
def test_a_deprecation_our_code_calls_fails_the_test(module, category, pytestconfig):
    if pytestconfig.getoption("pythonwarnings"):
        pytest.skip("pytest -W (to list every warning, say) comes after the policy, and wins")
    with pytest.raises(category):
        warn_from(module, category)


@pytest.mark.parametrize("module", THEIRS)
def test_a_deprecation_inside_a_package_stays_a_warning(module):
    with warnings.catch_warnings(record=True) as caught:
        warn_from(module, PendingDeprecationWarning)

    assert [w.category for w in caught] == [PendingDeprecationWarning]
