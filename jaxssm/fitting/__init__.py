r"""``jaxssm fit COUNTS --out DIR``: fit the dynamic factor model to a wide table of counts.

The input is a wide table (CSV, TSV or Parquet): the first column holds the window labels, one
column per location, one row per window in time order; an empty cell (or ``NA``, ``NaN``) is a
missing count. Rows in error messages are counted as a spreadsheet shows them (the header is
row 1; for Parquet the first data row is row 1).

What the command does, step by step (each output written atomically, a temporary file then
``os.replace``, as soon as it is computed, so a failure late in the run keeps what came before):

1. Reads and checks every input (``COUNTS``, ``--heldout``, ``--offset``) before it touches
   ``DIR``: a bad input is one line ``error: FILE, row R (window W), column 'C': ...`` and exit 2.
2. Removes the outputs of an earlier ``jaxssm fit`` in ``DIR`` (only the file names listed in
   :data:`jaxssm.fitting.run.OUTPUTS`), so the folder never mixes two runs.
3. With ``--factors auto`` or ``--emission auto``, chooses q and the emission by K-fold
   cross-validation on the training cells (:func:`jaxssm.select_num_factors`) →
   ``selection.csv``.
4. Fits the chosen model (:func:`jaxssm.fit_laplace_em`) → ``summary.json`` (rewritten at the
   end with ``"finished": true``), ``params/``, ``expected_counts.csv``; with ``--heldout`` the
   held-out scores; then ``imputation.csv``, ``forecast.csv`` and ``figures/``.

**Held-out cells** (``--heldout``): a count in HELDOUT marks a cell to score. Such a cell is
always left out of the fit (and of the cross-validation), whether COUNTS leaves it empty (the
usual layout) or holds the same count there (so the full panel and a held-out file can be
passed as they are); a different count in COUNTS at a held-out cell is an error (two files that
do not belong together). Held-out cells count as missing in ``imputation.csv`` and the figures.

**Precision**: the command computes in float64 (``jax.enable_x64`` for the run only), so its
tables agree with the Python API called in float64 to rounding; CSVs hold 10 significant digits.

**Exit codes**: 0 done; 2 bad input or usage (nothing written), or an output that could not be
written (one line naming the path; the files written before it are whole); 3 written, but the
fit is not converged (``--allow-unconverged`` accepts it) or a figure failed; 130 interrupted
(the files written so far are kept).

Modules: :mod:`~jaxssm.fitting.inputs` (reading and checking the tables and options),
:mod:`~jaxssm.fitting.run` (the fit and its outputs; the parameter tables are
:meth:`~jaxssm.result.LaplaceEMResult.parameter_tables`, the tables that ``save`` writes),
:mod:`~jaxssm.fitting.cli` (the command: exit codes and messages).
"""
