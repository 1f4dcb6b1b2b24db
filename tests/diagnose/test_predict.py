"""diagnose_images and attach_anomaly (``vaedx diagnose predict``) on the GPU: the device reaches the encoder
and the anomaly scorer, and what comes back matches the CPU."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from cuda_fixtures import AUROC_TOL


@pytest.mark.cuda
def test_predict_with_anomaly_scores_on_cuda_matches_cpu(cuda_run, tmp_path: Path) -> None:
    from vaedx.data.store import TensorStore
    from vaedx.diagnose.encoder import load_encoder
    from vaedx.diagnose.fit import fit_diagnosis
    from vaedx.diagnose.model import DiagnosisModel
    from vaedx.diagnose.predict import attach_anomaly, diagnose_images
    from vaedx.metrics.measures import auroc
    from vaedx.runs.loaded import load_model

    fit_diagnosis(load_model(cuda_run.run), cuda_run.store, candidates=("logreg",), out=tmp_path / "d")
    diag = DiagnosisModel.load(tmp_path / "d")
    st = TensorStore.open(cuda_run.store)
    rows = st.select(split="test")[:200]
    images = np.asarray(st.images[rows], dtype=np.float32)
    truth = (st.labels[rows] == st.label_names.index("pneumonia")).astype(np.int8)
    results = {}
    for device in ("cpu", "cuda"):
        encoder = load_encoder(diag, device=device)
        assert next(encoder.model.parameters()).device.type == device
        res = diagnose_images(diag, encoder, images, k=0)
        info = attach_anomaly(res, images, cuda_run.run, encoder, device=device, heatmaps=tmp_path / device)
        assert info["scorer"]
        results[device] = res
    cpu, gpu = results["cpu"], results["cuda"]
    p_cpu = np.array([r["probabilities"][diag.class_names[1]] for r in cpu])
    p_gpu = np.array([r["probabilities"][diag.class_names[1]] for r in gpu])
    np.testing.assert_allclose(p_gpu, p_cpu, atol=1e-2)
    s_cpu = np.array([r["anomaly"]["score"] for r in cpu])
    s_gpu = np.array([r["anomaly"]["score"] for r in gpu])
    assert np.isfinite(s_gpu).all()
    assert abs(auroc(truth, s_cpu) - auroc(truth, s_gpu)) < AUROC_TOL
    heat = np.load(gpu[0]["anomaly"]["heatmap"])
    assert heat.dtype == np.float32 and heat.shape == images.shape[-2:]
