"""Every framework, plain and quality-guided, on tiny 2D and 3D nets (CPU)."""

from __future__ import annotations

import copy

import pytest
import torch

from qgfast import ssl
from tests.ssl.helpers import TinyNet, batches, guide

# name → (builder(model, guide, classes), whether it takes quality weights)
FRAMEWORKS = {
    "SUP": lambda m, g: ssl.Supervised(m),
    "QAR": lambda m, g: ssl.Supervised(m, qar=g),
    "PL-T": lambda m, g: ssl.PseudoLabel(m, "threshold", threshold=0.0),
    "PL-C": lambda m, g: ssl.PseudoLabel(m, "confidence", threshold=0.0),
    "PL-QW": lambda m, g: ssl.PseudoLabel(m, quality=g),
    "MT": lambda m, g: ssl.MeanTeacher(m),
    "MT-QW": lambda m, g: ssl.MeanTeacher(m, quality=g),
    "UA-MT": lambda m, g: ssl.UncertaintyMeanTeacher(m, total_steps=10, passes=2),
    "UA-MT-QW": lambda m, g: ssl.UncertaintyMeanTeacher(m, total_steps=10, passes=2, quality=g),
    "ICT": lambda m, g: ssl.InterpolationConsistency(m),
    "ICT-QW": lambda m, g: ssl.InterpolationConsistency(m, quality=g),
    "CPS": lambda m, g: ssl.CrossPseudoSupervision(m),
    "CPS-QW": lambda m, g: ssl.CrossPseudoSupervision(m, quality=g),
    "CL": lambda m, g: ssl.ContrastiveConsistency(m, anchors=16),
    "CL-QW": lambda m, g: ssl.ContrastiveConsistency(m, quality=g, anchors=16, features="norm"),
}
UNSUP_TERM = {"PL": "pseudo", "MT": "consistency", "UA": "consistency", "IC": "consistency"}
UNSUP_TERM.update({"CP": "cps", "CL": "contrastive"})
QW = [n for n in FRAMEWORKS if n.endswith("-QW")]
# (spatial dims, output channels): binary sigmoid, multi-class softmax in 2D, 3D softmax
SETTINGS = [(2, 1), (2, 3), (3, 2)]


def build(name, dims=2, out_ch=2, norm="group", constant_ramps=True, dropout=0.2, **guide_kw):
    torch.manual_seed(0)
    model = TinyNet(dims, 1, out_ch, norm=norm, dropout=dropout)
    fw = FRAMEWORKS[name](model, guide(dims, num_classes=max(out_ch, 2), **guide_kw))
    fw.steps_per_epoch = 1
    if constant_ramps:  # every term on from the first step
        for attr in ("consistency_ramp", "qar_ramp"):
            if hasattr(fw, attr):
                setattr(fw, attr, ssl.ConstantRamp(1.0))
    return fw


def unsup_key(name: str) -> str | None:
    return UNSUP_TERM.get(name[:2])


def _sgd_step(fw, labeled, unlabeled, opts):
    out = fw.step(labeled, unlabeled)
    for opt in opts:
        opt.zero_grad()
    out["loss"].backward()
    for opt in opts:
        opt.step()
    fw.after_step()
    return out


@pytest.mark.parametrize(("dims", "out_ch"), SETTINGS)
@pytest.mark.parametrize("name", list(FRAMEWORKS))
def test_losses_finite_and_gradients_reach_exactly_the_students(name, dims, out_ch) -> None:
    fw = build(name, dims, out_ch, norm="batch")
    assert fw.name == name
    labeled, unlabeled = batches(dims, classes=max(out_ch, 2))
    out = fw.step(labeled, unlabeled)
    assert all(v.dim() == 0 and torch.isfinite(v) for v in out.values()), out
    assert out["loss"].requires_grad
    key = unsup_key(name)
    if key is not None:
        assert key in out
    teacher_before = copy.deepcopy(fw.teacher.state_dict()) if fw.teacher is not None else None
    out["loss"].backward()
    for model in fw.models:
        grads = [p.grad for p in model.parameters()]
        assert all(g is not None for g in grads), name
        assert any(bool(g.abs().sum() > 0) for g in grads)
    if fw.teacher is not None:
        assert all(p.grad is None for p in fw.teacher.parameters())
        for opt_model in fw.models:  # an optimiser step on the students moves no teacher
            with torch.no_grad():
                for p in opt_model.parameters():
                    p -= 0.1 * p.grad
        after = fw.teacher.state_dict()
        assert all(torch.equal(after[k], v) for k, v in teacher_before.items())
        fw.after_step()
        assert any(
            not torch.equal(fw.teacher.state_dict()[k], v) for k, v in teacher_before.items()
        )
    for g in (getattr(fw, "quality", None), fw.qar):
        if g is not None:
            assert all(p.grad is None for p in g.parameters())
    assert fw.eval_model is fw.models[0]


