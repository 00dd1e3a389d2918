"""Report pages: the tables and the overview as HTML fragments that need no other file."""

import pytest

from bbmn.errors import BbmnError
from bbmn.eval import pages, plots
from bbmn.eval.tables import write_tables


def test_tables_html_from_the_table_step(runs, tmp_path):
    written = write_tables(runs["clintox"] + runs["esol"], tmp_path / "tables")
    out = pages.write_tables_html([written["classification.csv"], written["regression.csv"]],
                                  tmp_path / "figures" / "tables.html")
    text = open(out).read()
    assert text.count("<table>") == 2 and "ClinTox (ROC-AUC)" in text and "ESOL (RMSE)" in text
    assert "GROVER-base" in text and "balanced scaffold split" in text and "nan" not in text


def test_overview_inlines_tables_and_figures(runs, tmp_path):
    tables = write_tables(runs["clintox"] + runs["esol"], tmp_path / "tables")
    roc = plots.plot_roc(runs["clintox"], tmp_path / "roc_clintox")["png"]
    comparison = plots.plot_comparison(runs["clintox"] + runs["esol"], tmp_path / "comparison")["png"]
    out = pages.write_overview_html([tables["classification.csv"], tables["regression.csv"]],
                                    [comparison, roc], tmp_path / "overview.html")
    text = open(out).read()
    assert text.count("<table>") == 2 and text.count('src="data:image/png;base64,') == 2
    assert "ROC curves of the test predictions" in text and "(comparison.png)" in text
    with pytest.raises(BbmnError, match="not a PNG"):
        pages.write_overview_html([tables["classification.csv"]], [tables["classification.md"]], tmp_path / "x.html")


def test_a_table_without_datasets_or_a_missing_one(tmp_path):
    empty = tmp_path / "regression.csv"
    empty.write_text("")
    assert "No regression datasets in this run." in pages.tables_fragment([empty])
    with pytest.raises(BbmnError, match="does not exist"):
        pages.tables_fragment([tmp_path / "classification.csv"])
