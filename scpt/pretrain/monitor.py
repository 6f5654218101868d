"""A callback that warns when the contrastive term collapses (docs/design.md §7).

When every feature coincides, a contrastive loss sits exactly at its collapsed value
``scale · log |A(a)|`` (``log(M - 1)`` for SupCon over M entries) and its gradient vanishes: training
looks stable while the term learns nothing. Two signs are watched:

- the training contrastive loss (``train/scl``) stays within ``tolerance`` (relative) of its collapsed
  value (``train/scl_collapsed``) for ``patience`` consecutive steps;
- the held-out mean pairwise cosine (``val/mean_cosine``) exceeds ``max_mean_cosine``.

Either logs a warning once per episode (and ``train/scl_collapsed_steps`` is logged every step);
with ``stop=True`` the run stops instead of going on.
"""

from __future__ import annotations

import math
from typing import Any

import pytorch_lightning as pl
from pytorch_lightning.utilities import rank_zero_warn


class CollapseMonitor(pl.Callback):
    """Warn (or stop) when phase 1's contrastive term sits at its collapsed value.

    Args:
        patience: consecutive training steps within ``tolerance`` of the collapsed value before warning.
        tolerance: relative distance ``|loss - collapsed| / collapsed`` that counts as collapsed (0.01 = 1%).
        max_mean_cosine: held-out mean cosine above which the features count as collapsed.
        stop: stop training (``trainer.should_stop``) instead of only warning.
        term: the objective whose loss is watched (``scl``: the contrastive term).
    """

    def __init__(
        self,
        patience: int = 50,
        tolerance: float = 0.01,
        max_mean_cosine: float = 0.95,
        stop: bool = False,
        term: str = "scl",
    ) -> None:
        if patience < 1:
            raise ValueError(f"CollapseMonitor: patience must be >= 1, got {patience}")
        if not tolerance > 0:
            raise ValueError(f"CollapseMonitor: tolerance must be > 0, got {tolerance}")
        self.patience, self.tolerance, self.max_mean_cosine = patience, tolerance, max_mean_cosine
        self.stop, self.term = stop, term
        self.collapsed_steps = 0
        self.warnings: list[str] = []

    def is_collapsed(self, loss: float, collapsed: float) -> bool:
        """Whether ``loss`` is within the tolerance of ``collapsed`` (both finite, collapsed > 0)."""
        if not (math.isfinite(loss) and math.isfinite(collapsed)) or collapsed <= 0:
            return False
        return abs(loss - collapsed) <= self.tolerance * collapsed

    def _raise_alarm(self, trainer: pl.Trainer, message: str) -> None:
        action = "stopping the run (CollapseMonitor stop=true)" if self.stop else "training goes on"
        text = f"[collapse] {message}; {action}"
        self.warnings.append(text)
        rank_zero_warn(text)
        if self.stop:
            trainer.should_stop = True

    def on_train_batch_end(
        self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        step = getattr(pl_module, "last_step", {})
        loss, collapsed = step.get(self.term), step.get(f"{self.term}_collapsed")
        if loss is None or collapsed is None:
            return
        self.collapsed_steps = self.collapsed_steps + 1 if self.is_collapsed(loss, collapsed) else 0
        pl_module.log(f"train/{self.term}_collapsed_steps", float(self.collapsed_steps), on_step=True, on_epoch=False)
        if self.collapsed_steps == self.patience:
            self._raise_alarm(
                trainer,
                f"the {self.term} loss has stayed within {self.tolerance:.0%} of its collapsed value "
                f"{collapsed:.4f} (every feature alike) for {self.patience} steps "
                f"(now {loss:.4f}, step {trainer.global_step})",
            )

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        value = trainer.callback_metrics.get("val/mean_cosine")
        if value is not None and float(value) > self.max_mean_cosine:
            self._raise_alarm(
                trainer,
                f"held-out mean cosine {float(value):.3f} > {self.max_mean_cosine} at step {trainer.global_step}: "
                "the features are nearly one point",
            )

    def state_dict(self) -> dict[str, Any]:
        return {"collapsed_steps": self.collapsed_steps}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.collapsed_steps = int(state_dict.get("collapsed_steps", 0))


__all__ = ["CollapseMonitor"]
