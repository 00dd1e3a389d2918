"""Published reference numbers (spec section 11): balanced scaffold split, mean (std) over 3 seeds;
and the training budget the tables' captions state (section 10). Import-light: the workflow's
rules read it when the DAG is built."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

#: dataset -> (mean, std) for each reference model; ROC-AUC for classification, RMSE / MAE else.
REFERENCE_ROWS: dict[str, dict[str, tuple[float, float]]] = {
    "GROVER-base (48M params, 10M mols)": {
        "bbbp": (0.936, 0.008), "sider": (0.656, 0.006), "clintox": (0.925, 0.013),
        "bace": (0.878, 0.016), "tox21": (0.819, 0.020), "toxcast": (0.723, 0.010),
        "freesolv": (1.592, 0.072), "esol": (0.888, 0.116), "lipo": (0.563, 0.030),
        "qm7": (72.5, 5.9), "qm8": (0.0172, 0.002),
    },
    "GROVER-large (100M params)": {
        "bbbp": (0.940, 0.019), "sider": (0.658, 0.023), "clintox": (0.944, 0.021),
        "bace": (0.894, 0.028), "tox21": (0.831, 0.025), "toxcast": (0.737, 0.010),
        "freesolv": (1.544, 0.397), "esol": (0.831, 0.120), "lipo": (0.560, 0.035),
        "qm7": (72.6, 3.8), "qm8": (0.0125, 0.002),
    },
}

#: The BatmanNet paper reports only its classification mean in the spec: about 0.839 over the six
#: classification sets (GROVER-large's 0.834 + 0.005).
BATMANNET_PAPER_CLASSIFICATION_MEAN = 0.839

CLASSIFICATION_ORDER = ("bbbp", "sider", "clintox", "bace", "tox21", "toxcast")
REGRESSION_ORDER = ("freesolv", "esol", "lipo", "qm7", "qm8")
DISPLAY_NAMES = {"bbbp": "BBBP", "sider": "SIDER", "clintox": "ClinTox", "bace": "BACE",
                 "tox21": "Tox21", "toxcast": "ToxCast", "freesolv": "FreeSolv", "esol": "ESOL",
                 "lipo": "Lipo", "qm7": "QM7", "qm8": "QM8"}


def in_table_order(datasets: Iterable[str], run_order: Sequence[str] = ()) -> list[str]:
    """``datasets`` (each once) in the order the tables and figures show them: the paper's
    datasets in the paper's order, then the others in ``run_order`` (the run's ``run.datasets``,
    so a user's own sets keep the order the config gives them), then any left, by name.

    The one place that orders datasets, so a table's columns and a figure's panels agree, and a
    dataset the paper does not know is shown rather than dropped.
    """
    names = set(datasets)
    paper = [d for d in (*CLASSIFICATION_ORDER, *REGRESSION_ORDER) if d in names]
    run = [d for d in dict.fromkeys(run_order) if d in names and d not in paper]
    return paper + run + sorted(names - set(paper) - set(run))


def budget_text(epochs: int, patience: int) -> str:
    """The caption's training budget: ``epochs`` at most, and early stopping after ``patience``
    epochs without improvement, which cannot fire when ``patience`` is not below ``epochs``."""
    if patience >= epochs:
        return f"{epochs} epochs, no early stopping"
    return f"up to {epochs} epochs, early stop after {patience} epochs without improvement"


#: The spec's budget (section 10), the tables' caption's when the caller gives none.
SPEC_BUDGET = budget_text(100, 30)
