"""configs/loss/*.yaml build the loss they name, with the hyperparameters they state, via jsonargparse.

This is how the Lightning CLI will read ``--model.loss`` (a class path from ``scpt.losses``).
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from jsonargparse import ArgumentParser
from torch import nn

from scpt.losses import DSCLLoss, SimCSELoss, SupConLoss

CONFIG_DIR = Path(__file__).resolve().parents[1] / "configs" / "loss"


def build(path: Path) -> nn.Module:
    parser = ArgumentParser(exit_on_error=False)
    parser.add_argument("--loss", type=nn.Module)
    config = parser.parse_object({"loss": yaml.safe_load(path.read_text())})
    return parser.instantiate(config).loss


@pytest.mark.parametrize(
    "name, cls, expected",
    [
        ("supcon_out", SupConLoss, {"temperature": 0.07, "base_temperature": 0.07, "variant": "out"}),
        ("supcon_out_tau05", SupConLoss, {"temperature": 0.5, "base_temperature": 0.07, "variant": "out"}),
        ("supcon_in", SupConLoss, {"temperature": 0.07, "base_temperature": 0.07, "variant": "in"}),
        ("dscl", DSCLLoss, {"temperature": 0.07, "alpha": 1 / 9}),
        ("simcse", SimCSELoss, {"temperature": 0.05, "hard_negative_weight": 0.0}),
    ],
)
def test_loss_config_builds_stated_loss(name: str, cls: type, expected: dict) -> None:
    loss = build(CONFIG_DIR / f"{name}.yaml")
    assert type(loss) is cls
    for attribute, value in expected.items():
        assert getattr(loss, attribute) == (pytest.approx(value) if isinstance(value, float) else value)
    assert loss.normalize is True


def test_every_loss_config_is_covered() -> None:
    names = {path.stem for path in CONFIG_DIR.glob("*.yaml")}
    assert names == {"supcon_out", "supcon_out_tau05", "supcon_in", "dscl", "simcse"}


def test_bad_hyperparameter_in_config_is_rejected(tmp_path: Path) -> None:
    config = yaml.safe_load((CONFIG_DIR / "dscl.yaml").read_text())
    config["init_args"]["alpha"] = 1.5
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(config))
    with pytest.raises(ValueError, match=r"alpha must be in \[0, 1\], got 1.5"):
        build(path)
