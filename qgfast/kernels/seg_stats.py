"""Fused segmentation statistics (see ``qgfast.reference.seg_stats`` for the definition).

Forward: one sweep over the logits (and the label map, never one-hot) computes, per tile
of BLOCK_N voxels and all C channels at once, the activation, the four Dice sums I, P, G,
D and the cross-entropy numerator/normaliser; each program writes its partial sums into a
(B, n_blocks, 4·C_PAD + 2) buffer that one ``torch.sum`` reduces. Two stages instead of
atomics make every result deterministic at no measurable cost (the buffer is ~1/1000 of
the input).

Backward: a second sweep recomputes the activation from the saved logits (nothing of the
logits' size is saved besides the logits themselves) and writes

    dp_c = m·(gI_c·t_c + gP_c·∂P + gD_c·∂D),   ∂P = k·p^(k−1),  ∂D = k·|p−t|^(k−1)·sign(p−t)

chained through the activation (sigmoid: p(1−p); softmax: p_c(dp_c − Σ_j p_j dp_j)), plus
the cross-entropy gradient g_ce·m·w·(softmax − onehot) (labels), g_ce·m·(s_c·Σ_j w_j t_j −
w_c t_c) (probabilities) or g_ce·m·(σ(x)(w t + 1 − t) − w t) (binary, w = pos_weight).

Offsets are int64 (volumes beyond 2^31 elements); loads convert to float32, so fp16/bf16
logits accumulate in fp32. Strided (B, C, N) views are read in place: channels-last
inputs are not copied.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from qgfast.losses.spec import Stats, StatsSpec

_ACT = {"none": 0, "sigmoid": 1, "softmax": 2, "hard": 3, "labels": 4}
_TARGET = {"labels": 0, "dense": 1, "dense_hard": 2}
_CE = {"none": 0, "softmax": 1, "bce": 2}
_MAX_GRID_Y = 65535  # CUDA's limit on the second grid axis, which indexes the sample


@triton.jit
def _one_hot_tile(idx, o_c, C_PAD: tl.constexpr):
    # [C_PAD, BLOCK_N] float one-hot of idx [BLOCK_N]; with one channel, the value itself.
    if C_PAD == 1:
        return idx.to(tl.float32)[None, :]
    return (o_c[:, None] == idx[None, :]).to(tl.float32)


@triton.jit
def _binarise_tile(v, m_c, o_c, C_PAD: tl.constexpr):
    # argmax over the valid channels, or v >= 0.5 with one channel.
    if C_PAD == 1:
        return (v >= 0.5).to(tl.float32)
    vs = tl.where(m_c[:, None], v, float("-inf"))
    return (o_c[:, None] == tl.argmax(vs, axis=0)[None, :]).to(tl.float32)


@triton.jit
def _load_tiles(
    p_x, p_t, p_m, N, C, REPEATS,
    s_xb, s_xc, s_xn, s_tb, s_tc, s_tn, s_mb, s_mn,
    ACT: tl.constexpr, TARGET: tl.constexpr, HAS_MASK: tl.constexpr, C_PAD: tl.constexpr,
    BLOCK_N: tl.constexpr,
):  # fmt: skip
    """The program's tile: sample i_b, channels o_c (valid m_c), voxels o_n (valid m_n), and
    x [C_PAD, BLOCK_N] (logits, 0 where invalid), p (activated, 0 on padded channels), t
    (target, 0 on padded channels), labels [BLOCK_N] and voxel weights v [BLOCK_N] (0
    beyond N)."""
    i_n = tl.program_id(0)
    i_b = tl.program_id(1)
    o_c = tl.arange(0, C_PAD)
    o_n = i_n * BLOCK_N + tl.arange(0, BLOCK_N)
    m_c = o_c < C
    m_n = o_n < N
    b64 = i_b.to(tl.int64)
    n64 = o_n.to(tl.int64)
    m_cn = m_c[:, None] & m_n[None, :]
    # target first: its sample index is b // REPEATS
    bt64 = (i_b // REPEATS).to(tl.int64)
    if TARGET == 0:
        labels = tl.load(p_t + bt64 * s_tb + n64 * s_tn, mask=m_n, other=0).to(tl.int32)
        t = _one_hot_tile(labels, o_c, C_PAD)
    else:
        labels = tl.zeros_like(o_n)
        p_tt = p_t + bt64 * s_tb + o_c[:, None].to(tl.int64) * s_tc + n64[None, :] * s_tn
        t = tl.load(p_tt, mask=m_cn, other=0).to(tl.float32)
        if TARGET == 2:
            t = _binarise_tile(t, m_c, o_c, C_PAD)
    t = tl.where(m_cn, t, 0.0)
    if ACT == 4:
        x = tl.zeros_like(t)
        pred = tl.load(p_x + b64 * s_xb + n64 * s_xn, mask=m_n, other=0).to(tl.int32)
        p = _one_hot_tile(pred, o_c, C_PAD)
    else:
        p_xx = p_x + b64 * s_xb + o_c[:, None].to(tl.int64) * s_xc + n64[None, :] * s_xn
        x = tl.load(p_xx, mask=m_cn, other=0).to(tl.float32)
        if ACT == 0:
            p = x
        elif ACT == 1:
            p = tl.sigmoid(x)
        elif ACT == 2:
            xs = tl.where(m_c[:, None], x, float("-inf"))
            e = tl.exp(xs - tl.max(xs, axis=0)[None, :])
            p = e / tl.sum(e, axis=0)[None, :]
        else:
            p = _binarise_tile(x, m_c, o_c, C_PAD)
    p = tl.where(m_cn, p, 0.0)
    v = m_n.to(tl.float32)
    if HAS_MASK:
        v = v * tl.load(p_m + b64 * s_mb + n64 * s_mn, mask=m_n, other=0).to(tl.float32)
    return i_b, o_c, o_n, m_c, m_n, x, p, t, labels, v


@triton.jit
def _class_weight(p_cw, labels, m_n, C):
    # Gather of per-class weights; the index is clamped so that an out-of-range label
    # (possible only with validation off) can never read outside the weight vector.
    idx = tl.minimum(tl.maximum(labels, 0), C - 1)
    return tl.load(p_cw + idx, mask=m_n, other=0).to(tl.float32)


@triton.jit
def _log_softmax_parts(x, m_c):
    # log-sum-exp over valid channels [BLOCK_N] and the softmax [C_PAD, BLOCK_N]
    xs = tl.where(m_c[:, None], x, float("-inf"))
    mx = tl.max(xs, axis=0)
    e = tl.exp(xs - mx[None, :])
    se = tl.sum(e, axis=0)
    return mx + tl.log(se), e / se[None, :]


@triton.jit
def _seg_stats_fwd_kernel(
    p_x, p_t, p_m, p_cw, p_part,
    N, C, REPEATS, NB,
    s_xb, s_xc, s_xn, s_tb, s_tc, s_tn, s_mb, s_mn,
    ACT: tl.constexpr, TARGET: tl.constexpr, CE: tl.constexpr, SQUARED: tl.constexpr,
    ABSOLUTE: tl.constexpr, DIFF: tl.constexpr, HAS_MASK: tl.constexpr, HAS_CW: tl.constexpr,
    C_PAD: tl.constexpr, BLOCK_N: tl.constexpr,
):  # fmt: skip
    i_b, o_c, _o_n, m_c, m_n, x, p, t, labels, v = _load_tiles(
        p_x, p_t, p_m, N, C, REPEATS,
        s_xb, s_xc, s_xn, s_tb, s_tc, s_tn, s_mb, s_mn,
        ACT, TARGET, HAS_MASK, C_PAD, BLOCK_N,
    )  # fmt: skip
    vv = v[None, :]
    b_I = tl.sum(vv * p * t, axis=1)
    p_k = p
    t_k = t
    if ABSOLUTE:
        p_k = tl.abs(p)
        t_k = tl.abs(t)
    if SQUARED:
        p_k = p * p
        t_k = t * t
    b_P = tl.sum(vv * p_k, axis=1)
    b_G = tl.sum(vv * t_k, axis=1)
    if DIFF:
        d = tl.abs(p - t)
        if SQUARED:
            d = d * d
        b_D = tl.sum(vv * d, axis=1)
    else:
        b_D = tl.zeros_like(b_I)

    p_out = p_part + (i_b.to(tl.int64) * NB + tl.program_id(0)) * (4 * C_PAD + 2)
    tl.store(p_out + o_c, b_I)
    tl.store(p_out + C_PAD + o_c, b_P)
    tl.store(p_out + 2 * C_PAD + o_c, b_G)
    tl.store(p_out + 3 * C_PAD + o_c, b_D)

    if CE == 1:
        lse, _s = _log_softmax_parts(x, m_c)
        if TARGET == 0:
            x_y = tl.sum(tl.where(o_c[:, None] == labels[None, :], x, 0.0), axis=0)
            w = v
            if HAS_CW:
                w = w * _class_weight(p_cw, labels, m_n, C)
            tl.store(p_out + 4 * C_PAD, tl.sum(w * (lse - x_y), axis=0))
            tl.store(p_out + 4 * C_PAD + 1, tl.sum(w, axis=0))
        else:
            wt = t
            if HAS_CW:
                wt = t * tl.load(p_cw + o_c, mask=m_c, other=0).to(tl.float32)[:, None]
            ce_n = tl.sum(wt * (lse[None, :] - x), axis=0)
            tl.store(p_out + 4 * C_PAD, tl.sum(v * ce_n, axis=0))
            tl.store(p_out + 4 * C_PAD + 1, tl.sum(v, axis=0))
    elif CE == 2:
        pos = 1.0
        if HAS_CW:
            pos = tl.load(p_cw).to(tl.float32)
        # log(1 + exp(-|x|)) + max(-x, 0) = -log σ(x), stable for any x
        nls = tl.log(1.0 + tl.exp(-tl.abs(x))) + tl.maximum(-x, 0.0)
        loss = (1.0 - t) * x + (1.0 + (pos - 1.0) * t) * nls
        tl.store(p_out + 4 * C_PAD, tl.sum(tl.sum(vv * loss, axis=1), axis=0))
        tl.store(p_out + 4 * C_PAD + 1, tl.sum(v, axis=0))
    else:
        tl.store(p_out + 4 * C_PAD, 0.0)
        tl.store(p_out + 4 * C_PAD + 1, 0.0)


@triton.jit
def _seg_stats_bwd_kernel(
    p_x, p_t, p_m, p_cw, p_gI, p_gP, p_gD, p_gce, p_dx,
    N, C, REPEATS,
    s_xb, s_xc, s_xn, s_tb, s_tc, s_tn, s_mb, s_mn, s_db, s_dc, s_dn,
    ACT: tl.constexpr, TARGET: tl.constexpr, CE: tl.constexpr, SQUARED: tl.constexpr,
    ABSOLUTE: tl.constexpr, DIFF: tl.constexpr, HAS_MASK: tl.constexpr, HAS_CW: tl.constexpr,
    C_PAD: tl.constexpr, BLOCK_N: tl.constexpr,
):  # fmt: skip
    i_b, o_c, o_n, m_c, m_n, x, p, t, labels, v = _load_tiles(
        p_x, p_t, p_m, N, C, REPEATS,
        s_xb, s_xc, s_xn, s_tb, s_tc, s_tn, s_mb, s_mn,
        ACT, TARGET, HAS_MASK, C_PAD, BLOCK_N,
    )  # fmt: skip
    p_g = i_b.to(tl.int64) * C + o_c
    gI = tl.load(p_gI + p_g, mask=m_c, other=0)[:, None]
    gP = tl.load(p_gP + p_g, mask=m_c, other=0)[:, None]
    if SQUARED:
        dp = gI * t + 2.0 * gP * p
    elif ABSOLUTE:
        dp = gI * t + gP * tl.where(p > 0, 1.0, tl.where(p < 0, -1.0, 0.0))
    else:
        dp = gI * t + gP
    if DIFF:
        gD = tl.load(p_gD + p_g, mask=m_c, other=0)[:, None]
        diff = p - t
        if SQUARED:
            dp += 2.0 * gD * diff
        else:
            dp += gD * tl.where(diff > 0, 1.0, tl.where(diff < 0, -1.0, 0.0))
    dp = dp * v[None, :]
    if ACT == 1:
        dx = dp * p * (1.0 - p)
    elif ACT == 2:
        dx = p * (dp - tl.sum(p * dp, axis=0)[None, :])
    else:
        dx = dp

    if CE != 0:
        g = tl.load(p_gce + i_b) * v
        if CE == 1:
            _lse, s = _log_softmax_parts(x, m_c)
            if TARGET == 0:
                w = g
                if HAS_CW:
                    w = w * _class_weight(p_cw, labels, m_n, C)
                onehot = (o_c[:, None] == labels[None, :]).to(tl.float32)
                dx += w[None, :] * (s - onehot)
            else:
                wt = t
                if HAS_CW:
                    wt = t * tl.load(p_cw + o_c, mask=m_c, other=0).to(tl.float32)[:, None]
                dx += g[None, :] * (s * tl.sum(wt, axis=0)[None, :] - wt)
        else:
            pos = 1.0
            if HAS_CW:
                pos = tl.load(p_cw).to(tl.float32)
            sig = tl.sigmoid(x)
            dx += g[None, :] * (sig * (pos * t + 1.0 - t) - pos * t)

    m_cn = m_c[:, None] & m_n[None, :]
    p_out = p_dx + i_b.to(tl.int64) * s_db + o_c[:, None].to(tl.int64) * s_dc
    tl.store(p_out + o_n.to(tl.int64)[None, :] * s_dn, dx.to(p_dx.dtype.element_ty), mask=m_cn)


def _block_n(c_pad: int, n: int) -> int:
    # ~4096 tile elements keep registers in check for C up to 16; never wider than needed.
    return max(16, min(4096 // c_pad, triton.next_power_of_2(n)))


def _flat(t: torch.Tensor | None, channels: bool) -> torch.Tensor | None:
    """(B, C, N) view (or (B, N) without channels), in place when the strides allow."""
    if t is None:
        return None
    if t.dtype == torch.bool:
        t = t.view(torch.uint8)
    return t.flatten(2) if channels else t.reshape(t.shape[0], -1)


def _strides3(t: torch.Tensor | None) -> tuple[int, int, int]:
    if t is None:
        return (0, 0, 0)
    return (
        (t.stride(0), t.stride(1), t.stride(2)) if t.dim() == 3 else (t.stride(0), 0, t.stride(1))
    )


def _prepare(x, target, mask, spec):
    x_f = _flat(x, channels=spec.act != "labels")
    t_f = _flat(target, channels=spec.target != "labels")
    m_f = _flat(mask, channels=False)
    n = x_f.shape[-1]
    if x_f.shape[0] > _MAX_GRID_Y:
        raise ValueError(
            f"batch of {x_f.shape[0]} exceeds the kernel's {_MAX_GRID_Y} samples per launch; "
            "split it into chunks"
        )
    c_pad = triton.next_power_of_2(spec.num_classes)
    return x_f, t_f, m_f, n, c_pad


def _const(spec: StatsSpec, mask, class_weight, c_pad: int, block_n: int) -> dict:
    return {
        "ACT": _ACT[spec.act],
        "TARGET": _TARGET[spec.target],
        "CE": _CE[spec.ce],
        "SQUARED": spec.squared,
        "ABSOLUTE": spec.absolute,
        "DIFF": spec.diff,
        "HAS_MASK": mask is not None,
        "HAS_CW": class_weight is not None,
        "C_PAD": c_pad,
        "BLOCK_N": block_n,
    }


def seg_stats_forward(x, target, spec: StatsSpec, mask=None, class_weight=None) -> Stats:
    """Launch the forward sweep; same contract as ``reference.seg_stats`` (float32 sums)."""
    x_f, t_f, m_f, n, c_pad = _prepare(x, target, mask, spec)
    b = x_f.shape[0]
    block_n = _block_n(c_pad, n)
    nb = triton.cdiv(n, block_n)
    width = 4 * c_pad + 2
    part = torch.empty((b, nb, width), device=x.device, dtype=torch.float32)
    cw = class_weight.to(x.device, torch.float32).contiguous() if class_weight is not None else None
    dummy = part  # never read: HAS_MASK / HAS_CW are constexpr false
    _seg_stats_fwd_kernel[(nb, b)](
        x_f,
        t_f,
        m_f if m_f is not None else dummy,
        cw if cw is not None else dummy,
        part,
        n,
        spec.num_classes,
        spec.repeats,
        nb,
        *_strides3(x_f),
        *_strides3(t_f),
        *(_strides3(m_f)[::2]),
        **_const(spec, mask, class_weight, c_pad, block_n),
    )
    sums = part.sum(1)
    c = spec.num_classes
    # Copies, not views: each statistic is an independent autograd output.
    return Stats(
        sums[:, 0:c].clone(),
        sums[:, c_pad : c_pad + c].clone(),
        sums[:, 2 * c_pad : 2 * c_pad + c].clone(),
        sums[:, 3 * c_pad : 3 * c_pad + c].clone(),
        sums[:, 4 * c_pad].clone(),
        sums[:, 4 * c_pad + 1].clone(),
    )


def seg_stats_backward(
    x, target, spec: StatsSpec, mask, class_weight, gI, gP, gD, gce
) -> torch.Tensor:
    """Launch the backward sweep: dL/dx from the gradients of I, P, D (B, C) and ce_sum (B,)."""
    x_f, t_f, m_f, n, c_pad = _prepare(x, target, mask, spec)
    b = x_f.shape[0]
    block_n = _block_n(c_pad, n)
    dx = torch.empty_like(x_f)
    cw = class_weight.to(x.device, torch.float32).contiguous() if class_weight is not None else None
    grads = [g.to(torch.float32).contiguous() for g in (gI, gP, gD, gce)]
    _seg_stats_bwd_kernel[(triton.cdiv(n, block_n), b)](
        x_f,
        t_f,
        m_f if m_f is not None else dx,
        cw if cw is not None else dx,
        *grads,
        dx,
        n,
        spec.num_classes,
        spec.repeats,
        *_strides3(x_f),
        *_strides3(t_f),
        *(_strides3(m_f)[::2]),
        *_strides3(dx),
        **_const(spec, mask, class_weight, c_pad, block_n),
    )
    return dx.view(x.shape)
