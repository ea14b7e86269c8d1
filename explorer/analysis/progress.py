"""What ``explorer compare`` shows on stderr while it runs: click's progress bar per spec (on a
terminal) and one line per spec as soon as it is done, so a long or interrupted run has already
said what finished and what failed."""

import sys
import time

import click

from explorer.analysis.compare_table import spec_line
from explorer.analysis.comparison import report_figures, run_each


def run_showing_progress(specs, counts, only=None, weights=None, bar=True, lines=True,
                         device="cpu", dtype="float32"):
    """Yield each spec's report as :func:`explorer.analysis.comparison.run_each` does (on ``device``, in
    ``dtype``).

    ``counts`` is the number of analyses each spec runs (the length of its bar). ``bar``: show a
    progress bar per spec when stderr is a terminal; ``lines``: print a line per finished spec
    (its time and first figures, or its failure).
    """
    bar = bar and sys.stderr.isatty()
    width = len(str(len(specs)))
    labels = [f"[{i + 1:>{width}}/{len(specs)}] {s.name}" for i, s in enumerate(specs)]
    label_w = max(map(len, labels))
    shown = {}
    runs = run_each(specs, only, weights,
                    progress=lambda i, analysis: shown["bar"].update(1, current_item=analysis),
                    device=device, dtype=dtype)
    for i, spec in enumerate(specs):
        shown["bar"] = progress = click.progressbar(
            length=counts[i], label=labels[i].ljust(label_w), file=sys.stderr, hidden=not bar,
            show_pos=True, show_eta=False, item_show_func=lambda analysis: analysis)
        progress.render_progress()
        start = time.perf_counter()
        try:
            report = next(runs)
        finally:
            progress.render_finish()  # ends the bar's line, also on Ctrl-C
        if lines:
            figures, _ = report_figures(spec, report)
            click.echo(spec_line(labels[i], report, figures, time.perf_counter() - start),
                       err=True)
        yield report
