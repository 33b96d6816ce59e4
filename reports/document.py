"""Page layout and the PDF: A4 pages filled top to bottom, tables drawn as text, atomic output.

A `Page` is one matplotlib figure with a cursor (inches from the top): every block (wrapped
text, table, axes) takes the height it needs below the previous one, so blocks never overlap;
long text is wrapped to the page width. Font sizes are >= 8 pt.
"""

from __future__ import annotations

import logging
import textwrap
from pathlib import Path
from typing import Any, Iterable

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.backends.backend_pdf import PdfPages  # noqa: E402
from matplotlib.patches import Rectangle  # noqa: E402

from core.io import atomic_path  # noqa: E402
from reports.tables import Table  # noqa: E402

log = logging.getLogger("cvls")
logging.getLogger("fontTools").setLevel(logging.WARNING)  # the PDF font subsetter logs every table at INFO

A4 = (8.27, 11.69)  # inches
MARGIN = 0.6
BODY, SMALL = 9.0, 8.0  # pt
RC = {
    "pdf.fonttype": 42,  # TrueType: the PDF text is extractable (tests read it back)
    "svg.fonttype": "none",  # SVG keeps text as text
    "font.size": BODY,
    "axes.titlesize": 10,
    "axes.labelsize": 9,
    "xtick.labelsize": 8,
    "ytick.labelsize": 8,
    "legend.fontsize": 8,
    "legend.title_fontsize": 8,
}


