"""A callback that warns when the contrastive term collapses (docs/design.md §7).

When every feature coincides, a contrastive loss sits exactly at its collapsed value
``scale · log |A(a)|`` (``log(M - 1)`` for SupCon over M entries) and its gradient vanishes: training
looks stable while the term learns nothing. Two signs are watched:

- the training contrastive loss (``train/scl``) stays within ``tolerance`` of its collapsed value
  (``train/scl_collapsed``) for ``patience`` consecutive steps. ``tolerance_of: collapsed`` measures
  the distance relative to the collapsed value (1% of log 31 at batch 32); ``tolerance_of: span``
  relative to the loss's similarity span ``scale · 2/tau`` (``train/scl_span``), which is the right
  yardstick at high temperatures: at tau 0.5 a run that learns stays within 1% of its collapsed value
  for hundreds of steps (experiments/collapse/RESULTS.md), while a collapsed one sits within 0.1% of
  its span;
- the held-out mean pairwise cosine (``val/mean_cosine``) exceeds ``max_mean_cosine``.

Each sign warns once per episode (it must clear before it warns again; ``train/scl_collapsed_steps``
is logged every step); with ``stop=True`` the run stops instead of going on.
"""

from __future__ import annotations

import math
from typing import Any, Literal

import pytorch_lightning as pl
from pytorch_lightning.utilities import rank_zero_warn


class CollapseMonitor(pl.Callback):
    """Warn (or stop) when phase 1's contrastive term sits at its collapsed value.

    Args:
        patience: consecutive training steps within ``tolerance`` of the collapsed value before warning.
        tolerance: distance ``|loss - collapsed|`` that counts as collapsed, as a share of ``tolerance_of``.
        tolerance_of: ``"collapsed"`` (the collapsed value itself) or ``"span"`` (the loss's similarity span).
        max_mean_cosine: held-out mean cosine above which the features count as collapsed.
        stop: stop training (``trainer.should_stop``) instead of only warning.
        term: the objective whose loss is watched (``scl``: the contrastive term).
    """

    def __init__(
        self,
        patience: int = 50,
        tolerance: float = 0.01,
        tolerance_of: Literal["collapsed", "span"] = "collapsed",
        max_mean_cosine: float = 0.95,
        stop: bool = False,
        term: str = "scl",
    ) -> None:
        if patience < 1:
            raise ValueError(f"CollapseMonitor: patience must be >= 1, got {patience}")
        if not tolerance > 0:
            raise ValueError(f"CollapseMonitor: tolerance must be > 0, got {tolerance}")
        if tolerance_of not in ("collapsed", "span"):
            raise ValueError(f"CollapseMonitor: tolerance_of must be 'collapsed' or 'span', got {tolerance_of!r}")
        self.patience, self.tolerance, self.tolerance_of = patience, tolerance, tolerance_of
        self.max_mean_cosine, self.stop, self.term = max_mean_cosine, stop, term
        self.collapsed_steps = 0
        self.cosine_alarm = False
        self.warnings: list[str] = []

    @property
    def state_key(self) -> str:
        return f"CollapseMonitor[{self.term}]"

    def is_collapsed(self, loss: float, collapsed: float, span: float = math.nan) -> bool:
        """Whether ``loss`` is within the tolerance of ``collapsed`` (both finite, collapsed > 0; with
        ``tolerance_of="span"``, ``span`` finite and > 0)."""
        scale = collapsed if self.tolerance_of == "collapsed" else span
        if not all(math.isfinite(x) for x in (loss, collapsed, scale)) or collapsed <= 0 or scale <= 0:
            return False
        return abs(loss - collapsed) <= self.tolerance * scale

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
        loss, collapsed = float(loss), float(collapsed)  # the module keeps tensors; read them here only
        collapsed_now = self.is_collapsed(loss, collapsed, float(step.get(f"{self.term}_span", math.nan)))
        self.collapsed_steps = self.collapsed_steps + 1 if collapsed_now else 0
        pl_module.log(f"train/{self.term}_collapsed_steps", float(self.collapsed_steps), on_step=True, on_epoch=False)
        if self.collapsed_steps == self.patience:
            self._raise_alarm(
                trainer,
                f"the {self.term} loss has stayed within {self.tolerance:.1%} (of its {self.tolerance_of}) of its "
                "collapsed value "
                f"{collapsed:.4f} (every feature alike) for {self.patience} steps "
                f"(now {loss:.4f}, step {trainer.global_step})",
            )

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        value = trainer.callback_metrics.get("val/mean_cosine")
        if value is None:
            return
        high = float(value) > self.max_mean_cosine
        if high and not self.cosine_alarm:
            self._raise_alarm(
                trainer,
                f"held-out mean cosine {float(value):.3f} > {self.max_mean_cosine} at step {trainer.global_step}: "
                "the features are nearly one point",
            )
        self.cosine_alarm = high

    def state_dict(self) -> dict[str, Any]:
        return {"collapsed_steps": self.collapsed_steps, "cosine_alarm": self.cosine_alarm}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.collapsed_steps = int(state_dict.get("collapsed_steps", 0))
        self.cosine_alarm = bool(state_dict.get("cosine_alarm", False))


__all__ = ["CollapseMonitor"]
