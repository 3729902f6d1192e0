"""Result tables: one row per (run, eval set) with the headline metrics, as Markdown or CSV; the
X -> Y matrix and the per-language tables; the matrix heatmap.

In:  results in the shape of ``mdr.evaluation.benchmark``; the columns and their formats are what
     each benchmark declares (``Metric.headline``, ``label``, ``digits``).
Out: strings (Markdown, CSV) and PNG files.
"""

from __future__ import annotations

import csv
import io
import os

from mdr.evaluation.benchmark import Metric, declared_metrics, metric_of, per_language
from mdr.reference.published import comparison_rows, comparison_title


def headline(results: dict[str, dict]) -> list[Metric]:
    """The headline metrics declared by any of these eval sets' results, in declaration order."""
    out: dict[str, Metric] = {}
    for result in results.values():
        out.update({m.name: m for m in declared_metrics(result) if m.headline and m.name not in out})
    return list(out.values())


def result_rows(results: dict[str, dict], **columns: str) -> list[dict[str, str]]:
    """Flatten ``{set: metrics}`` into rows with every set's declared headline metrics; ``columns``
    (e.g. run=..., status=...) lead each row."""
    rows = []
    for name, result in results.items():
        row = {**columns, "eval set": name}
        row.update({m.label: m.format(result.get(m.name)) for m in declared_metrics(result) if m.headline})
        rows.append(row)
    return rows


def paper_comparison(results: dict[str, dict], model: str | None, sampler: str | None, run: str = "") -> list[dict[str, str]]:
    """The hybrid-batching paper's published figures beside ours, for every metric a benchmark
    declares a paper name for (``Metric.paper``), if the paper has the same model and batching."""
    values = {name: [(m.name, m.paper, result.get(m.name), m.digits) for m in declared_metrics(result) if m.paper]
              for name, result in results.items()}
    return comparison_rows(values, model, sampler, run=run)


def markdown_table(rows: list[dict[str, str]]) -> str:
    if not rows:
        return "(no results)"
    header = list(rows[0])
    for row in rows[1:]:
        header += [k for k in row if k not in header]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(r.get(h, "")) for h in header) + " |" for r in rows]
    return "\n".join(lines)


def csv_table(rows: list[dict[str, str]]) -> str:
    if not rows:
        return ""
    header = list(dict.fromkeys(k for r in rows for k in r))
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=header)
    writer.writeheader()
    writer.writerows(rows)
    return out.getvalue()


def results_report(results: dict[str, dict], model: str | None = None, sampler: str | None = None) -> str:
    """The headline table, then per eval set its X -> Y matrix (if any) and per-language metrics,
    then the published figures of the same model family and batching, if the paper has them."""
    parts = [markdown_table(result_rows(results))]
    published = paper_comparison(results, model, sampler)
    if published:
        parts.append(f"{comparison_title()}\n{markdown_table(published)}")
    for name, result in results.items():
        if "matrix" in result:
            parts.append(f"{name}: mAP, query language (rows) x pool language (columns)\n{matrix_table(result['matrix'])}")
        declared = {m.name: m for m in declared_metrics(result)}
        if result.get("seen_languages") is not None:
            groups = {"seen": result["seen_languages"], "unseen": result["unseen_languages"]}
            rows = [{"query languages": f"{g}: {', '.join(langs) or '-'}",
                     **{m.label: m.format(result.get(f"{m.name}_{g}")) for m in declared.values() if m.headline and f"{m.name}_{g}" in result}}
                    for g, langs in groups.items()]
            parts.append(f"{name}: languages seen and not seen in training\n{markdown_table(rows)}")
        tables = per_language(result)
        if tables:
            langs = list(dict.fromkeys(lang for values in tables.values() for lang in values))
            rows = [{"lang": lang, **{metric: _fmt(metric_of(metric, declared), values.get(lang)) for metric, values in tables.items()}}
                    for lang in langs]
            parts.append(f"{name}: per query language\n{markdown_table(rows)}")
    return "\n\n".join(parts)


def _fmt(metric: Metric | None, value) -> str:
    if metric is not None:
        return metric.format(value)
    return f"{value:.4f}" if isinstance(value, float) else ""


def matrix_table(matrix: dict[str, dict[str, float]]) -> str:
    """The X -> Y mAP matrix (rows: query language, columns: pool language) as Markdown."""
    langs = list(matrix)
    lines = ["| query \\ pool | " + " | ".join(langs) + " |", "|" + "---|" * (len(langs) + 1)]
    for x in langs:
        lines.append(f"| {x} | " + " | ".join(f"{matrix[x].get(y, float('nan')):.3f}" for y in langs) + " |")
    return "\n".join(lines)


def plot_matrix(matrix: dict[str, dict[str, float]], path: str, title: str = "mAP") -> str:
    """Save the X -> Y matrix as a heatmap PNG (rows: query language, columns: pool language)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    langs = list(matrix)
    values = np.array([[matrix[x].get(y, np.nan) for y in langs] for x in langs])
    fig, ax = plt.subplots(figsize=(1 + 0.6 * len(langs), 0.8 + 0.6 * len(langs)))
    im = ax.imshow(values, vmin=0, vmax=1, cmap="viridis")
    ax.set_xticks(range(len(langs)), langs)
    ax.set_yticks(range(len(langs)), langs)
    ax.set_xlabel("pool language")
    ax.set_ylabel("query language")
    ax.set_title(title)
    for i in range(len(langs)):
        for j in range(len(langs)):
            if not np.isnan(values[i, j]):
                ax.text(j, i, f"{values[i, j]:.2f}", ha="center", va="center", fontsize=7,
                        color="white" if values[i, j] < 0.5 else "black")
    fig.colorbar(im, ax=ax, fraction=0.046)
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
