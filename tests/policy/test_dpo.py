"""Flow-matching DPO loss; expected values worked out by hand."""

import math

import pytest
import torch

from policy.losses import POLICY_LOSSES, flow_dpo_loss


def test_flow_dpo_by_hand():
    """beta = 2, so inside = -((err_w - err_w_ref) - (err_l - err_l_ref)).

    pair 1: err_w 1, ref 2, err_l 3, ref 3 -> inside = -(-1 - 0) = 1 -> softplus(-1) = 0.3132617, right
    pair 2: err_w 2, ref 1, err_l 1, ref 1 -> inside = -(1 - 0) = -1 -> softplus(1) = 1.3132617, wrong
    loss = 0.8132617, implicit accuracy 0.5.
    d loss / d err_w = sigmoid(-inside) * beta / 2 / B: pair 1 sigmoid(-1) / 2 = 0.1344707,
    pair 2 sigmoid(1) / 2 = 0.3655293.
    """
    err_w = torch.tensor([1.0, 2.0], requires_grad=True)
    loss, acc = flow_dpo_loss(err_w, torch.tensor([2.0, 1.0]), torch.tensor([3.0, 1.0]), torch.tensor([3.0, 1.0]), 2.0)
    assert loss.item() == pytest.approx(0.8132617, abs=1e-6)
    assert acc.item() == pytest.approx(0.5)
    (g,) = torch.autograd.grad(loss, err_w)
    assert g.tolist() == pytest.approx([0.1344707, 0.3655293], abs=1e-6)


def test_policy_equal_to_reference_gives_log2():
    """No difference from the reference: inside = 0, loss = log 2, and no pair counts as right."""
    e = torch.rand(5, 3, 4, 4)
    loss, acc = flow_dpo_loss(e, e, e.flip(0), e.flip(0), beta=500.0)
    assert loss.item() == pytest.approx(math.log(2), abs=1e-6) and acc.item() == 0.0


def test_unreduced_errors_are_averaged_per_sample():
    """(B, C, H, W) errors reduce to per-sample means: err_w mean 0.5 vs ref 1, losers equal:
    inside = -beta/2 * (-0.5) = 0.25 with beta 1 -> softplus(-0.25) = 0.5759394."""
    ew = torch.full((1, 2, 2, 2), 0.5)
    loss, acc = flow_dpo_loss(ew, torch.ones(1, 2, 2, 2), torch.ones(1, 2, 2, 2), torch.ones(1, 2, 2, 2), 1.0)
    assert loss.item() == pytest.approx(0.5759394, abs=1e-6) and acc.item() == 1.0
    assert POLICY_LOSSES["flow_dpo"] is flow_dpo_loss


def test_bad_input():
    with pytest.raises(ValueError, match="beta"):
        flow_dpo_loss(torch.ones(2), torch.ones(2), torch.ones(2), torch.ones(2), 0.0)
    with pytest.raises(ValueError, match="shapes"):
        flow_dpo_loss(torch.ones(2), torch.ones(3), torch.ones(2), torch.ones(2), 1.0)


def test_velocity_mse_by_hand_feeds_the_loss():
    """pred (2, 2): rows (1, 3) and (0, 0); target rows (0, 1) and (0, 2):
    row 0: ((1-0)^2 + (3-1)^2)/2 = 2.5;  row 1: (0 + 4)/2 = 2.0."""
    from policy.losses import velocity_mse

    pred, target = torch.tensor([[1.0, 3.0], [0.0, 0.0]]), torch.tensor([[0.0, 1.0], [0.0, 2.0]])
    assert velocity_mse(pred, target).tolist() == pytest.approx([2.5, 2.0])
    assert velocity_mse(pred.reshape(2, 1, 2, 1), target.reshape(2, 1, 2, 1)).tolist() == pytest.approx([2.5, 2.0])
    with pytest.raises(ValueError, match="differ in shape"):
        velocity_mse(pred, target[:1])


def test_group_dpo_by_hand():
    """beta = 1. Group a: advantages (2, 0, -1, -1), sum |A| = 4 -> weights (1, 0, -0.5, -0.5); err - err_ref =
    (-1, 5, 1, 3) -> sum w * d = -1 - 0.5 - 1.5 = -3 -> inside = -0.5 * -3 = 1.5 -> softplus(-1.5) = 0.2014133.
    Group b: advantages (0, 0): no weight, left out. Group c: (1, -1) -> weights (1, -1); d = (1, 0) -> inside
    -0.5 -> softplus(0.5) = 0.9740770. loss = mean of a and c = 0.5877452; accuracy 1/2.
    d loss / d err_0 = 1/2 (two groups) * sigmoid(-1.5) * beta/2 * w_0 = 0.25 * 0.1824255 = 0.0456064; the
    zero-weight sample of group a gets 0."""
    from policy.losses import group_dpo_loss, group_preference_weights

    ids = ["a", "a", "a", "a", "b", "b", "c", "c"]
    adv = torch.tensor([2.0, 0.0, -1.0, -1.0, 0.0, 0.0, 1.0, -1.0])
    assert group_preference_weights(adv, ids).tolist() == pytest.approx([1, 0, -0.5, -0.5, 0, 0, 1, -1])
    err = torch.tensor([1.0, 6.0, 2.0, 4.0, 7.0, 7.0, 2.0, 1.0], requires_grad=True)
    err_ref = torch.tensor([2.0, 1.0, 1.0, 1.0, 3.0, 3.0, 1.0, 1.0])
    loss, acc = group_dpo_loss(err, err_ref, adv, ids, beta=1.0)
    assert loss.item() == pytest.approx(0.5877452, abs=1e-6) and acc.item() == pytest.approx(0.5)
    (g,) = torch.autograd.grad(loss, err)
    assert g[0].item() == pytest.approx(0.0456064, abs=1e-6) and g[1].item() == 0.0 and g[4].item() == 0.0
    assert POLICY_LOSSES["group_dpo"] is group_dpo_loss


def test_group_dpo_of_pairs_is_the_pair_dpo_loss():
    """Groups of two with advantages (+a, -a) weigh winner +1 and loser -1, whatever a: flow_dpo_loss exactly."""
    from policy.losses import group_dpo_loss

    torch.manual_seed(0)
    ew, el, rw, rl = torch.rand(4, 5).unbind(0)
    err = torch.stack([ew, el], 1).reshape(-1)        # (w0, l0, w1, l1, ...)
    ref = torch.stack([rw, rl], 1).reshape(-1)
    adv = torch.tensor([0.7, -0.7, 3.0, -3.0, 1.0, -1.0, 0.1, -0.1, 2.0, -2.0])
    ids = [i // 2 for i in range(10)]
    got, acc = group_dpo_loss(err, ref, adv, ids, beta=300.0)
    want, want_acc = flow_dpo_loss(ew, rw, el, rl, beta=300.0)
    assert got.item() == pytest.approx(want.item(), rel=1e-5) and acc.item() == want_acc.item()


def test_group_dpo_without_signal_and_bad_input():
    from policy.losses import group_dpo_loss

    err = torch.ones(3, requires_grad=True)
    loss, acc = group_dpo_loss(err, torch.ones(3), torch.zeros(3), [0, 0, 0], 1.0)
    assert loss.item() == 0.0 and acc.item() == 0.0 and loss.requires_grad
    with pytest.raises(ValueError, match="group ids"):
        group_dpo_loss(err, torch.ones(3), torch.zeros(3), [0, 0], 1.0)
    with pytest.raises(ValueError, match="beta"):
        group_dpo_loss(err, torch.ones(3), torch.zeros(3), [0, 0, 0], -1.0)
