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


def _written_out(gate, upsampled, skip, gating):
    """The gate as the paper writes it, operation by operation (the formula the fused code must keep)."""
    from torch.nn import functional as F

    theta_x = gate.theta(skip)
    phi_g = gate.phi(gating)
    if phi_g.shape[2:] != theta_x.shape[2:]:
        phi_g = F.interpolate(phi_g, size=theta_x.shape[2:], mode=gate.interpolation, align_corners=False)
    alpha = torch.sigmoid(gate.psi(torch.relu(theta_x + phi_g)))
    scale = F.interpolate(alpha, size=skip.shape[2:], mode=gate.interpolation, align_corners=False) * gate.gain
    return torch.cat((upsampled, skip * scale), 1)


@pytest.mark.parametrize("init", ["paper", "identity"])
@pytest.mark.parametrize("conv_op, skip_size, stride", [CASES[2], CASES[4], CASES[5]])
def test_concat_computes_the_written_out_gate_in_values_and_gradients(conv_op, skip_size, stride, init):
    torch.manual_seed(0)
    gate = AttentionGate(conv_op, 3, 4, stride, init=init).double()
    with torch.no_grad():  # off the start, so that every factor matters
        for p in gate.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    skip, gating = (t.double().requires_grad_(True) for t in _inputs(skip_size, stride, 3, 4, 1))
    upsampled = torch.randn(1, 3, *skip_size, dtype=torch.double, requires_grad=True)
    fused = gate.concat(upsampled, skip, gate(skip, gating))
    reference = _written_out(gate, upsampled, skip, gating)
    torch.testing.assert_close(fused, reference, rtol=1e-12, atol=1e-12)
    weights = torch.randn_like(reference)
    inputs = (upsampled, skip, gating, *gate.parameters())
    for a, b in zip(torch.autograd.grad((fused * weights).sum(), inputs),
                    torch.autograd.grad((reference * weights).sum(), inputs)):
        torch.testing.assert_close(a, b, rtol=1e-12, atol=1e-12)


def test_gain_follows_the_loaded_weights():
    """A retrofitted (identity, gain 2) gate's weights loaded into a gate built with the paper's start apply gain 2."""
    identity = AttentionGate(nn.Conv3d, 4, 8, (1, 2, 2), init="identity")
    paper = AttentionGate(nn.Conv3d, 4, 8, (1, 2, 2))
    paper.load_state_dict(identity.state_dict())
    skip, gating = _inputs((4, 8, 8), (1, 2, 2), 4, 8)
    torch.testing.assert_close(paper.gated_skip(skip, paper(skip, gating)), skip)


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
