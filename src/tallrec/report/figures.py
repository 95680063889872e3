"""Figure 3 (AT / RT / TALLRec vs K), Figure 4 (train domain x test domain) and the data files of the
`dvc plots` definitions (ROC curves, AUC vs K)."""

from __future__ import annotations

from pathlib import Path
from typing import Iterable

import numpy as np

from tallrec.metrics import auc
from tallrec.names import DOMAINS, ICL, SHOT_DOMAINS, VARIANTS, run_name
from tallrec.report.cells import build_cell, common_rows, score_matrix
from tallrec.report.markdown import ROW_NAMES
from tallrec.report.runs import Run


def variant_points(
    runs: list[Run], variant: str, domain: str, boot_n: int, seed: int
) -> list[tuple[int, float, float, float]]:
    """(K, mean AUC over seeds, CI low, CI high) of one variant trained and tested on `domain`."""
    points = []
    for k in sorted({r.k for r in runs if r.row == variant and r.test_domain == domain and r.train_domain == domain}):
        chosen = [
            r for r in runs if r.row == variant and r.test_domain == domain and r.train_domain == domain and r.k == k
        ]
        cell = build_cell(domain, k, {variant: chosen}, boot_n, seed)
        r = cell.rows[variant]
        points.append((k, r.mean, *r.ci))
    return points


def at_level(runs: list[Run], domain: str, boot_n: int, seed: int) -> tuple[float, float, float] | None:
    """(AUC, CI low, CI high) of AT on `domain`. AT is stage 1 alone: the K, train domain and seed in its
    configuration name do not change its adapter, so it is one level for every K, from the one AT run
    scored on the most rows of `domain`."""
    chosen = max(
        (r for r in runs if r.row == "at" and r.test_domain == domain), key=lambda r: r.frame.height, default=None
    )
    if chosen is None:
        return None
    row = build_cell(domain, 0, {"at": [chosen]}, boot_n, seed).rows["at"]
    return row.mean, *row.ci


def like_share_points(runs: list[Run], domain: str) -> list[tuple[int, float]]:
    """(K, like-share AUC) on the rows that Figure 3's point at K was scored on (TALLRec's, else RT's),
    as its Table 3 cell measures it: a floor from the full test set would not compare with a point
    scored on a seeded subset."""
    points = []
    anchor = next((v for v in ("tallrec", "rt") if any(r.row == v and r.test_domain == domain for r in runs)), None)
    for k in sorted({r.k for r in runs if r.row == anchor and r.test_domain == domain and r.train_domain == domain}):
        chosen = [
            r for r in runs if r.row == anchor and r.test_domain == domain and r.train_domain == domain and r.k == k
        ]
        share = [
            r for r in runs if r.row == "like_share" and r.test_domain == domain and r.k == k and r.seed in (None, 0)
        ]
        if share:
            rows = common_rows([chosen, share[:1]])
            points.append((k, auc(rows["label"].to_numpy(), score_matrix(rows, share[:1])[:, 0])))
    return points


def _save(fig, title: str, out: Path) -> None:
    import matplotlib.pyplot as plt

    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(out, dpi=120, format="png")  # `out` may be a temporary name without the .png suffix
    plt.close(fig)


def figure3(
    runs: list[Run],
    domains: Iterable[str],
    ks: Iterable[int],
    xlim: tuple[float, float],
    out: Path,
    boot_n: int,
    seed: int,
) -> None:
    """AUC vs K for RT and TALLRec, AT as one level (it has no K), one panel per test domain, 95 %
    user-bootstrap bands; the x axis ticks at `ks` (Table 3's K) over `xlim`."""
    domains, ks = list(domains), list(ks)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import matplotlib.ticker  # noqa: F401 (matplotlib.ticker.NullLocator)

    fig, axes = plt.subplots(1, len(domains), figsize=(5 * len(domains), 4), squeeze=False)
    for ax, domain in zip(axes[0], domains):
        level = at_level(runs, domain, boot_n, seed)
        if level:
            ax.axhline(level[0], color="tab:orange", lw=1.5, label=f"{ROW_NAMES['at']}: no K")
            ax.axhspan(level[1], level[2], color="tab:orange", alpha=0.12)
        for variant, color in (("rt", "tab:green"), ("tallrec", "tab:blue")):
            pts = variant_points(runs, variant, domain, boot_n, seed)
            if pts:
                ks, means, lo, hi = zip(*pts)
                ax.plot(ks, means, "o-", color=color, label=ROW_NAMES[variant])
                ax.fill_between(ks, lo, hi, color=color, alpha=0.15)
                ax.errorbar(
                    ks, means, yerr=[np.subtract(means, lo), np.subtract(hi, means)], fmt="none", color=color, capsize=3
                )
        floor = like_share_points(runs, domain)
        if floor:
            ax.plot(*zip(*floor), color="black", lw=1, ls="--", marker="_", label=ROW_NAMES["like_share"])
        ax.axhline(0.5, color="grey", lw=0.8, ls=":")
        ax.set_xscale("log")
        ax.xaxis.set_minor_locator(matplotlib.ticker.NullLocator())
        ax.set(
            xticks=ks,
            xticklabels=[str(k) for k in ks],
            xlim=tuple(xlim),
            ylim=(0.3, 0.85),
            xlabel="K (rec-tuning samples)",
            ylabel="test AUC",
            title=f"trained and tested on {domain}",
        )
        if level or any(line.get_label() in (ROW_NAMES[v] for v in ("rt", "tallrec")) for line in ax.get_lines()):
            ax.legend(loc="lower right", fontsize=8)
        else:
            ax.text(0.5, 0.5, "not run", ha="center", va="center", transform=ax.transAxes)
    _save(fig, "Figure 3: AT / RT / TALLRec (bands: 95 % user-bootstrap CI)", out)


