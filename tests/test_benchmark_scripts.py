"""Every script in ``benchmarks/`` (the README's figures come from them) still imports against today's package and
parses its options: ``--help`` exits 0 and prints its usage. Their runs take minutes to hours and are not run here."""

from __future__ import annotations

import sys

import pytest

from tests.conftest import BENCHMARKS, load_benchmark

SCRIPTS = sorted(p.stem for p in BENCHMARKS.glob("*.py"))


def test_every_script_is_listed() -> None:
    assert len(SCRIPTS) >= 15 and {"official_parity", "train_step_ab", "load_test"} <= set(SCRIPTS)


@pytest.mark.parametrize("name", SCRIPTS)
def test_script_imports_and_parses_help(
    name: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    module = load_benchmark(name)
    monkeypatch.setattr(sys, "argv", [f"{name}.py", "--help"])  # for the scripts whose main() reads sys.argv
    with pytest.raises(SystemExit) as done:
        module.main() if module.main.__code__.co_argcount == 0 else module.main(["--help"])
    assert done.value.code == 0
    assert capsys.readouterr().out.startswith("usage: ")
