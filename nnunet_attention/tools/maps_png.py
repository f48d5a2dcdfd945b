"""A PNG per case: the image slice through the most predicted foreground with the prediction's contours, and every
exported gate's attention on that same slice, side by side on one colour scale (0 to 1)."""
from typing import Dict

import numpy as np
import SimpleITK as sitk

from nnunet_attention.figures import save_figure


def write_overview(image_file: str, segmentation: np.ndarray, attention_by_level: Dict[int, np.ndarray],
                   png_file: str):
    """image_file: the case's first channel; segmentation and attention maps: arrays in the input's geometry."""
    from matplotlib.figure import Figure  # the object API: no pyplot, no backend switch

    image_itk = sitk.ReadImage(image_file)
    image = sitk.GetArrayFromImage(image_itk).astype(np.float32)
    segmentation = segmentation.reshape(image.shape)
    maps = {level: a.reshape(image.shape) for level, a in attention_by_level.items()}
    if image.ndim == 2:
        image, segmentation = image[None], segmentation[None]
        maps = {level: a[None] for level, a in maps.items()}
    foreground = (segmentation > 0).reshape(segmentation.shape[0], -1).sum(1)
    index = int(np.argmax(foreground)) if foreground.any() else len(image) // 2
    spacing = image_itk.GetSpacing()
    aspect = spacing[1] / spacing[0] if len(spacing) > 1 else 1.0

    fig = Figure(figsize=(3.6 * (1 + len(maps)), 4.0))
    axes = fig.subplots(1, 1 + len(maps), squeeze=False)[0]
    for ax in axes:
        ax.imshow(image[index], cmap="gray", aspect=aspect)
        ax.axis("off")
    labels = [v for v in np.unique(segmentation[index]) if v != 0]
    if labels:
        axes[0].contour(segmentation[index], levels=np.array(labels) - 0.5, colors=["yellow", "cyan", "magenta"],
                        linewidths=0.8)
    axes[0].set_title(f"slice {index}: prediction")
    heat = None
    for ax, (level, attention) in zip(axes[1:], sorted(maps.items())):
        heat = ax.imshow(attention[index], cmap="inferno", alpha=0.55, vmin=0, vmax=1, aspect=aspect)
        ax.set_title(f"attention, level {level}")
    fig.colorbar(heat, ax=list(axes[1:]), fraction=0.046).set_label("attention coefficient α (0 to 1)")
    save_figure(fig, png_file)
