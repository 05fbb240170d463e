"""Backpropagation through time for a one-layer ``torch.nn.GRU`` on a CPU, in few ops per step.

Why: on a CPU, autograd records about a dozen tiny ops per time step of
``torch.nn.GRU`` (ATen has no fused GRU kernel with a backward pass there, unlike
oneDNN's for the LSTM and cuDNN's on a GPU), and a PPO update of RL² runs that
backward pass once per minibatch and epoch. Measured (CPU time, one thread, 2-core
Xeon): forward + backward of 10 trials x 200 steps x 64 units 25 ms through autograd,
13-14 ms here; a whole PPO update of RL²'s quick preset 0.67 s -> 0.37-0.39 s; at the
paper preset's 256 units and 400-step trials, where the matrix products dominate,
7.4 s -> 5.7-5.8 s.

How: the forward pass is the module's own, run without recording (so its outputs
are bit-identical to ``rnn(x, h0)``). The backward pass recomputes the gates of
*every* step at once from the saved outputs (``h_{t-1}`` is the previous output),
since they depend only on the forward values; then only the recursion of the
hidden state's gradient is sequential (3 ops per step), and the weight and input
gradients are one matrix product each over all steps.

The GRU, as PyTorch defines it (gates in the order r, z, n of ``weight_ih_l0``)::

    r = sigmoid(W_ir x + b_ir + W_hr h + b_hr)
    z = sigmoid(W_iz x + b_iz + W_hz h + b_hz)
    n = tanh(W_in x + b_in + r * (W_hn h + b_hn))
    h' = (1 - z) * n + z * h

so, with ``g = dL/dh'`` and ``a_n = (1 - z)(1 - n^2)``, the pre-activation gradients
are linear in ``g``: ``d(W_h* h)`` = ``g * [a_n (W_hn h + b_hn) r (1 - r),
(h - n) z (1 - z), a_n r]``, ``d(W_i* x)`` the same with ``a_n`` in place of
``a_n r``, and ``dL/dh = g z + d(W_h* h) W_hh``.

Gradients equal autograd's to rounding: 1e-15 relative in float64, ~5e-7 in float32
(``tests/test_gru_bptt.py``). Not twice differentiable.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.autograd.function import once_differentiable


class _GRUSequence(torch.autograd.Function):
    @staticmethod
    def forward(ctx, rnn: nn.GRU, x: Tensor, h0: Tensor, w_ih, w_hh, b_ih, b_hh):  # type: ignore[override]
        out, h_last = rnn(x, h0.unsqueeze(0))  # autograd records nothing inside forward
        ctx.save_for_backward(x, h0, out, w_ih, w_hh, b_ih, b_hh)
        return out, h_last.squeeze(0)

    @staticmethod
    @once_differentiable
    def backward(ctx, g_out: Tensor, g_last: Tensor):  # type: ignore[override]
        x, h0, out, w_ih, w_hh, b_ih, b_hh = ctx.saved_tensors
        B, L, H = out.shape
        # Time-major, so that each step's rows are contiguous.
        xs = x.transpose(0, 1).reshape(L * B, -1)
        h_prev = torch.cat([h0.unsqueeze(0), out.transpose(0, 1)[:-1]], 0)  # (L, B, H)
        gi = torch.addmm(b_ih, xs, w_ih.t()).view(L, B, 3, H)
        gh = torch.addmm(b_hh, h_prev.reshape(L * B, H), w_hh.t()).view(L, B, 3, H)
        r = torch.sigmoid(gi[:, :, 0] + gh[:, :, 0])
        z = torch.sigmoid(gi[:, :, 1] + gh[:, :, 1])
        n = torch.tanh(gi[:, :, 2] + r * gh[:, :, 2])
        a_n = (1 - z) * (1 - n * n)
        c_r = a_n * gh[:, :, 2] * r * (1 - r)
        c_z = (h_prev - n) * z * (1 - z)
        coef = torch.stack([c_r, c_z, a_n * r], 2)  # (L, B, 3, H): d(W_h* h) = g * coef
        g_out = g_out.transpose(0, 1).contiguous()
        dh = torch.empty(L, B, H, dtype=out.dtype, device=out.device)  # dL/dh' of every step
        d_gh = torch.empty(L, B, 3, H, dtype=out.dtype, device=out.device)
        torch.add(g_out[L - 1], g_last, out=dh[L - 1])  # the last step: also from the returned state
        for t in range(L - 1, 0, -1):
            torch.mul(dh[t].unsqueeze(1), coef[t], out=d_gh[t])
            # dL/dh_{t-1}: its own output's gradient + g z + d(W_h* h) W_hh
            torch.addmm(torch.addcmul(g_out[t - 1], dh[t], z[t]), d_gh[t].view(B, 3 * H), w_hh, out=dh[t - 1])
        torch.mul(dh[0].unsqueeze(1), coef[0], out=d_gh[0])
        d_h0 = torch.addmm(dh[0] * z[0], d_gh[0].view(B, 3 * H), w_hh)
        d_gh = d_gh.view(L * B, 3 * H)
        d_gi = (dh.unsqueeze(2) * torch.stack([c_r, c_z, a_n], 2)).view(L * B, 3 * H)
        d_x = (d_gi @ w_ih).view(L, B, -1).transpose(0, 1) if ctx.needs_input_grad[1] else None
        return (
            None,
            d_x,
            d_h0,
            d_gi.t() @ xs,
            d_gh.t() @ h_prev.reshape(L * B, H),
            d_gi.sum(0),
            d_gh.sum(0),
        )


def gru_sequence(rnn: nn.GRU, x: Tensor, h0: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """``rnn(x, h0)`` for a one-layer, unidirectional, batch-first GRU with biases,
    differentiated by the backward pass above.

    ``x: (B, L, input_size)``, ``h0: (1, B, hidden)`` or ``None`` (zeros) -> outputs
    ``(B, L, hidden)`` and the last hidden state ``(1, B, hidden)``, exactly as the
    module returns them.

    Raises:
        ValueError: for a GRU this does not cover (several layers, bidirectional,
            without biases, not batch-first, dropout, projections).
    """
    if rnn.num_layers != 1 or rnn.bidirectional or not rnn.bias or not rnn.batch_first or rnn.dropout:
        raise ValueError(
            "gru_sequence covers a 1-layer, unidirectional, batch-first GRU with biases and no "
            f"dropout; got {rnn}"
        )
    if h0 is None:
        h0 = x.new_zeros(1, x.shape[0], rnn.hidden_size)
    out, h_last = _GRUSequence.apply(
        rnn, x, h0.squeeze(0), rnn.weight_ih_l0, rnn.weight_hh_l0, rnn.bias_ih_l0, rnn.bias_hh_l0
    )
    return out, h_last.unsqueeze(0)
