"""A PNG per case: image slice through the target, prediction contours, finest gate's attention as a heat map."""
import numpy as np
import SimpleITK as sitk


def write_overview(image_file: str, segmentation_file: str, attention: np.ndarray, level: int, png_file: str):
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    image_itk = sitk.ReadImage(image_file)
    image = sitk.GetArrayFromImage(image_itk).astype(np.float32)
    segmentation = sitk.GetArrayFromImage(sitk.ReadImage(segmentation_file))
    attention = attention.reshape(image.shape)
    if image.ndim == 2:
        image, segmentation, attention = image[None], segmentation[None], attention[None]
    foreground = (segmentation > 0).reshape(segmentation.shape[0], -1).sum(1)
    index = int(np.argmax(foreground)) if foreground.any() else len(image) // 2
    spacing = image_itk.GetSpacing()
    aspect = spacing[1] / spacing[0] if len(spacing) > 1 else 1.0

    fig, axes = plt.subplots(1, 2, figsize=(8, 4.2))
    for ax in axes:
        ax.imshow(image[index], cmap="gray", aspect=aspect)
        ax.axis("off")
    labels = [v for v in np.unique(segmentation[index]) if v != 0]
    if labels:
        axes[0].contour(segmentation[index], levels=np.array(labels) - 0.5, colors=["yellow", "cyan", "magenta"],
                        linewidths=0.8)
    heat = axes[1].imshow(attention[index], cmap="inferno", alpha=0.55, vmin=0, vmax=1, aspect=aspect)
    axes[0].set_title(f"slice {index}: prediction")
    axes[1].set_title(f"attention, level {level} (finest gated)")
    fig.colorbar(heat, ax=axes[1], fraction=0.046)
    fig.tight_layout()
    fig.savefig(png_file, dpi=110)
    plt.close(fig)
