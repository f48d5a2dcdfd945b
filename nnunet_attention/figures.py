"""How every figure is written: for a paper, a 300-dpi PNG (what report.md shows) and a PDF beside it."""
import os

PNG_DPI = 300


def save_figure(fig, png_path: str) -> str:
    """png_path and the same name ending in .pdf; returns png_path."""
    fig.savefig(png_path, dpi=PNG_DPI)
    fig.savefig(pdf_beside(png_path))
    return png_path


def pdf_beside(png_path: str) -> str:
    return os.path.splitext(png_path)[0] + ".pdf"
