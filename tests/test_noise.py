import numpy as np
import pytest
import torch

from denoise_core.noise import NoiseSource, NoiseSpec, corrupt, parse_alternatives, gaussian, impulse_mask, make_generator, salt_and_pepper


def grey(count: int = 64) -> torch.Tensor:
    return torch.full((count, 1, 48, 48), 0.5)


@pytest.mark.parametrize("density", [0.05, 0.3, 0.9])
def test_salt_and_pepper_density_matches_request(density):
    noisy = salt_and_pepper(grey(), density, generator=make_generator(1))
    salt = (noisy == 1.0).float().mean().item()
    pepper = (noisy == 0.0).float().mean().item()
    assert salt + pepper == pytest.approx(density, abs=0.006)
    assert salt == pytest.approx(density / 2, abs=0.006)
    assert ((noisy == 0.5) | (noisy == 0.0) | (noisy == 1.0)).all()


def test_salt_ratio_sets_share_of_white_impulses():
    noisy = salt_and_pepper(grey(), 0.4, salt_ratio=0.25, generator=make_generator(2))
    assert (noisy == 1.0).float().mean().item() == pytest.approx(0.1, abs=0.005)
    assert (noisy == 0.0).float().mean().item() == pytest.approx(0.3, abs=0.005)


def test_salt_and_pepper_accepts_one_density_per_image():
    densities = torch.tensor([0.0, 0.2, 0.8])
    noisy = salt_and_pepper(grey(3), densities, generator=make_generator(3))
    measured = impulse_mask(noisy).flatten(1).mean(1)
    assert measured[0].item() == 0.0
    assert measured[1].item() == pytest.approx(0.2, abs=0.03)
    assert measured[2].item() == pytest.approx(0.8, abs=0.03)


@pytest.mark.parametrize("sigma", [10.0, 25.0, 50.0])
def test_gaussian_sigma_matches_request_on_255_scale(sigma):
    noisy = gaussian(grey(), sigma, generator=make_generator(4))
    assert ((noisy - 0.5) * 255).std().item() == pytest.approx(sigma, rel=0.02)
    assert ((noisy - 0.5) * 255).mean().item() == pytest.approx(0.0, abs=0.5)


def test_gaussian_is_clipped_to_unit_range():
    noisy = gaussian(torch.ones(8, 1, 48, 48), 80.0, generator=make_generator(5))
    assert noisy.max().item() == 1.0 and noisy.min().item() >= 0.0
    assert (noisy == 1.0).float().mean().item() == pytest.approx(0.5, abs=0.02)


def test_same_seed_gives_same_noise_and_other_seed_differs():
    first = corrupt(grey(8), "sp:0.1+gauss:10", make_generator(7))
    again = corrupt(grey(8), "sp:0.1+gauss:10", make_generator(7))
    other = corrupt(grey(8), "sp:0.1+gauss:10", make_generator(8))
    assert torch.equal(first, again)
    assert not torch.equal(first, other)


def test_blind_range_draws_density_per_image():
    noisy = corrupt(grey(400), "sp:0.05-0.5", make_generator(9))
    measured = impulse_mask(noisy).flatten(1).mean(1)
    assert measured.min().item() == pytest.approx(0.05, abs=0.02)
    assert measured.max().item() == pytest.approx(0.5, abs=0.02)
    assert measured.mean().item() == pytest.approx(0.275, abs=0.02)


def test_mixture_adds_gaussian_then_exact_impulses():
    noisy = corrupt(grey(32), "sp:0.2+gauss:10", make_generator(10))
    impulses = impulse_mask(noisy).bool()
    assert impulses.float().mean().item() == pytest.approx(0.2, abs=0.01)
    residual = (noisy[~impulses] - 0.5) * 255
    assert residual.std().item() == pytest.approx(10.0, rel=0.03)


def test_alternatives_pick_one_noise_kind_per_image():
    noisy = corrupt(grey(600), "sp:0.3|gauss:20|none", make_generator(11))
    impulse_share = impulse_mask(noisy).flatten(1).mean(1)
    deviation = (noisy - 0.5).flatten(1).abs().amax(1)
    impulse = impulse_share > 0.2
    untouched = deviation == 0
    gaussian_only = ~impulse & ~untouched
    assert impulse_share[impulse].mean().item() == pytest.approx(0.3, abs=0.01)
    assert ((noisy[gaussian_only] - 0.5) * 255).std().item() == pytest.approx(20.0, rel=0.03)
    for share in (impulse, untouched, gaussian_only):
        assert share.float().mean().item() == pytest.approx(1 / 3, abs=0.06)
    again = corrupt(grey(600), "sp:0.3|gauss:20|none", make_generator(11))
    assert torch.equal(noisy, again)


@pytest.mark.parametrize(("text", "empty"), [("sp:0.1|", "2 of 2"), ("|sp:0.1", "1 of 2"), ("sp:0.1||gauss:5", "2 of 3"), ("sp:0.1| ", "2 of 2")])
def test_an_empty_alternative_is_refused_where_none_says_clean(text, empty):
    with pytest.raises(ValueError, match=f"alternative {empty} is empty; remove the stray '\\|'") as error:
        parse_alternatives(text)
    assert "\n" not in str(error.value)
    assert [spec.is_clean for spec in parse_alternatives("sp:0.1|none")] == [False, True]


def test_a_single_condition_cannot_be_a_choice():
    with pytest.raises(ValueError, match="choice between kinds"):
        NoiseSpec.parse("sp:0.1|gauss:10")


