"""The convolutional autoencoder: encoder 48 -> 24 -> 12 -> 6, a bottleneck, a decoder back to 48x48.

The bottleneck is either ``channels`` (k feature maps at the lowest resolution, what the study searches:
it keeps the spatial layout of the face) or ``dense`` (a k-unit latent vector, the textbook autoencoder).
Skip connections across the bottleneck and a residual output (the network predicts the noise) are
options; the defaults are what the studies found best for impulses (skips, the mask input and the gated output on).
``mask_input`` adds the impulse mask (pixels exactly 0 or 1) as a second input channel: the cue a switching median filter uses. ``gate`` makes the output a per-pixel blend
``noisy + g * (restored - noisy)`` with ``g = max(impulse mask, sigmoid(learned gate))``: impulses are always
replaced, and the network learns to leave clean pixels exactly as they came (what makes a switching median
strong on impulse noise) while still smoothing everywhere under Gaussian noise. ``switching`` goes all the way
for pure salt-and-pepper noise: ``g`` is the impulse mask itself, so only impulses change.

``refine`` appends that many 3x3 convolutions (``refine_width`` maps) at full resolution, fed the noisy face
and the autoencoder's output and adding a correction to it (with ``switching``, to the impulse pixels only).
The autoencoder keeps only two thin layers at 48x48 on each side, which is what limits it at low noise, where
the task is keeping fine detail. The last refinement layer starts at zero, so a trained autoencoder grown this
way (``--init``) starts exactly where it was.

``mirror`` makes the model left-right equivariant by construction: it restores the face and its mirror image
in one batch and averages the two (the mirrored result flipped back). Faces are nearly symmetric, so the
mirror image is an in-distribution second opinion; it has no parameters, so ``--init`` can turn it on.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import nn

from denoise_core.errors import InputError
from denoise_core.noise import impulse_mask
from denoise_core.settings import build

SIDE = 48
SAVED_BEFORE = {"bottleneck_size": 16, "dropout": 0.1, "skip": False, "mask_input": False, "gate": False}
"""The defaults before the studies' recipe became the default: a saved model config that omits one of these was made with it."""


@dataclass(frozen=True)
class ModelConfig:
    stages: int = 3
    base_width: int = 16
    bottleneck: str = "channels"  # "channels" or "dense"
    bottleneck_size: int = 32
    dropout: float = 0.15
    batchnorm: bool = True
    upsample: str = "transpose"  # "transpose" or "resize"
    skip: bool = True
    residual: bool = False
    mask_input: bool = True
    gate: bool = True
    switching: bool = False
    refine: int = 0
    refine_width: int = 32
    mirror: bool = False

    HELP: ClassVar[dict[str, str]] = {  # what each setting means, for --help and the README
        "stages": "down-sampling stages, 1 to 4 (3: 48 -> 24 -> 12 -> 6)",
        "base_width": "feature maps of the first stage, doubled at each further stage",
        "bottleneck": "channels (a conv bottleneck) or dense (a fully connected code)",
        "bottleneck_size": "channels (or units, for dense) of the bottleneck",
        "dropout": "dropout rate in the encoder and decoder, in [0, 1)",
        "batchnorm": "batch normalisation after each convolution",
        "upsample": "transpose (learned) or resize (bilinear + conv) up-sampling",
        "skip": "U-Net skip connections from each encoder stage to its decoder stage",
        "residual": "predict the noise and subtract it (output = input - estimate)",
        "mask_input": "feed the impulse mask (pixels exactly 0 or 255) as a second channel",
        "gate": "gated output: impulses always replaced, other pixels by a learned gate",
        "switching": "switching output: only the impulse pixels change",
        "refine": "full-resolution refinement layers after the autoencoder (0: off, else >= 2)",
        "refine_width": "feature maps of the refinement layers",
        "mirror": "restore the face and its mirror image and average the two (left-right equivariant, no parameters)",
    }

    def __post_init__(self) -> None:
        if not 1 <= self.stages <= 4:
            raise InputError(f"stages must be 1..4 (48 must halve evenly), got {self.stages}")
        if self.bottleneck not in ("channels", "dense"):
            raise InputError(f"bottleneck must be 'channels' or 'dense', got {self.bottleneck!r}")
        if self.upsample not in ("transpose", "resize"):
            raise InputError(f"upsample must be 'transpose' or 'resize', got {self.upsample!r}")
        if self.bottleneck_size < 1 or self.base_width < 1:
            raise InputError("bottleneck_size and base_width must be positive")
        if self.gate and self.switching:
            raise InputError("gate and switching are two kinds of output: choose one (gate is on by default: add --no-model-gate, or model.gate: false)")
        if self.refine < 0 or self.refine == 1 or self.refine_width < 1:
            raise InputError(f"refine must be 0 (off) or at least 2 layers, and refine_width positive; got {self.refine}, {self.refine_width}")
        if not 0.0 <= self.dropout < 1.0:
            raise InputError(f"dropout must be in [0, 1), got {self.dropout}")

    @property
    def latent_side(self) -> int:
        return SIDE >> self.stages


