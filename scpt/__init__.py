"""scpt: supervised contrastive pre-training of text encoders, and aspect-based sentiment fine-tuning.

The package is organised by concern (see README): ``scpt.losses`` holds the contrastive losses as
pure PyTorch modules that know nothing about Lightning; the training loops, data and CLI build on it.
"""

__version__ = "0.1.0"
