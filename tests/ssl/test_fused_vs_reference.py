"""Each framework's step gives the same losses and gradients through the Triton kernels
as through the plain reference (CPU: the Triton interpreter; CUDA when present)."""

import pytest
import torch

from qgfast.backend import use_backend
from tests.ssl.helpers import batches
from tests.ssl.test_frameworks import FRAMEWORKS, build


@pytest.mark.parametrize("out_ch", [1, 3])
@pytest.mark.parametrize("name", [n for n in FRAMEWORKS if n not in ("SUP", "QAR")])
def test_triton_step_matches_reference(name, out_ch, device) -> None:
    results = {}
    for backend in ("reference", "triton"):
        fw = build(name, out_ch=out_ch, dropout=0.0)
        for m in fw.models:
            m.to(device)
        for g in (fw.quality, fw.qar):
            if g is not None:
                g.to(device)
        labeled, unlabeled = batches(classes=max(out_ch, 2), size=(7, 9))
        labeled = {k: v.to(device) for k, v in labeled.items()}
        unlabeled = {k: v.to(device) for k, v in unlabeled.items()}
        with use_backend(backend):
            out = fw.step(labeled, unlabeled)
            out["loss"].backward()
        grads = torch.cat([p.grad.flatten() for m in fw.models for p in m.parameters()])
        results[backend] = ({k: v.detach().cpu() for k, v in out.items()}, grads.cpu())
    (ref, g_ref), (tri, g_tri) = results["reference"], results["triton"]
    assert ref.keys() == tri.keys()
    for key in ref:
        torch.testing.assert_close(tri[key].float(), ref[key].float(), rtol=2e-4, atol=5e-5)
    torch.testing.assert_close(g_tri, g_ref, rtol=2e-3, atol=5e-5)
