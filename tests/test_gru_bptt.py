"""The GRU's hand-written backward pass through time equals autograd's."""

from __future__ import annotations

import pytest
import torch

from robometa.policies.gru_bptt import gru_sequence
from robometa.policies.recurrent import RecurrentGaussianPolicy


def _gradients(dtype: torch.dtype, fused: bool, with_h0: bool = True):
    torch.manual_seed(0)
    rnn = torch.nn.GRU(7, 16, batch_first=True).to(dtype)
    x = torch.randn(5, 40, 7, dtype=dtype, requires_grad=True)
    h0 = torch.randn(1, 5, 16, dtype=dtype, requires_grad=True) if with_h0 else None
    w_out, w_last = torch.randn(5, 40, 16, dtype=dtype), torch.randn(1, 5, 16, dtype=dtype)
    out, last = gru_sequence(rnn, x, h0) if fused else rnn(x, h0)
    loss = (out * w_out).sum() + (last * w_last).sum()  # gradients reach both outputs
    wrt = [x, *([h0] if with_h0 else []), *rnn.parameters()]
    return out.detach(), last.detach(), torch.autograd.grad(loss, wrt)


@pytest.mark.parametrize("dtype, tol", [(torch.float64, 1e-12), (torch.float32, 1e-5)])
@pytest.mark.parametrize("with_h0", [True, False])
def test_gradients_equal_autograds(dtype, tol, with_h0):
    out_ref, last_ref, ref = _gradients(dtype, fused=False, with_h0=with_h0)
    out, last, new = _gradients(dtype, fused=True, with_h0=with_h0)
    assert torch.equal(out, out_ref) and torch.equal(last, last_ref)  # the module's own forward
    names = ["x", *(["h0"] if with_h0 else []), "w_ih", "w_hh", "b_ih", "b_hh"]
    for name, a, b in zip(names, ref, new, strict=True):
        rel = float((a - b).abs().max() / a.abs().max())
        assert rel < tol, f"{name}: relative difference {rel:.2e}"


def test_policy_takes_the_fused_path_only_when_it_applies():
    torch.manual_seed(0)
    inputs = torch.randn(3, 12, 8)
    fused = RecurrentGaussianPolicy(4, 2, hidden=8)
    plain = RecurrentGaussianPolicy(4, 2, hidden=8, fused_bptt=False)
    plain.load_state_dict(fused.state_dict())
    (m1, v1, _), (m2, v2, _) = fused.sequence(inputs), plain.sequence(inputs)
    assert torch.equal(m1, m2) and torch.equal(v1, v2)
    assert any("GRUSequence" in type(f).__name__ for f in _graph(v1))
    assert not any("GRUSequence" in type(f).__name__ for f in _graph(v2))
    g1 = torch.autograd.grad(v1.sum() + m1.sum(), list(fused.parameters()), allow_unused=True)
    g2 = torch.autograd.grad(v2.sum() + m2.sum(), list(plain.parameters()), allow_unused=True)
    for a, b in zip(g1, g2, strict=True):
        if a is not None:
            torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-6)
    lstm = RecurrentGaussianPolicy(4, 2, hidden=8, cell="lstm")
    assert not any("GRUSequence" in type(f).__name__ for f in _graph(lstm.sequence(inputs)[1]))


def _graph(t: torch.Tensor):
    seen, todo = [], [t.grad_fn]
    while todo:
        f = todo.pop()
        if f is None or f in seen:
            continue
        seen.append(f)
        todo.extend(n for n, _ in f.next_functions)
    return seen


def test_refuses_a_gru_it_does_not_cover():
    with pytest.raises(ValueError, match="1-layer"):
        gru_sequence(torch.nn.GRU(3, 4, num_layers=2, batch_first=True), torch.randn(2, 5, 3))
