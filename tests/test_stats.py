"""``scpt.training.stats``: mean ± sample std, and the Student t interval against tabulated quantiles."""

from __future__ import annotations

import math

import pytest

from scpt.training.stats import mean_std, t_interval


def test_mean_std_known_values() -> None:
    assert mean_std([1.0, 2.0, 4.0]) == {"mean": pytest.approx(7 / 3), "std": pytest.approx(math.sqrt(7 / 3)), "n": 3}
    assert mean_std([5.0]) == {"mean": 5.0, "std": None, "n": 1}  # no spread from one value


def test_t_interval_uses_the_student_quantiles() -> None:
    # t(0.975, 2) = 4.302653, t(0.975, 1) = 12.706205, t(0.95, 4) = 2.131847 (standard tables)
    low, high = t_interval([1.0, 2.0, 3.0])  # mean 2, s 1
    assert (low, high) == pytest.approx((2 - 4.302653 / math.sqrt(3), 2 + 4.302653 / math.sqrt(3)), abs=1e-6)
    assert t_interval([2.0, 4.0]) == pytest.approx((3 - 12.706205, 3 + 12.706205), abs=1e-6)  # s = sqrt(2)
    values = [1.0, 2.0, 3.0, 4.0, 5.0]  # mean 3, s sqrt(2.5)
    half = 2.131847 * math.sqrt(2.5) / math.sqrt(5)
    assert t_interval(values, confidence=0.9) == pytest.approx((3 - half, 3 + half), abs=1e-6)
    with pytest.raises(ValueError, match="at least 2 values, got 1"):
        t_interval([1.0])
    with pytest.raises(ValueError, match=r"confidence must be in \(0, 1\), got 1.5"):
        t_interval([1.0, 2.0], confidence=1.5)