class Page:
    def __init__(self, name: str, title: str) -> None:
        self.name = name  # file stem of the page's PNG/SVG
        self.title = title
        self.fig = plt.figure(figsize=A4)
        self.y = MARGIN
        self.text(title, size=14, weight="bold", gap=0.12)

    @property
    def width(self) -> float:
        return A4[0] - 2 * MARGIN

    @property
    def remaining(self) -> float:
        return A4[1] - MARGIN - self.y

    def _rect(self, x: float, y: float, w: float, h: float) -> list[float]:
        """[left, bottom, width, height] in figure fractions from inches (y from the top)."""
        return [x / A4[0], 1 - (y + h) / A4[1], w / A4[0], h / A4[1]]

    def _advance(self, h: float) -> None:
        self.y += h
        if self.y > A4[1] - MARGIN + 1e-6:
            log.warning("report page %r overflows its bottom margin by %.2f in", self.name, self.y - (A4[1] - MARGIN))

    def _size(self, artist: Any) -> tuple[float, float]:
        """An artist's drawn (width, height) in inches."""
        bb = artist.get_window_extent(renderer=self.fig.canvas.get_renderer())
        return bb.width / self.fig.dpi, bb.height / self.fig.dpi

    def text(
        self,
        s: str,
        *,
        size: float = BODY,
        weight: str = "normal",
        color: str = "black",
        gap: float = 0.1,
        indent: float = 0.0,
        box: str | None = None,
    ) -> None:
        """Text wrapped to the page width (measured, not guessed); '\n' starts a new line.
        box: a face colour for a framed banner."""
        pad = 0.1 if box else 0.0
        avail = self.width - indent - 2 * pad
        x, y = self._rect(MARGIN + indent + pad, self.y + pad, 0, 0)[:2]
        artist = self.fig.text(
            x, y, s, fontsize=size, weight=weight, color=color, va="top", ha="left", linespacing=1.25
        )
        chars = int(avail * 72 / (size * 0.45))
        while True:
            artist.set_text("\n".join(w for para in s.split("\n") for w in (textwrap.wrap(para, chars) or [""])))
            w, h = self._size(artist)
            if w <= avail or chars <= 10:
                break
            chars = min(chars - 1, int(chars * avail / w))
        if box:
            ax = self.fig.add_axes(self._rect(MARGIN + indent, self.y, self.width - indent, h + 2 * pad), zorder=-1)
            ax.set_axis_off()
            ax.add_patch(Rectangle((0, 0), 1, 1, transform=ax.transAxes, facecolor=box, edgecolor="0.3", lw=0.8))
        self._advance(h + 2 * pad + gap)

    def _cell_size(self, s: str, size: float, bold: bool) -> tuple[float, float]:
        t = self.fig.text(0, 0, s, fontsize=size, weight="bold" if bold else "normal", linespacing=1.2)
        try:
            return self._size(t)
        finally:
            t.remove()

    def table(self, t: Table, *, size: float = SMALL, gap: float = 0.18, full_width: bool = False) -> None:
        """A booktabs-style table drawn as text: first column left-aligned, others centred;
        column widths and row heights measured from the cells."""
        cells = [t.header, *t.rows]
        ncol = len(t.header)
        bold = [r == 0 or (r - 1) in t.bold_rows for r in range(len(cells))]
        sizes = [[self._cell_size(str(c), size, bold[r]) for c in row] for r, row in enumerate(cells)]
        natural = [max(sizes[r][c][0] for r in range(len(cells))) + 0.15 for c in range(ncol)]
        heights = [max(h for _, h in row) + 0.09 for row in sizes]
        total = sum(natural)
        if total > self.width:
            log.warning("report table on page %r is %.2f in wider than the page", self.name, total - self.width)
        scale = self.width / total if full_width or total > self.width else 1.0
        widths = [w * scale for w in natural]
        w, h = sum(widths), sum(heights)
        ax = self.fig.add_axes(self._rect(MARGIN, self.y, w, h))
        ax.set_xlim(0, w)
        ax.set_ylim(h, 0)
        ax.set_axis_off()
        y = 0.0
        for r, (row, rh) in enumerate(zip(cells, heights)):
            if r > 0 and r % 2 == 0:
                ax.add_patch(Rectangle((0, y), w, rh, facecolor="0.94", edgecolor="none"))
            x = 0.0
            for c, (cell, cw) in enumerate(zip(row, widths)):
                ax.text(
                    x + 0.07 if c == 0 else x + cw / 2,
                    y + rh / 2,
                    str(cell),
                    fontsize=size,
                    va="center",
                    ha="left" if c == 0 else "center",
                    weight="bold" if bold[r] else "normal",
                    linespacing=1.2,
                )
                x += cw
            y += rh
        for yy, lw in ((0, 1.0), (heights[0], 0.6), (h, 1.0)):
            ax.plot([0, w], [yy, yy], color="black", lw=lw, clip_on=False)
        self._advance(h + gap)

    def legend(self, handles: list[Any], labels: list[str], *, title: str | None = None, gap: float = 0.1) -> None:
        """A legend below the previous block, centred, in as many columns as fit the page width."""
        if not handles:
            return
        for ncol in range(len(handles), 0, -1):
            leg = self.fig.legend(
                handles,
                labels,
                ncol=ncol,
                title=title,
                loc="upper center",
                frameon=False,
                bbox_to_anchor=self._rect(MARGIN + self.width / 2, self.y, 0, 0)[:2],
            )
            w, h = self._size(leg)
            if w <= self.width or ncol == 1:
                break
            leg.remove()
        self._advance(h + gap)

    def axes(
        self,
        height: float,
        ncols: int = 1,
        *,
        left: float = 0.75,
        right: float = 0.15,
        top: float = 0.3,
        bottom: float = 0.55,
        wspace: float = 0.8,
    ) -> list[Any]:
        """`ncols` axes side by side in a block `height` inches tall; the paddings hold the axes'
        titles, tick labels and axis labels inside the block."""
        inner_w = (self.width - left - right - wspace * (ncols - 1)) / ncols
        axs = [
            self.fig.add_axes(
                self._rect(MARGIN + left + i * (inner_w + wspace), self.y + top, inner_w, height - top - bottom)
            )
            for i in range(ncols)
        ]
        self._advance(height)
        return axs

    def footer(self, s: str) -> None:
        """One line in the bottom margin (below every block)."""
        self.fig.text(MARGIN / A4[0], (MARGIN / 2) / A4[1], s, fontsize=SMALL, color="0.35", va="center", ha="left")


def save_pages(pages: Iterable[Page], folder: Path) -> list[Path]:
    """Every page as PNG and SVG in `folder` (atomic each); the written paths."""
    written = []
    for page in pages:
        for fmt, kw in (("png", {"dpi": 150}), ("svg", {})):
            path = folder / f"{page.name}.{fmt}"
            with atomic_path(path) as tmp:
                page.fig.savefig(tmp, format=fmt, **kw)
            written.append(path)
    return written


def write_pdf(pages: Iterable[Page], path: Path, metadata: dict[str, str]) -> Path:
    """All pages into one PDF, written to a temp file and renamed (never a half-written report)."""
    with atomic_path(path) as tmp:
        with PdfPages(tmp, metadata=metadata) as pdf:
            for page in pages:
                pdf.savefig(page.fig)
    return path


def close(pages: Iterable[Page]) -> None:
    for page in pages:
        plt.close(page.fig)
