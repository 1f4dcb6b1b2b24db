"""Networks, one per module: the reconstruction models (convolutional VAE, its AE twin, the PCA baseline)
behind one interface, the M2 semi-supervised VAE (:mod:`vaedx.models.semi`) and the supervised CNN
(:mod:`vaedx.models.cnn`)."""

from vaedx.models.base import ModelOutput, ReconstructionModel
from vaedx.models.baselines import PCABaseline
from vaedx.models.cnn import SupervisedCNN
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
    "SupervisedCNN",
    "build_model",
    "ssim",
    "ssim_map",
]
