import pytest
import torch

from denoise_core.model import ConvAutoencoder, ModelConfig, count_parameters, model_config_from_dict

OPTIONS = [
    {},
    {"bottleneck": "dense", "bottleneck_size": 64},
    {"upsample": "resize"},
    {"skip": False},
    {"residual": True},
    {"mask_input": False},
    {"gate": False}, {"gate": False, "skip": False, "mask_input": False, "dropout": 0.1, "bottleneck_size": 16}, {"gate": True, "residual": True, "mask_input": True, "skip": True}, {"switching": True, "gate": False, "mask_input": True},
    {"batchnorm": False, "dropout": 0.0},
    {"stages": 1}, {"stages": 2}, {"stages": 4},
    {"stages": 4, "bottleneck": "dense", "skip": True, "residual": True, "upsample": "resize", "mask_input": True},
    {"refine": 3, "refine_width": 8}, {"refine": 2, "gate": True, "mask_input": True, "skip": True}, {"mirror": True, "refine": 2},
]


@pytest.mark.parametrize("options", OPTIONS, ids=lambda o: "-".join(f"{k}={v}" for k, v in o.items()) or "default")
def test_autoencoder_maps_faces_to_faces_for_every_option(options):
    model = ConvAutoencoder(ModelConfig(base_width=8, **options)).eval()
    noisy = torch.rand(3, 1, 48, 48, generator=torch.Generator().manual_seed(0))
    out = model(noisy)
    assert out.shape == (3, 1, 48, 48)
    assert out.min().item() >= 0.0 and out.max().item() <= 1.0
    assert count_parameters(model) > 1000


def test_bottleneck_has_the_requested_size():
    channels = ConvAutoencoder(ModelConfig(base_width=8, bottleneck_size=5)).eval()
    latent = channels.squeeze(torch.zeros(2, 32, 6, 6))
    assert latent.shape == (2, 5, 6, 6)
    dense = ConvAutoencoder(ModelConfig(base_width=8, bottleneck="dense", bottleneck_size=7)).eval()
    assert dense.squeeze(torch.zeros(2, 32, 6, 6)).shape == (2, 7)


def test_parameter_count_grows_with_width_and_is_exact():
    small, large = ConvAutoencoder(ModelConfig(base_width=8)), ConvAutoencoder(ModelConfig(base_width=16))
    assert count_parameters(large) > 3 * count_parameters(small)
    assert count_parameters(small) == sum(p.numel() for p in small.parameters())


def test_residual_model_predicts_the_noise():
    model = ConvAutoencoder(ModelConfig(base_width=8, residual=True)).eval()
    torch.nn.init.zeros_(model.head.weight)
    torch.nn.init.zeros_(model.head.bias)
    noisy = torch.rand(2, 1, 48, 48)
    assert torch.equal(model(noisy), noisy)


def test_gated_model_replaces_impulses_and_keeps_pixels_it_gates_off():
    model = ConvAutoencoder(ModelConfig(base_width=8, gate=True)).eval()
    torch.nn.init.zeros_(model.head.weight)
    with torch.no_grad():
        model.head.bias.copy_(torch.tensor([0.0, -40.0]))  # estimate sigmoid(0) = 0.5 everywhere; gate shut
    noisy = torch.full((2, 1, 48, 48), 0.3)
    noisy[:, :, ::5, ::7] = 1.0
    noisy[:, :, 2::5, ::7] = 0.0
    out = model(noisy)
    impulses = (noisy == 0.0) | (noisy == 1.0)
    assert torch.equal(out[~impulses], noisy[~impulses])
    assert torch.allclose(out[impulses], torch.full_like(out[impulses], 0.5))
    with torch.no_grad():
        model.head.bias.copy_(torch.tensor([0.0, 40.0]))  # gate open: every pixel is the estimate
    assert torch.allclose(model(noisy), torch.full_like(noisy, 0.5))


def test_refinement_stage_starts_as_the_identity_and_then_corrects_the_autoencoder():
    plain = ConvAutoencoder(ModelConfig(base_width=8, gate=True, skip=True)).eval()
    grown = ConvAutoencoder(ModelConfig(base_width=8, gate=True, skip=True, refine=3, refine_width=8)).eval()
    missing, unexpected = grown.load_state_dict(plain.state_dict(), strict=False)
    assert unexpected == [] and missing and all(key.startswith("refiner.") for key in missing)
    noisy = torch.rand(2, 1, 48, 48, generator=torch.Generator().manual_seed(2))
    assert torch.equal(grown(noisy), plain(noisy))
    with torch.no_grad():
        grown.refiner[-1].bias.fill_(0.01)  # a correction of +0.01 everywhere, clamped to [0, 1]
    assert torch.allclose(grown(noisy), (plain(noisy) + 0.01).clamp(0.0, 1.0))
    assert count_parameters(grown) - count_parameters(plain) == (2 * 9 * 8 + 8) + (8 * 9 * 8 + 8) + (8 * 9 + 1)