def test_qar_gradient_flows_through_the_predictor_into_the_student() -> None:
    labeled, unlabeled = batches()
    grads = {}
    for name in ("SUP", "QAR"):
        fw = build(name)
        out = fw.step(labeled, unlabeled)
        out["loss"].backward()
        grads[name] = torch.cat([p.grad.flatten() for p in fw.model.parameters()])
        if name == "QAR":
            assert 0 < float(out["qar"]) < 1
            assert all(p.grad is None for p in fw.qar.predictor.parameters())
    assert not torch.allclose(grads["SUP"], grads["QAR"])


@pytest.mark.parametrize("name", ["PL-QW", "MT-QW", "UA-MT-QW", "CPS-QW"])
def test_a_zero_weight_sample_changes_nothing(name) -> None:
    """Per-sample weights: a batch with a zero-weight sample appended gives the loss and
    gradients of the batch without it (norm layers that keep samples apart, no dropout)."""
    labeled, unlabeled = batches(b_u=3)
    rejected = unlabeled["image"].clone()
    rejected[-1] -= 5.0  # the stub predictor scores it ~0: weight exactly 0
    results = []
    for images in (unlabeled["image"][:-1], rejected):
        fw = build(name, dropout=0.0)
        if hasattr(fw, "noise_std"):
            fw.noise_std = 0.0
        if fw.teacher is not None:  # a teacher unlike the student: a non-zero consistency
            with torch.no_grad():
                for p in fw.teacher.parameters():
                    p.mul_(1.5)
        out = fw.step(labeled, {"image": images})
        out["loss"].backward()
        grads = torch.cat([p.grad.flatten() for m in fw.models for p in m.parameters()])
        results.append((out, grads))
    (a, ga), (b, gb) = results
    assert float(b["quality_weight_kept"]) < 1.0
    key = unsup_key(name)
    assert float(a[key]) > 0
    torch.testing.assert_close(a[key], b[key], rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(a["loss"], b["loss"], rtol=1e-5, atol=1e-7)
    torch.testing.assert_close(ga, gb, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize("name", QW)
def test_all_zero_weights_give_zero_unsupervised_loss(name) -> None:
    fw = build(name, threshold=1.0)  # no stub score reaches 1: every weight is 0
    labeled, unlabeled = batches()
    out = fw.step(labeled, unlabeled)
    assert float(out["quality_weight_mean"]) == 0.0
    assert float(out[unsup_key(name)]) == 0.0
    assert torch.isfinite(out["loss"])
    out["loss"].backward()
    assert all(torch.isfinite(p.grad).all() for m in fw.models for p in m.parameters())


def test_ict_qw_mixes_its_sources_weights() -> None:
    from qgfast.ssl.base import hard_labels

    fw = build("ICT-QW")
    labeled, unlabeled = batches(b_u=4)
    images = unlabeled["image"].clone()
    images[1::2] -= 5.0  # sources 1 and 3 rejected: each mix keeps its good source's share
    out = fw.step(labeled, {"image": images})
    lam = torch.as_tensor(fw.numpy_rng().beta(1.0, 1.0, 4)).float()  # this step's draws
    w_src = fw.quality.weights(images, hard_labels(fw.teacher_probs(images)))
    assert w_src[1] == 0
    assert w_src[3] == 0
    assert bool((w_src[::2] > 0).all())
    want = lam * w_src + (1 - lam) * w_src[[1, 2, 3, 0]]
    torch.testing.assert_close(out["quality_weight_mean"], want.mean())
    assert float(out["quality_weight_kept"]) == 1.0  # every mix has one accepted source


def test_ict_needs_pairs() -> None:
    fw = build("ICT")
    labeled, unlabeled = batches(b_u=1)
    with pytest.raises(ValueError, match=">= 2"):
        fw.step(labeled, unlabeled)


@pytest.mark.parametrize("name", [n for n in FRAMEWORKS if n != "SUP"])
def test_state_dict_round_trip_continues_identically(name) -> None:
    def run(fw, opts, steps, seed):
        losses = []
        for i in range(steps):
            labeled, unlabeled = batches(seed=seed + i)
            losses.append(float(_sgd_step(fw, labeled, unlabeled, opts)["loss"].detach()))
        return losses

    fw = build(name, norm="batch", constant_ramps=False)
    fw.steps_per_epoch = None
    fw.set_epoch(100)  # past every warm-up
    opts = [torch.optim.SGD(m.parameters(), lr=0.05, momentum=0.9) for m in fw.models]
    run(fw, opts, 2, 0)
    saved = copy.deepcopy(
        {
            "fw": fw.state_dict(),
            "models": [m.state_dict() for m in fw.models],
            "opts": [o.state_dict() for o in opts],
        }
    )
    torch.manual_seed(99)  # dropout draws from the global RNG: the trainer restores it
    want = run(fw, opts, 2, 10)

    fresh = build(name, norm="batch", constant_ramps=False)
    fresh.steps_per_epoch = None
    fresh.load_state_dict(saved["fw"])
    for m, s in zip(fresh.models, saved["models"], strict=True):
        m.load_state_dict(s)
    fresh_opts = [torch.optim.SGD(m.parameters(), lr=0.05, momentum=0.9) for m in fresh.models]
    for o, s in zip(fresh_opts, saved["opts"], strict=True):
        o.load_state_dict(s)
    assert fresh.global_step == 2
    assert fresh.epoch == 100
    torch.manual_seed(99)
    assert run(fresh, fresh_opts, 2, 10) == want


def test_state_of_another_framework_is_refused() -> None:
    with pytest.raises(ValueError, match="framework 'MT'"):
        build("PL-QW").load_state_dict(build("MT").state_dict())


def test_ramps_follow_the_step_counter() -> None:
    fw = ssl.PseudoLabel(TinyNet(), mode="threshold", steps_per_epoch=2)
    labeled, unlabeled = batches()
    lam = []
    for _ in range(2 * 46):
        lam.append(float(fw.step(labeled, unlabeled)["lambda_pseudo"]))
        fw.after_step()
    assert lam[0] == lam[31] == 0.0  # epochs 0..15
    assert lam[2 * 30] == pytest.approx(0.125)  # epoch 30: halfway
    assert lam[2 * 45] == 0.25


def test_epoch_ramp_without_epoch_is_a_clear_error() -> None:
    fw = ssl.MeanTeacher(TinyNet())
    with pytest.raises(ValueError, match="steps_per_epoch="):
        fw.step(*batches())
    fw.set_epoch(0)
    assert float(fw.step(*batches())["lambda_consistency"]) == 0.0


def test_mean_teacher_alpha_schedule_and_teacher_noise() -> None:
    fw = build("MT")
    labeled, unlabeled = batches()
    fw.step(labeled, unlabeled)
    fw.after_step()  # α(0) = 0: the teacher becomes the student
    for a, b in zip(fw.teacher.parameters(), fw.model.parameters(), strict=True):
        assert torch.equal(a, b)
    x = unlabeled["image"]
    noisy = fw.noise(x, fw._generator(x.device), 0.1, 0.2)
    d = noisy - x
    assert float(d.abs().max()) <= 0.2 + 1e-6
    assert float(d.std()) > 0.05


def test_cps_builds_a_differently_initialised_twin() -> None:
    net = TinyNet()
    before = torch.get_rng_state()
    fw = ssl.CrossPseudoSupervision(net, seed_b=3)
    assert torch.equal(before, torch.get_rng_state())  # the user's RNG is left alone
    a, b = fw.models
    assert a is net
    assert b is not net
    assert not torch.equal(a.encoder.weight, b.encoder.weight)
    again = ssl.CrossPseudoSupervision(net, seed_b=3).model_b
    assert torch.equal(b.encoder.weight, again.encoder.weight)
    with pytest.raises(ValueError, match="differently initialised"):
        ssl.CrossPseudoSupervision(net, copy.deepcopy(net))
    with pytest.raises(ValueError, match="model_b is model_a"):
        ssl.CrossPseudoSupervision(net, net)


def test_uncertainty_mask_grows_with_the_threshold_ramp() -> None:
    fw = build("UA-MT")
    labeled, unlabeled = batches()
    first = fw.step(labeled, unlabeled)
    fw.global_step = 10  # the end of total_steps: threshold ln C
    last = fw.step(labeled, unlabeled)
    assert float(first["uncertainty_threshold"]) == pytest.approx(
        (0.75 + 0.25 * torch.exp(torch.tensor(-5.0)).item()) * torch.log(torch.tensor(2.0)).item()
    )
    assert float(last["uncertainty_threshold"]) == pytest.approx(
        float(torch.log(torch.tensor(2.0)))
    )
    assert float(last["certain_share"]) >= float(first["certain_share"])


def test_contrastive_loss_without_negatives_is_zero_and_with_them_positive() -> None:
    from qgfast.ssl.contrastive import pixel_info_nce

    e = torch.nn.functional.normalize(torch.randn(2, 5, 3), dim=2)
    same = torch.zeros(2, 5, dtype=torch.long)
    assert float(pixel_info_nce(e, e, same, 0.1).abs().max()) < 1e-5
    mixed = torch.tensor([[0, 1, 0, 1, 0], [1, 1, 0, 0, 1]])
    per = pixel_info_nce(e, e.roll(1, 1), mixed, 0.1)
    assert per.shape == (2, 5)
    assert bool((per > 0).all())


def test_contrastive_features_hook_lives_only_inside_a_step() -> None:
    fw = build("CL-QW")
    labeled, unlabeled = batches()
    fw.step(labeled, unlabeled)
    fw.model(unlabeled["image"])  # e.g. validation: nothing captured, nothing kept
    assert fw._captured == []
    assert not fw.model.norm._forward_hooks
