"""The locks (requirements/*.txt, `make lock`) agree with pyproject.toml.

Every install path installs from a lock with --require-hashes, so a dependency added to,
removed from or narrowed in pyproject.toml and not relocked would be silently ignored:
the first install would still pass. Read from the files only, no network.
"""

import re
import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parent.parent
PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==(\S+)")
VIA_PYPROJECT = "sigsentry (pyproject.toml)"


def locked(lock_text: str) -> dict[str, dict]:
    """{name: {"version", "hashes", "direct"}}: `direct` when the lock says the project asked."""
    pins: dict[str, dict] = {}
    current = None
    for line in lock_text.splitlines():
        if match := PIN.match(line):
            current = {"version": match[2], "hashes": 0, "direct": False}
            pins[canonicalize_name(match[1])] = current
        elif current is not None:
            current["hashes"] += line.count("--hash=sha256:")
            current["direct"] |= line.strip().lstrip("#").strip().endswith(VIA_PYPROJECT)
    return pins


def lock_disagreements(pyproject: dict, lock_text: str, extras: tuple[str, ...]) -> list[str]:
    """What a lock of pyproject's dependencies (and these extras) gets wrong, one line each."""
    project = pyproject["project"]
    wanted = [Requirement(line) for line in project["dependencies"]]
    for extra in extras:
        wanted += [Requirement(line) for line in project["optional-dependencies"][extra]]
    build = [Requirement(line) for line in pyproject["build-system"]["requires"]]
    pins = locked(lock_text)
    problems = []
    for requirement in wanted + build:
        name = canonicalize_name(requirement.name)
        if name not in pins:
            problems.append(f"{requirement.name} is not in the lock")
        elif not requirement.specifier.contains(pins[name]["version"], prereleases=True):
            problems.append(
                f"{requirement.name}=={pins[name]['version']} is outside {requirement.specifier}"
            )
    declared = {canonicalize_name(requirement.name) for requirement in wanted}
    for name, pin in sorted(pins.items()):
        if pin["direct"] and name not in declared:
            problems.append(f"{name} is locked as the project's but pyproject.toml has no {name}")
        if not pin["hashes"]:
            problems.append(f"{name}=={pin['version']} has no hash")
    return problems


def read_pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def test_runtime_lock_agrees_with_pyproject():
    lock = (ROOT / "requirements" / "runtime.txt").read_text()

    assert lock_disagreements(read_pyproject(), lock, extras=()) == [], "run `make lock`"


def test_dev_lock_agrees_with_pyproject_and_its_extras():
    lock = (ROOT / "requirements" / "dev.txt").read_text()

    assert lock_disagreements(read_pyproject(), lock, extras=("dev", "bench")) == [], (
        "run `make lock`"
    )


def test_dev_lock_runs_the_versions_the_runtime_lock_deploys():
    runtime = locked((ROOT / "requirements" / "runtime.txt").read_text())
    dev = locked((ROOT / "requirements" / "dev.txt").read_text())

    assert {name: dev[name]["version"] for name in runtime if name in dev} == {
        name: pin["version"] for name, pin in runtime.items()
    }


PYPROJECT = {
    "project": {
        "dependencies": ["Django>=5.2.19,<5.3", "PyJWT>=2.13,<3"],
        "optional-dependencies": {"dev": ["pytest>=9.0.3"]},
    },
    "build-system": {"requires": ["setuptools>=83"]},
}


MATCHING = (("django", "5.2.20", True), ("pyjwt", "2.15.1", True), ("setuptools", "84", False))


def lock_of(*pins: tuple[str, str, bool]) -> str:
    lines = []
    for name, version, direct in pins:
        lines += [f"{name}=={version} \\", "    --hash=sha256:" + "0" * 64]
        lines.append("    # via sigsentry (pyproject.toml)" if direct else "    # via django")
    return "\n".join(lines) + "\n"


def test_a_lock_that_matches_has_no_disagreement():
    lock = lock_of(*MATCHING)

    assert lock_disagreements(PYPROJECT, lock, extras=()) == []


def test_a_lock_from_another_pyproject_is_caught():
    lock = lock_of(
        ("django", "5.2.18", True),  # below the floor raised since
        ("requests", "2.34.2", True),  # dropped from pyproject.toml since
        ("setuptools", "69.0", False),  # below the build-system's floor
    )  # and PyJWT, added since, is missing

    assert lock_disagreements(PYPROJECT, lock, extras=()) == [
        "Django==5.2.18 is outside <5.3,>=5.2.19",
        "PyJWT is not in the lock",
        "setuptools==69.0 is outside >=83",
        "requests is locked as the project's but pyproject.toml has no requests",
    ]


def test_an_extra_missing_from_the_lock_is_caught():
    lock = lock_of(*MATCHING)

    assert lock_disagreements(PYPROJECT, lock, extras=("dev",)) == ["pytest is not in the lock"]


def test_a_pin_without_a_hash_is_caught():
    lock = lock_of(("django", "5.2.20", True), ("setuptools", "84", False))
    lock += "pyjwt==2.15.1\n    # via sigsentry (pyproject.toml)\n"

    assert lock_disagreements(PYPROJECT, lock, extras=()) == ["pyjwt==2.15.1 has no hash"]
