"""Real LGG patient volumes, and a small store of their slices with volume columns plus a detect output.

The anomaly map is the smoothed FLAIR intensity: the LGG masks outline the FLAIR hyperintensity, so it is a
real, imperfect score with known behaviour (some lesion found, bright normal tissue as false positives).
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path

import numpy as np
from scipy import ndimage

from vaedx.anomaly.scoring import Scored, write_scores_csv
from vaedx.data.preprocess import PreprocessConfig
from vaedx.data.store import StoreWriter
from vaedx.io.slice_stack import read_lgg_patient

#: short volumes with one, two and three 3-D tumour components (26-connectivity)
LGG_CASES = (
    "TCGA_CS_5393_19990606",  # 1 component
    "TCGA_CS_6186_20000601",  # 1 component, 2 with 6-connectivity
    "TCGA_HT_7874_19950902",  # 2 components
    "TCGA_FG_6692_20020606",  # 2 components
    "TCGA_HT_7882_19970125",  # 3 components
)
STORE_CASES = ("TCGA_CS_5393_19990606", "TCGA_HT_7874_19950902", "TCGA_HT_7686_19950629")


@cache
def lgg_volume(folder: Path) -> tuple[np.ndarray, np.ndarray]:
    """(FLAIR in [0, 1], tumour mask bool), both (z, 256, 256), of one LGG patient folder."""
    vol, mask = read_lgg_patient(folder)
    return vol.data / 255.0, mask > 0


def flair_map(flair: np.ndarray) -> np.ndarray:
    """Anomaly map of a FLAIR volume: in-plane Gaussian smoothing (sigma 1 pixel), float32."""
    return ndimage.gaussian_filter(flair, (0, 1, 1)).astype(np.float32)


def _shrink(a: np.ndarray, f: int) -> np.ndarray:
    """(z, y, x) -> (z, y/f, x/f) block means."""
    z, h, w = a.shape
    return a.reshape(z, h // f, f, w // f, f).mean(axis=(2, 4))


def lgg_volume_detect_output(
    tmp: Path,
    lgg_dir: Path,
    *,
    maps_from: str = "flair",
    threshold: float = 0.45,
    volume_columns: bool = True,
    size: int = 64,
) -> tuple[Path, Path]:
    """(detect folder, store) for the STORE_CASES slices at ``size`` x ``size``, all in split test.

    ``maps_from`` "flair" scores with :func:`flair_map`, "truth" with the masks themselves; rows carry
    ``volume`` (case folder) and ``slice_index`` unless ``volume_columns`` is False. Rows are written
    in reverse slice order so stacking has to sort them.
    """
    f = 256 // size
    cases = [(c, *lgg_volume(lgg_dir / c)) for c in STORE_CASES]
    n = sum(len(m) for _, _, m in cases)
    writer = StoreWriter(tmp / "store", n, (1, size, size), with_masks=True)
    all_maps, scores, rows = [], [], []
    for case, flair, mask in cases:
        small, small_mask = _shrink(flair, f), (_shrink(mask.astype(np.float32), f) >= 0.5).astype(np.uint8)
        maps = flair_map(small) if maps_from == "flair" else small_mask.astype(np.float32)
        for k in reversed(range(len(small))):
            extra = {"volume": case, "slice_index": str(k)} if volume_columns else {}
            path = f"{case}/{case}_{k + 1}.png"
            writer.add(
                small[k][None].astype(np.float32),
                label=int(small_mask[k].any()),
                mask=small_mask[k],
                path=path,
                split="test",
                patient_id=case,
                **extra,
            )
            rows.append({"index": len(rows), "path": Path(path).name, "split": "test", "patient_id": case})
            all_maps.append(maps[k])
            scores.append(float(maps[k].max()))
    writer.finish(["normal", "lesion"], PreprocessConfig(size=(size, size)))
    pred = tmp / "pred"
    (pred / "maps").mkdir(parents=True)
    maps_arr = np.stack(all_maps)
    scored = Scored({"flair": maps_arr}, {"flair": np.array(scores)})
    write_scores_csv(pred / "scores.csv", rows, scored, {"flair": threshold})
    np.save(pred / "maps" / "flair.npy", maps_arr)
    thresholds = {"flair": {"pixel_threshold": threshold}}
    meta = {"source": "store", "normal_label": "normal", "thresholds": thresholds}
    (pred / "detect.json").write_text(json.dumps(meta))
    return pred, tmp / "store"
