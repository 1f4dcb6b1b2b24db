"""MONAI's ``VarAutoEncoder`` as a vaedx model (``--arch monai-varautoencoder``).

Mapping from ModelConfig: ``widths`` -> ``channels`` (one stride-2 level each), ``latent_dim`` ->
``latent_size``, ``residual`` -> ``num_res_units``, ``norm`` -> MONAI's norm (GroupNorm with
gcd(8, widths) groups for "group"; with residual units MONAI also normalises the image channels, so their
count joins the gcd). MONAI's PReLU activations and kernel sizes are kept. The decoder's
sigmoid is left off (``use_sigmoid=False``) and the likelihood decides the output, as for ConvVAE: a
Bernoulli decoder gets the sigmoid, a Gaussian one an unbounded mean (z-scored images go below 0).

Why the adapter never calls ``VarAutoEncoder.forward``: in eval mode it decodes ``mu + std`` unless
``use_mean_at_inference=True`` (MONAI issue 8413; that flag's default is False in MONAI 1.6), which would
shift every reconstruction by one posterior standard deviation. Here eval mode decodes mu itself.
"""

from __future__ import annotations

import inspect
from typing import Any

import torch

from vaedx.models.adapter import NetworkAdapter, group_count, import_monai_nets
from vaedx.models.config import ModelConfig

ARCH = "monai-varautoencoder"


def monai_norm(norm: str, channels: list[int]) -> Any:
    """vaedx's norm name as MONAI's norm argument (a name, a (name, args) pair, or None)."""
    return {
        "batch": "BATCH",
        "instance": ("INSTANCE", {"affine": True}),
        "group": ("GROUP", {"num_groups": group_count(channels, 8)}),
        "none": None,
    }[norm]


class MonaiVarAutoEncoder(NetworkAdapter):
    """``monai.networks.nets.VarAutoEncoder`` on 2-D images padded to a multiple of 2**len(widths)."""

    def __init__(self, cfg: ModelConfig):
        nets = import_monai_nets(ARCH)
        super().__init__(cfg, multiple=2 ** len(cfg.widths))
        kw: dict[str, Any] = {"use_sigmoid": False}
        if "use_mean_at_inference" in inspect.signature(nets.VarAutoEncoder).parameters:
            kw["use_mean_at_inference"] = True  # for anyone calling self.net directly
        c = self.padded_shape[0]
        self.net = nets.VarAutoEncoder(
            spatial_dims=2,
            in_shape=self.padded_shape,
            out_channels=c,
            latent_size=cfg.latent_dim,
            channels=tuple(cfg.widths),
            strides=(2,) * len(cfg.widths),
            num_res_units=cfg.residual,
            norm=monai_norm(cfg.norm, [*cfg.widths, *([c] if cfg.residual else [])]),
            **kw,
        )

    def _encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.net.encode_forward(x)

    def _decode(self, z: torch.Tensor) -> torch.Tensor:
        return self.net.decode_forward(z, use_sigmoid=False)