def figure4(
    runs: list[Run],
    out: Path,
    boot_n: int,
    seed: int,
    test_domains: Iterable[str] = DOMAINS,
    empty_ks: Iterable[int] = (64,),
) -> None:
    """Grouped bars: TALLRec trained on each of SHOT_DOMAINS, tested on each of `test_domains`, one panel
    per K that has TALLRec runs (`empty_ks` where none has: panels that say "not run")."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    tallrec = [r for r in runs if r.row == "tallrec"]
    ks = sorted({r.k for r in tallrec}) or list(empty_ks)
    fig, axes = plt.subplots(1, len(ks), figsize=(4.5 * len(ks), 4), squeeze=False)
    trains, tests = SHOT_DOMAINS, list(test_domains)
    colors = ("tab:red", "tab:purple", "tab:gray", "tab:olive", "tab:cyan")
    for ax, k in zip(axes[0], ks):
        for i, train in enumerate(trains):
            for j, test in enumerate(tests):
                chosen = [r for r in tallrec if r.k == k and r.train_domain == train and r.test_domain == test]
                if not chosen:
                    continue
                r = build_cell(test, k, {"tallrec": chosen}, boot_n, seed).rows["tallrec"]
                x = j + (i - (len(trains) - 1) / 2) * 0.27  # the bars of one test domain side by side
                ax.bar(x, r.mean, 0.25, color=colors[i % len(colors)], label=f"trained on {train}")
                ax.errorbar(x, r.mean, yerr=[[r.mean - r.ci[0]], [r.ci[1] - r.mean]], color="black", capsize=3)
        ax.axhline(0.5, color="grey", lw=0.8, ls=":")
        ax.set(
            xticks=range(len(tests)),
            xticklabels=[f"tested on {t}" for t in tests],
            xlim=(-0.5, len(tests) - 0.5),
            ylim=(0.2, 0.95),
            ylabel="test AUC",
            title=f"K={k}",
        )
        handles, labels = ax.get_legend_handles_labels()
        if handles:
            uniq = dict(zip(labels, handles))
            ax.legend(
                uniq.values(), uniq.keys(), loc="upper center", ncol=3, fontsize=7, columnspacing=0.8, handlelength=1.2
            )  # above the bars
        else:
            ax.text(0.5, 0.5, "not run", ha="center", va="center", transform=ax.transAxes)
    _save(fig, "Figure 4: cross-domain TALLRec (error bars: 95 % user-bootstrap CI)", out)


def roc_points(labels: np.ndarray, scores: np.ndarray) -> list[dict[str, float]]:
    from sklearn.metrics import roc_curve

    fpr, tpr, _ = roc_curve(labels, scores)
    return [{"fpr": round(float(f), 5), "tpr": round(float(t), 5)} for f, t in zip(fpr, tpr)]


def plot_files(runs: list[Run], folder: Path) -> dict[Path, object]:
    """The data of the dvc plots definitions: one ROC file per LLM configuration and test domain (first
    seed), and AUC-vs-K rows per (variant, train domain, test domain)."""
    files: dict[Path, object] = {}
    auc_rows = []
    for r in runs:
        if r.row in (*VARIANTS, ICL):
            name = ICL if r.row == ICL else run_name(r.row, r.train_domain, r.k, r.seed)
            labels, scores = r.frame["label"].to_numpy(), r.frame["score"].to_numpy()
            if r.seed in (None, 0):
                files[folder / "roc" / f"{name}_on_{r.test_domain}.json"] = roc_points(labels, scores)
            if r.row != ICL:
                auc_rows.append(
                    {
                        "series": f"{r.row} {r.train_domain}->{r.test_domain}",
                        "k": r.k,
                        "seed": r.seed,
                        "auc": round(auc(labels, scores), 5),
                        "rows": r.frame.height,
                        "source": r.source,
                    }
                )
    files[folder / "auc_vs_k.json"] = sorted(auc_rows, key=lambda x: (x["series"], x["k"], x["seed"]))
    return files
