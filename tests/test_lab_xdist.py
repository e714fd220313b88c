"""pytest-xdist across benches: with -n 2 and two benches named, each worker claims one bench."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

pytest_plugins = ["pytester"]
pytestmark = pytest.mark.skipif(importlib.util.find_spec("xdist") is None,
                                reason="pytest-xdist is not installed (a dependency: scripts/setup.sh installs it)")

EMULATED = Path(__file__).resolve().parent.parent / "lab_config" / "emulated.yaml"


def two_benches(folder: Path) -> tuple[Path, Path]:
    text = EMULATED.read_text().replace("emulated-secrets/", f"{EMULATED.parent}/emulated-secrets/")
    first, second = folder / "bench-a.yaml", folder / "bench-b.yaml"
    first.write_text(text.replace("name: emulated", "name: bench-a"))
    second.write_text(text.replace("name: emulated", "name: bench-b").replace("8988211000000000017",
                                                                              "8988211000000000025"))
    return first, second


def test_two_workers_each_claim_one_of_two_benches_and_the_suite_passes(pytester: pytest.Pytester) -> None:
    first, second = two_benches(pytester.path)
    pytester.makepyfile(test_on_benches="""
        import os
        import pytest

        @pytest.mark.parametrize("n", range(6))
        def test_card_of_this_worker_s_bench(n, bench, uicc):
            with open("claims.txt", "a") as out:
                out.write(f"{os.environ['PYTEST_XDIST_WORKER']} {bench.bench.name} {uicc.read_iccid()}\\n")
    """)
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-n", "2", "--no-artifacts",
                                           "--bench", str(first), "--bench", str(second), timeout=300)
    result.assert_outcomes(passed=6)
    claims = set((pytester.path / "claims.txt").read_text().split("\n")) - {""}
    assert claims == {"gw0 bench-a 8988211000000000017", "gw1 bench-b 8988211000000000025"}


def test_two_benches_without_a_worker_each_are_refused_with_the_count(pytester: pytest.Pytester) -> None:
    first, second = two_benches(pytester.path)
    pytester.makepyfile(test_nothing="def test_nothing():\n    pass\n")
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-n", "3", "--no-artifacts",
                                           "--bench", str(first), "--bench", str(second), timeout=300)
    assert result.ret != 0
    result.stderr.fnmatch_lines(["*--bench: 2 benches named for 3 workers: run with -n 2 (one worker per bench)"])
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "--no-artifacts",
                                           "--bench", str(first), "--bench", str(second), timeout=300)
    assert result.ret != 0
    result.stderr.fnmatch_lines(["*--bench: 2 benches named: run with pytest-xdist, -n 2 (one worker per bench)"])
