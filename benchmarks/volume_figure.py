"""Render a volume with its detected lesion mask and anomaly map, read back from the NIfTI files detect wrote.

Reads the files a viewer would open (the input volume and ``volumes/<name>/<scorer>_{map,mask}.nii.gz``),
so the picture shows what ITK-SNAP or FSLeyes would show: three axial slices through the mask's largest
extent, the mask outline in cyan and, beside them, the anomaly map. Used for docs/img/volume-mask.png:

    python benchmarks/volume_figure.py my_volumes/CASE.nii.gz out/my_volumes --out docs/img/volume-mask.png
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("volume", type=Path, help="the input NIfTI")
    ap.add_argument("detect_out", type=Path, help="the vaedx detect --out folder")
    ap.add_argument("--scorer", default="residual")
    ap.add_argument("--truth", type=Path, default=None, help="optional ground-truth mask NIfTI (yellow)")
    ap.add_argument("--out", type=Path, default=Path("volume-mask.png"))
    a = ap.parse_args()
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import nibabel as nib

    from vaedx.io.volume import read_nifti_volume

    name = a.volume.name.removesuffix(".gz").removesuffix(".nii")
    folder = a.detect_out / "volumes" / name
    paths = [a.volume, folder / f"{a.scorer}_mask.nii.gz", folder / f"{a.scorer}_map.nii.gz"]
    if a.truth is not None:
        paths.append(a.truth)
    for p in paths[1:]:
        if not np.array_equal(nib.load(p).affine, nib.load(a.volume).affine):
            raise SystemExit(f"{p}: its affine differs from {a.volume}'s")
    # each file through the same reader, so all arrive in one (z, y, x) LPS display order
    vol, mask, heat, *truth = (read_nifti_volume(p).reoriented("LPS").data for p in paths)
    z_counts = (mask > 0).sum(axis=(1, 2))
    best = int(np.argmax(z_counts))
    planes = sorted({max(0, best - 4), best, min(len(vol) - 1, best + 4)})
    fig, axes = plt.subplots(2, len(planes), figsize=(3 * len(planes), 6), dpi=80)
    lo, hi = np.percentile(vol, [1, 99.5])
    hlo, hhi = np.percentile(heat, [50, 99.9])
    for col, k in enumerate(planes):
        for row in range(2):
            ax = axes[row, col]
            ax.imshow(vol[k], cmap="gray", vmin=lo, vmax=hi)
            if row == 0:
                if (mask[k] > 0).any():
                    ax.contour(mask[k] > 0, levels=[0.5], colors="cyan", linewidths=1.0)
                if truth and (truth[0][k] > 0).any():
                    ax.contour(truth[0][k] > 0, levels=[0.5], colors="yellow", linewidths=0.8)
                ax.set_title(f"slice {k}: mask (cyan)" + (", truth (yellow)" if truth else ""), fontsize=8)
            else:
                ax.imshow(heat[k], cmap="inferno", alpha=0.5, vmin=hlo, vmax=max(hhi, hlo + 1e-6))
                ax.set_title(f"slice {k}: {a.scorer} map", fontsize=8)
            ax.set_axis_off()
    fig.tight_layout()
    a.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(a.out)
    print(f"wrote {a.out}")


if __name__ == "__main__":
    main()
