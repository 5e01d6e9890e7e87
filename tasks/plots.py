"""Small pictures of a trained model for the MLflow run: loss curves, item-embedding PCA, item biases."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from tasks import contract as c

DPI = 80  # small PNGs: cheap to draw, write and upload
BIAS = "bias"
N_RATINGS = "n_ratings"


def history_frame(history) -> pd.DataFrame:
    """Per-epoch losses as a frame with an `epoch` column, from a list of dicts or a dict of lists."""
    if history is None or len(history) == 0:
        return pd.DataFrame({"epoch": []})
    frame = pd.DataFrame(list(history)) if not isinstance(history, Mapping) else pd.DataFrame(dict(history))
    if "epoch" not in frame.columns:
        frame.insert(0, "epoch", np.arange(len(frame)))
    return frame


def loss_curves(history, path: Path) -> Path:
    """Train/valid loss per epoch as a line chart."""
    frame = history_frame(history)
    fig, ax = _figure(5, 3.2)
    for col in frame.columns:
        if col.endswith("loss") and pd.api.types.is_numeric_dtype(frame[col]):
            ax.plot(frame["epoch"], frame[col], marker="o", label=col)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss")
    ax.set_title("loss per epoch")
    ax.grid(alpha=0.3)
    if ax.lines:
        ax.legend()
    return _save(fig, path)


def pca_2d(matrix: np.ndarray) -> np.ndarray:
    """Rows of `matrix` (n, d) projected on its first two principal components -> (n, 2)."""
    x = np.asarray(matrix, dtype=np.float64)
    x = x - x.mean(axis=0, keepdims=True)
    # Eigenvectors of the small (d, d) scatter matrix instead of an SVD of the (n, d) one: same
    # directions. einsum, not BLAS: multithreaded OpenBLAS spun for 0.1-1 s on these tiny products
    # on the shared 2-core CPU, einsum takes ~2 ms.
    _, vecs = np.linalg.eigh(np.einsum("ni,nj->ij", x, x))   # ascending: last columns are the top ones
    proj = np.einsum("nd,dk->nk", x, vecs[:, ::-1][:, :2])   # (n, 2)
    if proj.shape[1] < 2:  # a 1-factor model still gets a (flat) picture
        proj = np.pad(proj, ((0, 0), (0, 2 - proj.shape[1])))
    return proj


def embedding_pca(item_ids: np.ndarray, matrix: np.ndarray, titles: Mapping[int, str],
                  counts: Mapping[int, int], path: Path, n_labels: int = 30) -> Path:
    """The fastai picture: item embeddings on two principal components, most-rated movies labelled."""
    proj = pca_2d(matrix)
    fig, ax = _figure(7, 7)
    n_rated = np.array([counts.get(int(i), 0) for i in item_ids])
    top = [i for i in np.argsort(-n_rated, kind="stable")[:n_labels] if n_rated[i] > 0]
    labelled = np.isin(np.arange(len(proj)), top)
    # one scatter call for all points (one per point costs ~5 ms each): labelled ones big and blue
    ax.scatter(proj[:, 0], proj[:, 1], s=np.where(labelled, 16, 3),
               c=np.where(labelled[:, None], [[0.12, 0.47, 0.71, 1.0]], [[0.5, 0.5, 0.5, 0.3]]))
    for i in top:
        ax.annotate(_short(titles.get(int(item_ids[i]), str(item_ids[i]))), tuple(proj[i]), fontsize=7)
    ax.set_xlabel("PC 1")
    ax.set_ylabel("PC 2")
    ax.set_title(f"item embeddings, first two principal components ({len(top)} most-rated labelled)")
    return _save(fig, path)


def bias_table(item_ids: np.ndarray, biases: np.ndarray, titles: Mapping[int, str],
               counts: Mapping[int, int], n: int = 10) -> pd.DataFrame:
    """The n highest and n lowest item biases with titles, highest first."""
    frame = pd.DataFrame({c.ITEM_ID: np.asarray(item_ids), BIAS: np.asarray(biases, dtype=np.float64)})
    frame[c.TITLE] = [titles.get(int(i), str(i)) for i in frame[c.ITEM_ID]]
    frame[N_RATINGS] = [int(counts.get(int(i), 0)) for i in frame[c.ITEM_ID]]
    frame = frame.sort_values([BIAS, c.ITEM_ID], ascending=[False, True], kind="stable")
    picked = pd.concat([frame.head(n), frame.tail(n)]).drop_duplicates(c.ITEM_ID)
    return picked.reset_index(drop=True)[[c.ITEM_ID, c.TITLE, BIAS, N_RATINGS]]


def bias_chart(table: pd.DataFrame, path: Path) -> Path:
    """Horizontal bars of the highest and lowest item biases."""
    fig, ax = _figure(7, 0.2 * len(table) + 1, left=0.35)
    labels = [_short(t) for t in table[c.TITLE]]
    colors = ["tab:green" if b >= 0 else "tab:red" for b in table[BIAS]]
    ax.barh(range(len(table)), table[BIAS], color=colors)
    ax.set_yticks(range(len(table)), labels, fontsize=7)
    ax.invert_yaxis()
    ax.set_xlabel("learned item bias")
    ax.set_title("movies with the highest and lowest learned bias")
    return _save(fig, path)


def bias_markdown(table: pd.DataFrame) -> str:
    """The bias table as a markdown table (no optional dependency such as tabulate)."""
    rows = [f"| {r[c.ITEM_ID]} | {str(r[c.TITLE]).replace('|', '/')} | {r[BIAS]:+.3f} | {r[N_RATINGS]} |"
            for _, r in table.iterrows()]
    head = [f"| {c.ITEM_ID} | {c.TITLE} | {BIAS} | {N_RATINGS} |", "| ---: | --- | ---: | ---: |"]
    return "\n".join(head + rows) + "\n"


def _short(title: str, width: int = 28) -> str:
    return title if len(title) <= width else title[: width - 1] + "…"


def _figure(width: float, height: float, left: float = 0.12):
    # A bare Figure on the Agg canvas: no pyplot state, no GUI, safe in worker threads.
    # Fixed margins instead of tight_layout, which costs a full extra draw.
    fig = Figure(figsize=(width, height), dpi=DPI)
    FigureCanvasAgg(fig)
    fig.subplots_adjust(left=left, right=0.97, bottom=0.14, top=0.9)
    return fig, fig.add_subplot()


def _save(fig, path: Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=DPI)
    return path


__all__: Sequence[str] = ("history_frame", "loss_curves", "pca_2d", "embedding_pca", "bias_table",
                          "bias_chart", "bias_markdown")
