"""patch() swaps qgfast's losses into monai.losses for an unchanged MONAI training step;
unpatch() restores MONAI exactly; unsupported options fall back to MONAI."""

import pytest
import torch

pytest.importorskip("monai")
import monai.losses
from monai.networks.nets import UNet

import qgfast.integrations.monai as qm
from qgfast import losses


@pytest.fixture
def patched():
    qm.patch()
    yield
    qm.unpatch()


def _monai_training_step(seed: int) -> tuple[float, torch.Tensor]:
    """What a MONAI user's script does, written against monai.losses only."""
    torch.manual_seed(seed)
    net = UNet(spatial_dims=3, in_channels=1, out_channels=3, channels=(4, 8), strides=(2,))
    loss_fn = monai.losses.DiceCELoss(to_onehot_y=True, softmax=True)
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    image = torch.randn(2, 1, 8, 8, 8)
    label = torch.randint(0, 3, (2, 1, 8, 8, 8))
    loss = loss_fn(net(image), label)
    opt.zero_grad()
    loss.backward()
    opt.step()
    return loss.item(), net.model[0].conv.weight.detach().clone()


def test_patched_step_uses_qgfast_and_matches_monai(backend) -> None:
    original = monai.losses.DiceCELoss
    want_loss, want_weight = _monai_training_step(0)
    qm.patch()
    try:
        assert monai.losses.DiceCELoss is not original
        assert isinstance(monai.losses.DiceCELoss(softmax=True), losses.DiceCELoss)
        assert monai.losses.Dice is monai.losses.DiceLoss
        assert monai.losses.dice.DiceLoss is monai.losses.DiceLoss
        got_loss, got_weight = _monai_training_step(0)
    finally:
        qm.unpatch()
    assert monai.losses.DiceCELoss is original
    assert monai.losses.dice.dice_ce is original
    assert got_loss == pytest.approx(want_loss, rel=1e-5)
    torch.testing.assert_close(got_weight, want_weight, rtol=1e-4, atol=1e-6)


@pytest.mark.usefixtures("patched")
def test_unsupported_option_falls_back_to_monai_with_a_warning() -> None:
    with pytest.warns(UserWarning, match="other_act"):
        loss = monai.losses.DiceLoss(other_act=torch.tanh)
    assert type(loss).__module__.startswith("monai")
    assert not isinstance(loss, losses.DiceLoss)


def test_patch_is_idempotent_and_unpatch_restores() -> None:
    originals = (monai.losses.DiceLoss, monai.losses.Dice, monai.losses.dice.DiceCELoss)
    qm.patch()
    first = monai.losses.DiceLoss
    qm.patch()
    assert monai.losses.DiceLoss is first
    assert qm.is_patched()
    qm.unpatch()
    assert (monai.losses.DiceLoss, monai.losses.Dice, monai.losses.dice.DiceCELoss) == originals
    assert not qm.is_patched()
