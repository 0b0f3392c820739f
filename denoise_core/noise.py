"""Corruptions: salt-and-pepper, Gaussian, random-valued impulses, JPEG, and their mixtures, described by a tiny text spec.

Every function takes an explicit ``torch.Generator`` on the images' device, so a batch is corrupted
where it lives (CPU or GPU) and the same seed gives the same noise.

Spec grammar: components joined by ``+``; each is ``sp:DENSITY``, ``gauss:SIGMA``, ``rv:DENSITY`` (random-valued
impulses: pixels replaced by uniform random values, so unlike salt-and-pepper they are not exactly 0 or 1) or
``jpeg:QUALITY`` (the noisy face saved as a JPEG of that quality and read back, as a phone stores it), where a
value may be a range ``LO-HI`` drawn uniformly per image (blind training). Examples: ``sp:0.2``, ``gauss:25``,
``sp:0.1+gauss:10``, ``sp:0.05-0.5``, ``rv:0.1``, ``sp:0.1+jpeg:90``, ``none``. Gaussian noise comes first, then
random-valued and salt-and-pepper impulses (so a salt-and-pepper impulse is exactly 0 or 1), and JPEG last.
Alternatives joined by ``|`` pick one per image with equal probability, which trains one model blind over noise
kinds: ``sp:0.02-0.9|gauss:5-55|sp:0.05-0.3+gauss:5-30``. A component draws random numbers only when it is
present, so adding one to the grammar changes no existing spec's noise.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Mapping, TypeVar

import torch

from denoise_core.errors import InputError

K = TypeVar("K")

_NUMBER = r"(\d+(?:\.\d*)?|\.\d+)"
_COMPONENT = re.compile(rf"^(sp|gauss|rv|jpeg):{_NUMBER}(?:-{_NUMBER})?$")
_FORMS = "sp:DENSITY, gauss:SIGMA, rv:DENSITY, jpeg:QUALITY, a range like sp:0.05-0.5, or a mix like sp:0.1+gauss:10"


class NoiseSpecError(InputError):
    """A noise description that does not follow the spec grammar; the message shows valid forms."""


@dataclass(frozen=True)
class NoiseSpec:
    """Salt-and-pepper density, Gaussian sigma (0..255 scale), random-valued impulse density and JPEG quality
    ranges; (0, 0) means absent."""

    density: tuple[float, float] = (0.0, 0.0)
    sigma: tuple[float, float] = (0.0, 0.0)
    salt_ratio: float = 0.5
    random: tuple[float, float] = (0.0, 0.0)
    jpeg: tuple[float, float] = (0.0, 0.0)

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
                raise NoiseSpecError(f"bad noise spec '{text}': use {_FORMS}")
            kind, low, high = match.group(1), float(match.group(2)), float(match.group(3) or match.group(2))
            if kind in values:
                raise NoiseSpecError(f"bad noise spec '{text}': '{kind}' appears twice")
            if low > high:
                raise NoiseSpecError(f"bad noise spec '{text}': range {low}-{high} goes down; write LOW-HIGH")
            if kind in ("sp", "rv") and not 0.0 <= high <= 1.0:
                raise NoiseSpecError(f"bad noise spec '{text}': an impulse density must be in 0..1")
            if kind == "jpeg" and not 1.0 <= low <= high <= 100.0:
                raise NoiseSpecError(f"bad noise spec '{text}': JPEG quality must be in 1..100")
            if kind == "gauss" and high > 255:
                raise NoiseSpecError(f"bad noise spec '{text}': Gaussian sigma is on the 0..255 scale, got {high}")
            values[kind] = (low, high)
        absent = (0.0, 0.0)
        return cls(density=values.get("sp", absent), sigma=values.get("gauss", absent), random=values.get("rv", absent), jpeg=values.get("jpeg", absent))

    def __str__(self) -> str:
        parts = []
        for kind, (low, high) in (("sp", self.density), ("gauss", self.sigma), ("rv", self.random), ("jpeg", self.jpeg)):
            if high > 0:
                parts.append(f"{kind}:{_fmt(low)}" + (f"-{_fmt(high)}" if high != low else ""))
        return "+".join(parts) or "none"

    @property
    def is_blind(self) -> bool:
        return any(low != high for low, high in (self.density, self.sigma, self.random, self.jpeg))

    @property
    def kind(self) -> str:
        """What a model must undo, for tables and curves: "jpeg" once saved as JPEG, else "rv" with random-valued
        impulses, else "mixture", "sp", "gauss" or "clean"."""
        if self.jpeg[1]:
            return "jpeg"
        if self.random[1]:
            return "rv"
        if self.density[1] and self.sigma[1]:
            return "mixture"
        return "sp" if self.density[1] else "gauss" if self.sigma[1] else "clean"

    @property
    def is_clean(self) -> bool:
        return not (self.density[1] or self.sigma[1] or self.random[1] or self.jpeg[1])


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


def random_valued(images: torch.Tensor, density: float | torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """Replace a fraction ``density`` of pixels by values drawn uniformly from [0, 1]: impulses a mask of exact 0 and 1 cannot find."""
    draw = torch.rand(images.shape, generator=generator, device=images.device, dtype=torch.float32)
    values = torch.rand(images.shape, generator=generator, device=images.device, dtype=torch.float32)
    return torch.where(draw < _per_image(density, images), values.to(images.dtype), images)


def jpeg(images: torch.Tensor, quality: float | torch.Tensor) -> torch.Tensor:
    """Each image saved as an 8-bit JPEG at ``quality`` (rounded; one value per image or one for all) and read back."""
    import io

    import numpy as np
    from PIL import Image

    count, height, width = len(images), images.shape[-2], images.shape[-1]
    pixels = images.detach().reshape(count, -1, height, width).mul(255.0).round_().clamp_(0, 255).to(torch.uint8).cpu().numpy()
    qualities = quality.round().int().tolist() if isinstance(quality, torch.Tensor) else [round(quality)] * count
    restored = np.empty_like(pixels)
    for index, (planes, level) in enumerate(zip(pixels, qualities)):
        for channel, plane in enumerate(planes):
            buffer = io.BytesIO()
            Image.fromarray(plane).save(buffer, format="JPEG", quality=int(level))
            restored[index, channel] = np.asarray(Image.open(buffer).convert("L"))
    return torch.from_numpy(restored).to(images.device, images.dtype).div_(255.0).reshape(images.shape)


def parse_alternatives(text: str) -> tuple[NoiseSpec, ...]:
    """``A|B|C`` as its specs; a plain spec is a choice of one. An empty alternative (``sp:0.1|``) is refused: it would
    leave a share of the faces clean without saying so, where ``none`` says it."""
    parts = str(text).split("|")
    if len(parts) > 1:
        for index, part in enumerate(parts, 1):
            if not part.strip():
                raise NoiseSpecError(f"bad noise spec '{text}': alternative {index} of {len(parts)} is empty; remove the stray '|' "
                                     "(write none for a clean alternative)")
    return tuple(NoiseSpec.parse(part) for part in parts)


def most_specialised(kinds: Mapping[K, tuple[str, ...]], kind: str) -> K | None:
    """Of models mapped to the noise kinds they were trained for, the one trained for ``kind`` with the fewest
    other kinds (first on a tie); None if none was trained for it."""
    fitting = [name for name, covered in kinds.items() if kind in covered]
    return min(fitting, key=lambda name: len(kinds[name])) if fitting else None


def trained_kinds(training_noise: str) -> tuple[str, ...]:
    """The noise kinds (``NoiseSpec.kind``) a training noise spec covers: what a model trained on it is meant for."""
    kinds: list[str] = []
    for spec in parse_alternatives(training_noise):
        if spec.kind != "clean" and spec.kind not in kinds:
            kinds.append(spec.kind)
    return tuple(kinds)


def corrupt(images: torch.Tensor, spec: NoiseSpec | str, generator: torch.Generator | None = None) -> torch.Tensor:
    """Apply a spec (or ``A|B`` alternatives, one drawn per image): levels drawn from its ranges, Gaussian first, then impulses.

    Always a new tensor, "none" included, so a caller may scale the result in place without touching ``images``.
    """
    return _corrupt_alternatives(images, parse_alternatives(spec) if isinstance(spec, str) else (spec,), generator)


@dataclass(frozen=True)
class NoiseSource:
    """A noise spec parsed once, with the generator it draws from: a training loop corrupts batch after batch without
    reading the text again, and draws exactly what ``corrupt(images, text, generator)`` would.

    >>> source = NoiseSource.parse("sp:0.1|gauss:25", make_generator(0))
    >>> source(torch.full((4, 1, 48, 48), 0.5)).shape
    torch.Size([4, 1, 48, 48])
    """

    alternatives: tuple[NoiseSpec, ...]
    generator: torch.Generator

    @classmethod
    def parse(cls, text: str, generator: torch.Generator) -> NoiseSource:
        return cls(parse_alternatives(text), generator)

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        return _corrupt_alternatives(images, self.alternatives, self.generator)


def _corrupt_alternatives(images: torch.Tensor, specs: tuple[NoiseSpec, ...], generator: torch.Generator | None) -> torch.Tensor:
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
    if spec.is_clean:
        return images.clone()
    noisy = images
    if spec.sigma[1] > 0:
        noisy = gaussian(noisy, _draw_levels(spec.sigma, len(images), generator, images.device), generator)
    if spec.random[1] > 0:
        noisy = random_valued(noisy, _draw_levels(spec.random, len(images), generator, images.device), generator)
    if spec.density[1] > 0:
        noisy = salt_and_pepper(noisy, _draw_levels(spec.density, len(images), generator, images.device), spec.salt_ratio, generator)
    if spec.jpeg[1] > 0:
        noisy = jpeg(noisy, _draw_levels(spec.jpeg, len(images), generator, images.device))
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