@pytest.mark.parametrize(
    "text, density, sigma",
    [
        ("sp:0.2", (0.2, 0.2), (0.0, 0.0)),
        ("gauss:25", (0.0, 0.0), (25.0, 25.0)),
        ("sp:0.1+gauss:10", (0.1, 0.1), (10.0, 10.0)),
        ("sp:0.05-0.5", (0.05, 0.5), (0.0, 0.0)),
        ("gauss:10-50+sp:0.1", (0.1, 0.1), (10.0, 50.0)),
        ("none", (0.0, 0.0), (0.0, 0.0)),
    ],
)
def test_noise_spec_parses_text(text, density, sigma):
    spec = NoiseSpec.parse(text)
    assert spec.density == density and spec.sigma == sigma
    assert NoiseSpec.parse(str(spec)) == spec


@pytest.mark.parametrize("text, message", [
    ("salt:0.2", "use sp:DENSITY"), ("sp:1.5", "density must be in 0..1"), ("sp:0.5-0.1", "goes down"),
    ("gauss:300", "0..255 scale"), ("sp:0.1+sp:0.2", "appears twice"),
])
def test_bad_noise_spec_says_what_is_wrong(text, message):
    with pytest.raises(ValueError, match=message) as error:
        NoiseSpec.parse(text)
    assert "\n" not in str(error.value)


def test_noise_stays_on_the_images_device_and_dtype():
    images = grey(2).double()
    noisy = corrupt(images, "sp:0.1+gauss:5", make_generator(0))
    assert noisy.dtype == torch.float64 and noisy.device == images.device
    assert np.isfinite(noisy.numpy()).all()


@pytest.mark.parametrize("spec", ["none", "sp:0", "sp:0.2", "gauss:25", "sp:0.1+gauss:10", "none|sp:0.5"])
def test_corrupt_returns_a_new_tensor_that_may_be_changed_in_place(spec):
    images = grey(4)
    noisy = corrupt(images, spec, make_generator(0))
    assert noisy is not images and noisy.data_ptr() != images.data_ptr()
    noisy.mul_(255.0)
    assert torch.equal(images, grey(4))


@pytest.mark.parametrize("density", [0.05, 0.3])
def test_random_valued_impulses_replace_that_share_of_pixels_with_values_a_0_255_mask_misses(density):
    from denoise_core.noise import random_valued

    noisy = random_valued(grey(), density, generator=make_generator(4))
    changed = noisy != 0.5
    assert changed.float().mean().item() == pytest.approx(density, abs=0.006)
    assert noisy[changed].mean().item() == pytest.approx(0.5, abs=0.02) and noisy[changed].std().item() == pytest.approx(12 ** -0.5, abs=0.01)
    assert impulse_mask(noisy).mean().item() < 1e-3


def test_jpeg_is_the_pil_round_trip_at_each_images_quality():
    import io

    from PIL import Image

    from denoise_core.noise import jpeg

    images = torch.rand(3, 1, 48, 48, generator=make_generator(5))
    out = jpeg(images, torch.tensor([75.0, 90.4, 95.0]))
    for image, restored, quality in zip(images, out, (75, 90, 95)):
        buffer = io.BytesIO()
        Image.fromarray((image[0] * 255).round().to(torch.uint8).numpy()).save(buffer, format="JPEG", quality=quality)
        assert np.array_equal(np.asarray(Image.open(buffer)), (restored[0] * 255).round().to(torch.uint8).numpy())
    assert not torch.equal(out[0], out[2])


def test_realistic_specs_parse_print_and_classify():
    for text, kind in [("rv:0.1", "rv"), ("sp:0.1+jpeg:90", "jpeg"), ("gauss:5-30+jpeg:75-95", "jpeg"), ("sp:0.1+gauss:10", "mixture"),
                       ("sp:0.3", "sp"), ("gauss:25", "gauss"), ("none", "clean")]:
        spec = NoiseSpec.parse(text)
        assert spec.kind == kind and NoiseSpec.parse(str(spec)) == spec
    assert str(NoiseSpec.parse("jpeg:90+sp:0.1")) == "sp:0.1+jpeg:90" and NoiseSpec.parse("jpeg:75-95").is_blind
    for bad, message in [("jpeg:0", "quality must be in 1..100"), ("jpeg:101", "1..100"), ("rv:1.5", "density must be in 0..1"),
                         ("jpg:90", "rv:DENSITY, jpeg:QUALITY")]:
        with pytest.raises(ValueError, match=message):
            NoiseSpec.parse(bad)


def test_jpeg_noise_comes_last_and_keeps_the_generator_stream_of_the_noise_before_it():
    images = torch.rand(8, 1, 48, 48, generator=make_generator(6))
    plain = corrupt(images, "sp:0.2", make_generator(7))
    saved = corrupt(images, "sp:0.2+jpeg:95", make_generator(7))
    from denoise_core.noise import jpeg

    assert torch.equal(saved, jpeg(plain, 95.0))


@pytest.mark.parametrize("text", ["sp:0.2", "gauss:5-55", "none", "sp:0.02-0.9|gauss:5-55|sp:0.05-0.3+gauss:5-30", "rv:0.1+jpeg:50-90|sp:0.1"])
def test_a_parsed_noise_source_draws_batch_after_batch_what_corrupt_draws(text):
    images = torch.rand(6, 1, 48, 48, generator=torch.Generator().manual_seed(1))
    source, generator = NoiseSource.parse(text, make_generator(7)), make_generator(7)
    for _ in range(3):
        assert torch.equal(source(images), corrupt(images, text, generator))
    assert torch.equal(source.generator.get_state(), generator.get_state())
