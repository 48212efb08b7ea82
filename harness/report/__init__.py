"""Tables and figures from finished runs, one job per module (entry point: :mod:`harness.tables`).

``runs`` (find and verify), ``roles`` (declared placement), ``grid`` (settings, columns,
cells), ``significance`` (CIs, paired tests), ``render`` (Markdown/LaTeX/CSV),
``figures`` and ``paper`` (published figures). Nothing here imports torch at import time.
"""
