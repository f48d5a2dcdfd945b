import pytest
import torch
from torch import nn

from nnunet_attention.model.gate import AttentionGate

CASES = [  # conv_op, skip size, stride between skip and gating level
    (nn.Conv2d, (32, 48), (2, 2)),
    (nn.Conv3d, (8, 16, 16), (2, 2, 2)),
    (nn.Conv3d, (8, 16, 16), (1, 2, 2)),
    (nn.Conv3d, (16, 16, 8), (2, 2, 1)),
    (nn.Conv3d, (7, 13, 11), (2, 2, 2)),  # sizes that the stride does not divide
    (nn.Conv2d, (9, 15), (2, 2)),
]


def _inputs(skip_size, stride, skip_channels=6, gating_channels=10, batch=2):
    skip = torch.randn(batch, skip_channels, *skip_size)
    gating_size = [-(-s // st) for s, st in zip(skip_size, stride)]  # nnU-Net's strided convs round up
    return skip, torch.randn(batch, gating_channels, *gating_size)


@pytest.mark.parametrize("conv_op, skip_size, stride", CASES)
def test_gate_shapes_coefficients_and_gradients(conv_op, skip_size, stride):
    torch.manual_seed(0)
    gate = AttentionGate(conv_op, 6, 10, stride)
    skip, gating = _inputs(skip_size, stride)
    skip.requires_grad_(True)
    alpha = gate(skip, gating)
    out = gate.gated_skip(skip, alpha)

    assert out.shape == skip.shape
    assert alpha.shape[:2] == (2, 1)
    assert list(alpha.shape[2:]) == [s // st for s, st in zip(skip_size, stride)]
    assert torch.all(alpha > 0) and torch.all(alpha < 1)
    ratio = out / skip
    assert torch.all(ratio > 0) and torch.all(ratio < 1)

    out.square().sum().backward()
    for name in ("theta", "phi", "psi"):
        for p in getattr(gate, name).parameters():
            assert p.grad is not None and p.grad.abs().sum() > 0, name
    assert gate.theta.bias is None
    assert tuple(gate.theta.kernel_size) == tuple(stride) == tuple(gate.theta.stride)
    assert gate.psi.out_channels == 1


@pytest.mark.parametrize("conv_op, skip_size, stride", [CASES[2], CASES[4], CASES[5]])
def test_fused_concat_matches_plain_concat_in_values_and_gradients(conv_op, skip_size, stride):
    torch.manual_seed(0)
    gate = AttentionGate(conv_op, 3, 4, stride).double()
    skip, gating = (t.double().requires_grad_(True) for t in _inputs(skip_size, stride, 3, 4, 1))
    upsampled = torch.randn(1, 3, *skip_size, dtype=torch.double, requires_grad=True)
    fused = gate.concat(upsampled, skip, gate(skip, gating))
    plain = torch.cat((upsampled, gate.gated_skip(skip, gate(skip, gating))), 1)
    assert torch.equal(fused, plain)
    weights = torch.randn_like(plain)
    grads_fused = torch.autograd.grad((fused * weights).sum(), (upsampled, skip, gating, *gate.parameters()))
    grads_plain = torch.autograd.grad((plain * weights).sum(), (upsampled, skip, gating, *gate.parameters()))
    for a, b in zip(grads_fused, grads_plain):
        torch.testing.assert_close(a, b)


def test_fused_concat_promotes_dtypes_like_torch_cat():
    gate = AttentionGate(nn.Conv2d, 4, 4, (2, 2))
    skip, gating = _inputs((8, 8), (2, 2), 4, 4)
    out = gate.concat(torch.randn(2, 4, 8, 8, dtype=torch.bfloat16), skip, gate(skip, gating))
    assert out.dtype == torch.float32


@pytest.mark.parametrize("conv_op, skip_size, stride", CASES)
def test_identity_init_is_an_exact_pass_through_that_still_learns(conv_op, skip_size, stride):
    torch.manual_seed(0)
    gate = AttentionGate(conv_op, 6, 10, stride, init="identity")
    skip, gating = _inputs(skip_size, stride)
    alpha = gate(skip, gating)
    out = gate.gated_skip(skip, alpha)
    assert torch.all(alpha == 0.5)
    torch.testing.assert_close(out, skip, rtol=1e-6, atol=1e-6)
    (out * torch.randn_like(out)).sum().backward()
    for name, p in gate.named_parameters():
        assert p.grad.abs().sum() > 0, name


def test_unknown_init_is_refused():
    with pytest.raises(ValueError, match="gate init"):
        AttentionGate(nn.Conv2d, 4, 4, 2, init="zeros")


def test_gate_runs_under_bf16_autocast():
    gate = AttentionGate(nn.Conv3d, 4, 8, (1, 2, 2))
    skip, gating = _inputs((4, 8, 8), (1, 2, 2), 4, 8)
    skip.requires_grad_(True)
    upsampled = torch.randn(2, 4, 4, 8, 8, requires_grad=True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = gate.concat(upsampled.to(torch.bfloat16), skip, gate(skip, gating))
    out.float().sum().backward()
    assert upsampled.grad.dtype == torch.float32 and skip.grad.dtype == torch.float32
    assert gate.theta.weight.grad is not None


def test_gate_traces_into_one_graph_for_torch_compile():
    gate = AttentionGate(nn.Conv3d, 4, 8, (1, 2, 2))
    skip, gating = _inputs((4, 8, 8), (1, 2, 2), 4, 8)
    upsampled = torch.randn(2, 4, 4, 8, 8)
    explanation = torch._dynamo.explain(lambda u, x, g: gate.concat(u, x, gate(x, g)))(upsampled, skip, gating)
    assert explanation.graph_break_count == 0, explanation.break_reasons
    torch._dynamo.reset()


def test_output_transform_is_a_1x1_conv_and_norm_on_the_gated_skip():
    torch.manual_seed(0)
    gate = AttentionGate(nn.Conv3d, 4, 8, (1, 2, 2), output_norm=(nn.InstanceNorm3d, {"affine": True}))
    skip, gating = _inputs((4, 8, 8), (1, 2, 2), 4, 8)
    upsampled = torch.randn(2, 4, 4, 8, 8)
    alpha = gate(skip, gating)
    out = gate.concat(upsampled, skip, alpha)
    expected = gate.output_transform(skip * gate.upsample(alpha, skip.shape[2:]))
    torch.testing.assert_close(out[:, 4:], expected)
    assert tuple(gate.output_transform[0].kernel_size) == (1, 1, 1)
    assert isinstance(gate.output_transform[1], nn.InstanceNorm3d)
    with pytest.raises(ValueError, match="pass-through"):
        gate.make_identity()
