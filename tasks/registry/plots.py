"""Small pictures of a trained model for the MLflow run: loss curves, item-embedding PCA, item biases."""

from __future__ import annotations

import textwrap
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import LogNorm
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from tasks.core import contract as c

DPI = 100  # 800 x 500 px loss curves, 900 x 800 px PCA: readable in the MLflow artifact viewer
BIAS = "bias"
N_RATINGS = "n_ratings"
# What a model's loss is called on plots (tasks.registry.tracking names the metrics: train_mse, valid_softmax_ce).
LOSS_TITLES = {"mse": "mean squared error", "softmax": "softmax cross-entropy"}


def history_frame(history) -> pd.DataFrame:
    """Per-epoch losses as a frame with an `epoch` column, from a list of dicts or a dict of lists."""
    if history is None or len(history) == 0:
        return pd.DataFrame({"epoch": []})
    frame = pd.DataFrame(list(history)) if not isinstance(history, Mapping) else pd.DataFrame(dict(history))
    if "epoch" not in frame.columns:
        frame.insert(0, "epoch", np.arange(len(frame)))
    return frame


def loss_curves(history, path: Path, model: str = "", loss: str = "") -> Path:
    """Train and valid loss per epoch, titled with the model and its loss (`loss`: 'mse' | 'softmax')."""
    frame = history_frame(history)
    loss_title = LOSS_TITLES.get(loss, loss or "loss")
    fig, ax = _figure(8, 5)
    for col, label in (("train_loss", "train (with the L2 penalty, if any)"), ("valid_loss", "valid")):
        if col in frame.columns and pd.api.types.is_numeric_dtype(frame[col]) and frame[col].notna().any():
            ax.plot(frame["epoch"] + 1, frame[col], marker="o", label=label)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("epoch", fontsize=11)
    ax.set_ylabel(loss_title, fontsize=11)
    ax.set_title(f"{model}: {loss_title} per epoch" if model else f"{loss_title} per epoch", fontsize=13)
    ax.grid(alpha=0.3)
    if ax.lines:
        ax.legend(fontsize=10)
    return _save(fig, path)