def _block(cin: int, cout: int, config: ModelConfig) -> nn.Sequential:
    layers: list[nn.Module] = []
    for index in range(2):
        layers.append(nn.Conv2d(cin if index == 0 else cout, cout, 3, padding=1, bias=not config.batchnorm))
        if config.batchnorm:
            layers.append(nn.BatchNorm2d(cout))
        layers.append(nn.ReLU(inplace=True))
    return nn.Sequential(*layers)


def _upsampler(cin: int, cout: int, config: ModelConfig) -> nn.Module:
    if config.upsample == "transpose":
        return nn.ConvTranspose2d(cin, cout, 2, stride=2)
    return nn.Sequential(nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False), nn.Conv2d(cin, cout, 3, padding=1))


class ConvAutoencoder(nn.Module):
    """Maps corrupted faces (N, 1, 48, 48) in [0, 1] to restored faces of the same shape in [0, 1]."""

    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        widths = [config.base_width * 2**i for i in range(config.stages + 1)]
        cin = 2 if config.mask_input else 1
        self.encoder = nn.ModuleList()
        for width in widths[:-1]:
            self.encoder.append(_block(cin, width, config))
            cin = width
        self.pool = nn.MaxPool2d(2)
        self.dropout = nn.Dropout(config.dropout)
        side, deep = config.latent_side, widths[-1]
        if config.bottleneck == "channels":
            self.squeeze = nn.Sequential(_block(cin, deep, config), nn.Conv2d(deep, config.bottleneck_size, 1))
            self.expand = nn.Sequential(nn.Conv2d(config.bottleneck_size, deep, 1), nn.ReLU(inplace=True))
        else:
            self.squeeze = nn.Sequential(_block(cin, deep, config), nn.Flatten(), nn.Linear(deep * side * side, config.bottleneck_size))
            self.expand = nn.Sequential(nn.Linear(config.bottleneck_size, deep * side * side), nn.ReLU(inplace=True), nn.Unflatten(1, (deep, side, side)))
        self.up = nn.ModuleList()
        self.decoder = nn.ModuleList()
        for width in reversed(widths[:-1]):
            self.up.append(_upsampler(deep, width, config))
            self.decoder.append(_block(width * (2 if config.skip else 1), width, config))
            deep = width
        self.head = nn.Conv2d(deep, 2 if config.gate else 1, 1)
        self.refiner = _refiner(config) if config.refine else None

    def forward(self, noisy: torch.Tensor) -> torch.Tensor:
        if not self.config.mirror:
            return self._restore(noisy)
        direct, mirrored = self._restore(torch.cat([noisy, noisy.flip(-1)])).chunk(2)
        return 0.5 * (direct + mirrored.flip(-1))

    def _restore(self, noisy: torch.Tensor) -> torch.Tensor:
        restored = self._autoencode(noisy)
        if self.refiner is None:
            return restored
        correction = self.refiner(torch.cat([noisy, restored], dim=1))
        if self.config.switching:  # the switching contract holds for the whole model: only impulses change
            correction = impulse_mask(noisy) * correction
        return (restored + correction).clamp(0.0, 1.0)

    def _autoencode(self, noisy: torch.Tensor) -> torch.Tensor:
        x = torch.cat([noisy, impulse_mask(noisy)], dim=1) if self.config.mask_input else noisy
        skips = []
        for block in self.encoder:
            x = block(x)
            skips.append(x)
            x = self.pool(x)
        x = self.expand(self.dropout(self.squeeze(x)))
        for up, block, skip in zip(self.up, self.decoder, reversed(skips)):
            x = up(x)
            x = block(torch.cat([x, skip], dim=1) if self.config.skip else x)
        out = self.head(x)
        estimate, gate = out[:, :1], out[:, 1:]
        restored = (noisy - estimate).clamp(0.0, 1.0) if self.config.residual else torch.sigmoid(estimate)
        if self.config.switching:
            return noisy + impulse_mask(noisy) * (restored - noisy)
        if not self.config.gate:
            return restored
        weight = torch.maximum(impulse_mask(noisy), torch.sigmoid(gate))
        return noisy + weight * (restored - noisy)


def _refiner(config: ModelConfig) -> nn.Sequential:
    layers: list[nn.Module] = []
    cin = 2
    for _ in range(config.refine - 1):
        layers += [nn.Conv2d(cin, config.refine_width, 3, padding=1), nn.ReLU(inplace=True)]
        cin = config.refine_width
    last = nn.Conv2d(cin, 1, 3, padding=1)
    nn.init.zeros_(last.weight)
    nn.init.zeros_(last.bias)
    return nn.Sequential(*layers, last)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def model_config_from_dict(values: dict) -> ModelConfig:
    """A ModelConfig from a saved (YAML or checkpoint) dict; unknown keys and wrong types are errors, not ignored, and a
    setting it omits takes the value it was saved with (``SAVED_BEFORE``), so older checkpoints rebuild the same network."""
    return build(ModelConfig, {**SAVED_BEFORE, **values})
