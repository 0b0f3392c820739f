"""Corruptions: salt-and-pepper, Gaussian and their mixtures, described by a tiny text spec.

Every function takes an explicit ``torch.Generator`` on the images' device, so a batch is corrupted
where it lives (CPU or GPU) and the same seed gives the same noise.

Spec grammar: components joined by ``+``; each is ``sp:DENSITY`` or ``gauss:SIGMA``, where a value may be
a range ``LO-HI`` drawn uniformly per image (blind training). Examples: ``sp:0.2``, ``gauss:25``,
``sp:0.1+gauss:10``, ``sp:0.05-0.5``, ``none``. Gaussian noise is added first and impulses last, so an
impulse is always exactly 0 or 1. Alternatives joined by ``|`` pick one per image with equal probability,
which trains one model blind over noise kinds: ``sp:0.02-0.9|gauss:5-55|sp:0.05-0.3+gauss:5-30``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import torch

from denoise_core.errors import InputError

_NUMBER = r"(\d+(?:\.\d*)?|\.\d+)"
_COMPONENT = re.compile(rf"^(sp|gauss):{_NUMBER}(?:-{_NUMBER})?$")


class NoiseSpecError(InputError):
    """A noise description that does not follow the spec grammar; the message shows valid forms."""


@dataclass(frozen=True)
class NoiseSpec:
    """Salt-and-pepper density range and Gaussian sigma range (0..255 scale); (0, 0) means absent."""

    density: tuple[float, float] = (0.0, 0.0)
    sigma: tuple[float, float] = (0.0, 0.0)
    salt_ratio: float = 0.5

    @classmethod
    def parse(cls, text: str) -> NoiseSpec:
        text = str(text).strip().lower().replace(" ", "")
        if text in ("none", "clean", ""):
            return cls()
        if "|" in text:
            raise NoiseSpecError(f"noise '{text}' is a choice between kinds (A|B); only a training noise may be one, not a single condition")
        values: dict[str, tuple[float, float]] = {}
        for part in text.split("+"):
            match = _COMPONENT.match(part)
            if not match:
                raise NoiseSpecError(f"bad noise spec '{text}': use sp:DENSITY, gauss:SIGMA, a range like sp:0.05-0.5, or a mix like sp:0.1+gauss:10")
            kind, low, high = match.group(1), float(match.group(2)), float(match.group(3) or match.group(2))
            if kind in values:
                raise NoiseSpecError(f"bad noise spec '{text}': '{kind}' appears twice")
            if low > high:
                raise NoiseSpecError(f"bad noise spec '{text}': range {low}-{high} goes down; write LOW-HIGH")
            if kind == "sp" and not 0.0 <= high <= 1.0:
                raise NoiseSpecError(f"bad noise spec '{text}': salt-and-pepper density must be in 0..1")
            if kind == "gauss" and high > 255:
                raise NoiseSpecError(f"bad noise spec '{text}': Gaussian sigma is on the 0..255 scale, got {high}")
            values[kind] = (low, high)
        return cls(density=values.get("sp", (0.0, 0.0)), sigma=values.get("gauss", (0.0, 0.0)))

    def __str__(self) -> str:
        parts = []
        for kind, (low, high) in (("sp", self.density), ("gauss", self.sigma)):
            if high > 0:
                parts.append(f"{kind}:{_fmt(low)}" + (f"-{_fmt(high)}" if high != low else ""))
        return "+".join(parts) or "none"

    @property
    def is_blind(self) -> bool:
        return self.density[0] != self.density[1] or self.sigma[0] != self.sigma[1]


def _fmt(value: float) -> str:
    return f"{value:g}"


def salt_and_pepper(images: torch.Tensor, density: float | torch.Tensor, salt_ratio: float = 0.5, generator: torch.Generator | None = None) -> torch.Tensor:
    """Set a fraction ``density`` of pixels to 1 (salt, share ``salt_ratio``) or 0 (pepper).

    ``density`` is a float or one value per image (shape (N,)); images are (N, ..., H, W) in [0, 1].
    """
    draw = torch.rand(images.shape, generator=generator, device=images.device, dtype=torch.float32)
    density = _per_image(density, images)
    return images.masked_fill(draw < density, 0.0).masked_fill_(draw < density * salt_ratio, 1.0)


def gaussian(images: torch.Tensor, sigma: float | torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Add zero-mean Gaussian noise of standard deviation ``sigma`` on the 0..255 scale, clipped to [0, 1]."""
    draw = torch.randn(images.shape, generator=generator, device=images.device, dtype=torch.float32)
    return (images + draw.to(images.dtype) * (_per_image(sigma, images) / 255.0)).clamp_(0.0, 1.0)


def parse_alternatives(text: str) -> tuple[NoiseSpec, ...]:
    """``A|B|C`` as its specs; a plain spec is a choice of one."""
    return tuple(NoiseSpec.parse(part) for part in str(text).split("|"))


def corrupt(images: torch.Tensor, spec: NoiseSpec | str, generator: torch.Generator | None = None) -> torch.Tensor:
    """Apply a spec (or ``A|B`` alternatives, one drawn per image): levels drawn from its ranges, Gaussian first, then impulses.

    Always a new tensor, "none" included, so a caller may scale the result in place without touching ``images``.
    """
    specs = parse_alternatives(spec) if isinstance(spec, str) else (spec,)
    if len(specs) == 1:
        return _corrupt_one(images, specs[0], generator)
    choice = torch.randint(len(specs), (len(images),), generator=generator, device=images.device)
    noisy = images.clone()
    for index, one in enumerate(specs):
        picked = (choice == index).nonzero().squeeze(1)
        if len(picked):
            noisy[picked] = _corrupt_one(images[picked], one, generator)
    return noisy


def _corrupt_one(images: torch.Tensor, spec: NoiseSpec, generator: torch.Generator | None) -> torch.Tensor:
    if spec.sigma[1] == 0 and spec.density[1] == 0:
        return images.clone()
    noisy = images
    if spec.sigma[1] > 0:
        noisy = gaussian(noisy, _draw_levels(spec.sigma, len(images), generator, images.device), generator)
    if spec.density[1] > 0:
        noisy = salt_and_pepper(noisy, _draw_levels(spec.density, len(images), generator, images.device), spec.salt_ratio, generator)
    return noisy


def impulse_mask(images: torch.Tensor) -> torch.Tensor:
    """Pixels that are exactly 0 or 1: the candidates a switching filter (or a model input channel) treats as impulses."""
    return ((images <= 0.0) | (images >= 1.0)).to(images.dtype)


def _draw_levels(bounds: tuple[float, float], count: int, generator: torch.Generator | None, device: torch.device) -> torch.Tensor | float:
    low, high = bounds
    if low == high:
        return low
    return low + (high - low) * torch.rand(count, generator=generator, device=device)


def _per_image(level: float | torch.Tensor, images: torch.Tensor) -> float | torch.Tensor:
    if isinstance(level, torch.Tensor):
        return level.to(images.device, images.dtype).reshape(-1, *([1] * (images.dim() - 1)))
    return float(level)


def make_generator(seed: int, device: torch.device | str = "cpu") -> torch.Generator:
    generator = torch.Generator(device=device)
    generator.manual_seed(int(seed))
    return generator
