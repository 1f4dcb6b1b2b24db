"""Reconstruction models: the convolutional VAE, its AE twin and the PCA baseline, behind one interface."""

from vaedx.models.base import ModelOutput, ReconstructionModel
from vaedx.models.baselines import PCABaseline
from vaedx.models.config import ModelConfig
from vaedx.models.registry import MODEL_KINDS, build_model
from vaedx.models.ssim import ssim, ssim_map
from vaedx.models.vae import ConvAE, ConvVAE

__all__ = [
    "MODEL_KINDS",
    "ConvAE",
    "ConvVAE",
    "ModelConfig",
    "ModelOutput",
    "PCABaseline",
    "ReconstructionModel",
    "build_model",
    "ssim",
    "ssim_map",
]
