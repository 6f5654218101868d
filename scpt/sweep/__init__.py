"""Hyper-parameter sweeps without a W&B server: ``scpt sweep FILE`` and ``scpt sweep report``.

A sweep file is in W&B's sweep format (``configs/sweeps/``), so the same file also runs under
``wandb sweep`` + ``wandb agent``. :mod:`scpt.sweep.spec` reads and checks it, :mod:`scpt.sweep.runner`
runs its trials from an Optuna study, :mod:`scpt.sweep.report` tabulates and plots them, and
:mod:`scpt.sweep.commands` is the command line. Nothing here imports torch: each trial is a subprocess.
"""