def test_mirror_model_averages_the_face_and_its_mirror_image_and_is_equivariant():
    plain = ConvAutoencoder(ModelConfig(base_width=8, bottleneck_size=16, gate=True, skip=True, mask_input=False, refine=2, refine_width=4)).eval()
    with torch.no_grad():
        plain.refiner[-1].bias.fill_(0.02)
    mirror = ConvAutoencoder(ModelConfig(base_width=8, bottleneck_size=16, gate=True, skip=True, mask_input=False, refine=2, refine_width=4, mirror=True)).eval()
    mirror.load_state_dict(plain.state_dict())
    noisy = torch.rand(3, 1, 48, 48, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        expected = 0.5 * (plain(noisy) + plain(noisy.flip(-1)).flip(-1))
        assert torch.allclose(mirror(noisy), expected, atol=1e-6)
        assert torch.allclose(mirror(noisy.flip(-1)), mirror(noisy).flip(-1), atol=1e-6)
        assert not torch.allclose(plain(noisy.flip(-1)), plain(noisy).flip(-1), atol=1e-3)


@pytest.mark.parametrize("refine", [0, 3])
def test_switching_model_changes_only_impulses(refine):
    model = ConvAutoencoder(ModelConfig(base_width=8, switching=True, gate=False, mask_input=True, refine=refine, refine_width=8)).eval()
    if refine:
        with torch.no_grad():
            model.refiner[-1].bias.fill_(0.05)  # a correction everywhere, of which only the impulses may keep theirs
    noisy = torch.rand(2, 1, 48, 48, generator=torch.Generator().manual_seed(1)).clamp(0.01, 0.99)
    noisy[:, :, ::3, ::4] = 1.0
    noisy[:, :, 1::3, ::4] = 0.0
    out = model(noisy)
    impulses = (noisy == 0.0) | (noisy == 1.0)
    assert torch.equal(out[~impulses], noisy[~impulses])
    assert ((out[impulses] > 0.0) & (out[impulses] < 1.0)).all()


@pytest.mark.parametrize("values, message", [
    ({"stages": 5}, "stages must be 1..4"), ({"bottleneck": "wide"}, "bottleneck must be"),
    ({"upsample": "pixelshuffle"}, "upsample must be"), ({"dropout": 1.0}, "dropout must be"),
    ({"gate": True, "switching": True}, "choose one"),
    ({"widht": 8}, r"unknown setting\(s\) widht"), ({"refine": 1}, "at least 2 layers"), ({"refine": 3, "refine_width": 0}, "refine_width positive"),
])
def test_bad_model_config_says_what_is_wrong(values, message):
    with pytest.raises(ValueError, match=message):
        model_config_from_dict(values)


def test_a_model_denoises_faster_layouts_to_the_same_faces():
    """model_denoiser runs a copy of a CPU model with its batch norms folded into their convolutions, on channels-last
    weights, in batches of 64: the faces are those of the plain model run in one batch, to float rounding, and the
    caller's model is left as it was."""
    import numpy as np

    from denoise_core.denoise import denoise_array
    from denoise_core.evaluate import model_denoiser
    from denoise_core.inference import CPU_BATCH, default_batch, for_inference

    torch.manual_seed(0)
    model = ConvAutoencoder(ModelConfig(base_width=8, bottleneck_size=16, skip=True, mask_input=True, gate=True)).eval()
    norms = [module for module in model.modules() if isinstance(module, torch.nn.BatchNorm2d)]
    with torch.no_grad():
        for norm in norms:  # trained statistics, so that folding them changes the weights
            norm.running_mean.uniform_(-0.5, 0.5)
            norm.running_var.uniform_(0.5, 2.0)
            norm.weight.uniform_(0.5, 1.5)
            norm.bias.uniform_(-0.2, 0.2)
    faces = np.random.default_rng(0).random((CPU_BATCH * 2 + 5, 48, 48), dtype=np.float32)
    plain = denoise_array(model, faces, batch_size=len(faces))
    before = {name: value.clone() for name, value in model.state_dict().items()}
    assert default_batch(torch.device("cpu")) == CPU_BATCH < len(faces) and len(norms) == 14
    fast = model_denoiser(model, "cpu")(faces)
    assert fast.shape == plain.shape and np.abs(fast - plain).max() < 1e-5 and np.abs(fast - plain).max() > 0
    assert all(torch.equal(value, model.state_dict()[name]) for name, value in before.items())
    assert sum(isinstance(module, torch.nn.BatchNorm2d) for module in model.modules()) == 14
    assert not any(isinstance(module, torch.nn.BatchNorm2d) for module in for_inference(model, "cpu").modules())


@pytest.mark.parametrize("autocast", [None, torch.bfloat16])
@pytest.mark.parametrize("options", [{}, {"refine": 2, "mirror": True}, {"bottleneck": "dense", "skip": False}])
def test_batches_side_by_side_on_cpu_threads_give_the_faces_of_one_thread(options, autocast):
    """On 2 torch threads denoise_tensor runs its batches in 2 threads of one torch thread each: every face is the same,
    bit for bit, as one batch after another on one thread; grad mode stays off in those threads, and the caller's
    thread count is back afterwards."""
    from denoise_core.inference import denoise_tensor, for_inference, thread_count

    torch.manual_seed(0)
    model = for_inference(ConvAutoencoder(ModelConfig(base_width=8, bottleneck_size=16, **options)), "cpu")
    noisy = torch.rand(3 * 64 + 7, 1, 48, 48)
    noisy[noisy < 0.15], noisy[noisy > 0.85] = 0.0, 1.0
    with thread_count(1):
        one = denoise_tensor(model, noisy, autocast=autocast)
    with thread_count(2):
        both = denoise_tensor(model, noisy, autocast=autocast)
        assert torch.get_num_threads() == 2
    assert both.dtype == torch.float32 and not both.requires_grad and torch.equal(one, both)
    assert float((one - noisy).abs().mean()) > 0.01  # the model changed the faces, so equal outputs say something