def pca(matrix: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(rows of `matrix` (n, d) on its first two principal components (n, 2), variance share of each (2,))."""
    x = np.asarray(matrix, dtype=np.float64)
    x = x - x.mean(axis=0, keepdims=True)
    # Eigenvectors of the small (d, d) scatter matrix instead of an SVD of the (n, d) one: same
    # directions. einsum, not BLAS: multithreaded OpenBLAS spun for 0.1-1 s on these tiny products
    # on the shared 2-core CPU, einsum takes ~2 ms.
    vals, vecs = np.linalg.eigh(np.einsum("ni,nj->ij", x, x))   # ascending: last columns are the top ones
    proj = np.einsum("nd,dk->nk", x, vecs[:, ::-1][:, :2])       # (n, 2)
    total = float(vals.sum())
    share = np.clip(vals[::-1][:2], 0, None) / total if total > 0 else np.zeros(min(2, len(vals)))
    if proj.shape[1] < 2:  # a 1-factor model still gets a (flat) picture
        proj = np.pad(proj, ((0, 0), (0, 2 - proj.shape[1])))
        share = np.pad(share, (0, 2 - len(share)))
    return proj, share


def pca_2d(matrix: np.ndarray) -> np.ndarray:
    """Rows of `matrix` (n, d) projected on its first two principal components -> (n, 2)."""
    return pca(matrix)[0]


def pick_labels(proj: np.ndarray, n_rated: np.ndarray, n_labels: int = 30) -> list[int]:
    """Rows worth a label: the most-rated items, then the well-known items at each end of both axes.

    The most-rated items crowd one corner (popularity is usually PC 1); the extremes of each axis among
    the better-known half of the catalogue say what the axes mean.
    """
    order = np.argsort(-n_rated, kind="stable")
    known = order[: max(1, int(np.count_nonzero(n_rated > 0) * 0.5))]
    picked = [int(i) for i in order[: n_labels // 3] if n_rated[i] > 0]
    per_end = max(1, (n_labels - len(picked)) // 4)
    for axis in (0, 1):
        ranked = known[np.argsort(proj[known, axis], kind="stable")]
        for i in [*ranked[:per_end], *ranked[::-1][:per_end]]:
            if int(i) not in picked:
                picked.append(int(i))
    return picked[:n_labels]


def spread_labels(ax, points: np.ndarray, texts: Sequence[str], fontsize: float = 8) -> int:
    """Annotate each point with its text where it overlaps no earlier label (greedy, measured in pixels).

    Tries offsets on rings around the point, nearest first, and draws a thin leader line for distant
    ones; a label with no free place inside the axes is left out. Returns how many were drawn.
    """
    renderer = ax.figure.canvas.get_renderer()
    frame = ax.get_window_extent(renderer)
    placed = []
    rings = [(r, a) for r in (6, 18, 32, 50, 72) for a in np.linspace(0, 2 * np.pi, 12, endpoint=False)]
    for point, text in zip(np.asarray(points, dtype=np.float64), texts):
        xy = (float(point[0]), float(point[1]))
        probe = ax.annotate(text, xy, xytext=(0, 0), textcoords="offset pixels", fontsize=fontsize, va="center")
        spot = None
        for radius, angle in rings:
            dx, dy = radius * np.cos(angle), radius * np.sin(angle)
            probe.set_position((dx, dy))
            probe.set_horizontalalignment("left" if dx >= 0 else "right")
            box = probe.get_window_extent(renderer)
            inside = frame.x0 <= box.x0 and box.x1 <= frame.x1 and frame.y0 <= box.y0 and box.y1 <= frame.y1
            if inside and not any(box.overlaps(other) for other in placed):
                spot = (dx, dy, radius)
                placed.append(box)
                break
        probe.remove()
        if spot is not None:
            dx, dy, radius = spot
            ax.annotate(text, xy, xytext=(dx, dy), textcoords="offset pixels", fontsize=fontsize, va="center",
                        ha="left" if dx >= 0 else "right",
                        arrowprops=dict(arrowstyle="-", lw=0.5, color="0.35", shrinkA=0, shrinkB=2)
                        if radius > 6 else None)
    return len(placed)


def embedding_pca(item_ids: np.ndarray, matrix: np.ndarray, titles: Mapping[int, str],
                  counts: Mapping[int, int], path: Path, n_labels: int = 30, model: str = "") -> Path:
    """Item embeddings on two principal components, coloured by rating count, labels spread out."""
    proj, share = pca(matrix)
    n_rated = np.array([counts.get(int(i), 0) for i in item_ids])
    fig, ax = _figure(9, 8, right=0.88)
    pad = 0.08 * (proj.max(axis=0) - proj.min(axis=0) + 1e-9)
    ax.set_xlim(proj[:, 0].min() - pad[0], proj[:, 0].max() + pad[0])
    ax.set_ylim(proj[:, 1].min() - pad[1], proj[:, 1].max() + pad[1])
    order = np.argsort(n_rated, kind="stable")  # most-rated drawn last, on top
    dots = ax.scatter(proj[order, 0], proj[order, 1], s=10, c=np.maximum(n_rated[order], 1), cmap="viridis",
                      norm=LogNorm(vmin=1, vmax=max(2, int(n_rated.max()))), alpha=0.8, linewidths=0)
    fig.colorbar(dots, ax=ax, fraction=0.04, pad=0.02).set_label("ratings in the training data (log scale)")
    picked = pick_labels(proj, n_rated, n_labels) if n_rated.any() else []
    if picked:
        ax.scatter(proj[picked, 0], proj[picked, 1], s=22, facecolors="none", edgecolors="black", linewidths=0.7)
    shown = spread_labels(ax, proj[picked], [_short(titles.get(int(item_ids[i]), str(item_ids[i]))) for i in picked])
    ax.set_xlabel(f"PC 1 ({share[0]:.0%} of the variance)", fontsize=11)
    ax.set_ylabel(f"PC 2 ({share[1]:.0%} of the variance)", fontsize=11)
    head = f"{model}: item embeddings" if model else "item embeddings"
    ax.set_title(f"{head} on their first two principal components\n{shown} labelled: the most-rated items and "
                 "the well-known items at each end of both axes", fontsize=12)
    return _save(fig, path)


def popularity_correlation(biases: np.ndarray, n_rated: np.ndarray) -> float:
    """Spearman correlation of item biases with rating counts (1: the bias is a popularity score)."""
    b, n = pd.Series(np.asarray(biases, dtype=np.float64)), pd.Series(np.asarray(n_rated, dtype=np.float64))
    if len(b) < 3 or b.nunique() < 2 or n.nunique() < 2:
        return float("nan")
    return float(b.rank().corr(n.rank()))


def bias_meaning(loss: str) -> tuple[str, str]:
    """(title, x-axis label) that say what a learned item bias means under a model's loss."""
    if loss == "softmax":
        return ("item bias of a ranking model (softmax cross-entropy): how often an item is chosen, "
                "i.e. popularity, not how well it is liked", "learned item bias (log-odds of being chosen)")
    return ("item bias of a rating model (MSE): how much better an item is rated than the user and item "
            "factors predict", "learned item bias (before the rating sigmoid)")


def bias_table(item_ids: np.ndarray, biases: np.ndarray, titles: Mapping[int, str],
               counts: Mapping[int, int], n: int = 10) -> pd.DataFrame:
    """The n highest and n lowest item biases with titles, highest first."""
    frame = pd.DataFrame({c.ITEM_ID: np.asarray(item_ids), BIAS: np.asarray(biases, dtype=np.float64)})
    frame[c.TITLE] = [titles.get(int(i), str(i)) for i in frame[c.ITEM_ID]]
    frame[N_RATINGS] = [int(counts.get(int(i), 0)) for i in frame[c.ITEM_ID]]
    frame = frame.sort_values([BIAS, c.ITEM_ID], ascending=[False, True], kind="stable")
    picked = pd.concat([frame.head(n), frame.tail(n)]).drop_duplicates(c.ITEM_ID)
    return picked.reset_index(drop=True)[[c.ITEM_ID, c.TITLE, BIAS, N_RATINGS]]


def bias_chart(table: pd.DataFrame, path: Path, loss: str = "mse", model: str = "",
               correlation: float | None = None) -> Path:
    """Horizontal bars of the highest and lowest item biases, each labelled with its rating count."""
    title, xlabel = bias_meaning(loss)
    fig, ax = _figure(10, 0.28 * len(table) + 2.2, left=0.34, top=1 - 1.1 / (0.28 * len(table) + 2.2))
    labels = [f"{_short(t, 34)} (n={n})" for t, n in zip(table[c.TITLE], table[N_RATINGS])]
    colors = ["tab:green" if b >= 0 else "tab:red" for b in table[BIAS]]
    ax.barh(range(len(table)), table[BIAS], color=colors)
    ax.set_yticks(range(len(table)), labels, fontsize=9)
    ax.invert_yaxis()
    ax.set_xlabel(xlabel, fontsize=10)
    lines = textwrap.wrap(f"{model}: {title}" if model else title, 90)
    if correlation is not None and np.isfinite(correlation):
        lines.append(f"n = ratings in the training data; Spearman correlation of bias with n over all items: "
                     f"{correlation:+.2f}")
    ax.set_title("\n".join(lines), fontsize=10)
    return _save(fig, path)


def bias_markdown(table: pd.DataFrame) -> str:
    """The bias table as a markdown table (no optional dependency such as tabulate)."""
    rows = [f"| {r[c.ITEM_ID]} | {str(r[c.TITLE]).replace('|', '/')} | {r[BIAS]:+.3f} | {r[N_RATINGS]} |"
            for _, r in table.iterrows()]
    head = [f"| {c.ITEM_ID} | {c.TITLE} | {BIAS} | {N_RATINGS} |", "| ---: | --- | ---: | ---: |"]
    return "\n".join(head + rows) + "\n"


def _short(title: str, width: int = 30) -> str:
    return title if len(title) <= width else title[: width - 1] + "…"


def _figure(width: float, height: float, left: float = 0.1, right: float = 0.97, top: float = 0.9):
    # A bare Figure on the Agg canvas: no pyplot state, no GUI, safe in worker threads.
    # Fixed margins instead of tight_layout, which costs a full extra draw.
    fig = Figure(figsize=(width, height), dpi=DPI)
    FigureCanvasAgg(fig)
    fig.subplots_adjust(left=left, right=right, bottom=0.1, top=top)
    return fig, fig.add_subplot()


def _save(fig, path: Path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=DPI)
    return path


__all__: Sequence[str] = ("history_frame", "loss_curves", "pca", "pca_2d", "pick_labels", "spread_labels",
                          "embedding_pca", "popularity_correlation", "bias_meaning", "bias_table", "bias_chart",
                          "bias_markdown")


def write_pictures(folder: Path, recommender, history, movies: pd.DataFrame | None,
                   train: pd.DataFrame | None) -> list[Path]:
    """Loss curves, the item-embedding PCA and the item-bias table/chart (when the model has biases).

    Each picture is titled with the model and its loss; the bias chart says what a bias means under
    that loss (a rating offset under MSE, popularity under softmax) and shows each item's rating count.
    """
    config = getattr(recommender, "config", None)
    kind, loss = getattr(config, "kind", ""), getattr(getattr(config, "loss", None), "name", "")
    model = f"{kind} ({loss})" if kind and loss else kind
    written = [loss_curves(history, folder / "loss_curves.png", model=model, loss=loss)]
    titles = dict(zip(movies[c.ITEM_ID].astype(int), movies[c.TITLE])) if movies is not None else {}
    counts = train[c.ITEM_ID].value_counts().to_dict() if train is not None else {}
    item_ids, matrix = recommender.item_embeddings()
    item_ids, matrix = np.asarray(item_ids), np.asarray(matrix)
    if len(item_ids) >= 2:
        written.append(embedding_pca(item_ids, matrix, titles, counts, folder / "item_embeddings_pca.png",
                                           model=model))
    biases = item_biases(recommender)
    if biases is not None:
        table = bias_table(*biases, titles, counts)
        table.to_csv(folder / "item_bias.csv", index=False)
        (folder / "item_bias.md").write_text(bias_markdown(table))
        n_rated = np.array([counts.get(int(i), 0) for i in biases[0]])
        rho = popularity_correlation(biases[1], n_rated) if counts else None
        written += [folder / "item_bias.csv", folder / "item_bias.md",
                    bias_chart(table, folder / "item_bias.png", loss=loss or "mse", model=model,
                                     correlation=rho)]
    return written


def item_biases(recommender) -> tuple[np.ndarray, np.ndarray] | None:
    """(item_ids, learned item bias) for models that have one (dot_bias, the NN with output biases), else None."""
    getter = getattr(recommender, "item_biases", None)
    if getter is not None:
        got = getter()
        return None if got is None else (np.asarray(got[0]), np.asarray(got[1], dtype=np.float64))
    # both models keep item biases in an embedding whose row 0 is the "unknown" item
    bias = getattr(getattr(recommender, "model", None), "item_bias", None)
    if bias is None:
        return None
    return np.asarray(recommender.item_ids), bias.weight[1:, 0].detach().float().cpu().numpy().astype(np.float64)
