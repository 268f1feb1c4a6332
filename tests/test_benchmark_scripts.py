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


def test_official_parity_compares_every_gradient() -> None:
    """The official comparison's gradient check tells a ``detach`` in another place (no output changes) and a
    gradient off in one tensor from the official code's, by name."""
    import torch
    from torch import nn

    gradient_parity = load_benchmark("official_parity").gradient_parity

    class Net(nn.Module):
        def __init__(self, detach: bool = False, scale: float = 1.0) -> None:
            super().__init__()
            torch.manual_seed(0)
            self.a, self.b = nn.Linear(3, 4), nn.Linear(4, 2)
            self.detach, self.scale = detach, scale

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            h = self.a(x)
            return self.b(h.detach() if self.detach else h) * self.scale

    def backward(net: Net) -> Net:
        net(torch.ones(2, 3)).square().sum().backward()
        return net

    official = backward(Net())
    same = gradient_parity(official, backward(Net()))
    assert same["grad_tensors"] == 4 and same["grad_max_rel_diff"] == 0.0 and same["grad_one_sided"] == []
    detached = gradient_parity(official, backward(Net(detach=True)))
    assert detached["grad_one_sided"] == ["a.bias", "a.weight"] and detached["grad_tensors"] == 2
    off = gradient_parity(official, backward(Net(scale=1.0 + 1e-6)))
    assert off["grad_max_rel_diff"] > 1e-6 and off["grad_worst"].startswith(("a.", "b."))
    assert off["params_only_official"] == off["params_only_ours"] == []


def test_official_param_groups_reports_every_difference() -> None:
    """The optimizer-group comparison counts a tensor whose LR or weight decay differs, and names the tensors
    that one side lacks (a renamed parameter must not pass as compared)."""
    differences = load_benchmark("official_param_groups").differences
    official = {"a": (1e-4, 0.0), "b": (1e-5, 1e-4), "gone": (1e-4, 1e-4)}
    ours = {"a": (1e-4, 0.0), "b": (1e-5, 0.0), "new": (1e-4, 1e-4)}
    got = differences(official, ours)
    assert (got["compared"], got["differ"], got["official_only"], got["ours_only"]) == (2, 1, ["gone"], ["new"])
    assert got["examples"] == {"b": {"official": (1e-5, 1e-4), "ours": (1e-5, 0.0)}}
    assert differences(official, dict(official))["differ"] == 0
