"""``jaxssm fit COUNTS --out DIR`` on parsed arguments (:func:`run_fit`): check the inputs,
clear the folder, run, report and choose the exit code (:mod:`jaxssm.fitting`).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from jaxssm.errors import InputError, OutputError
from jaxssm.files import overwritten_input, writable_folder
from jaxssm.fitting.inputs import candidate_factors, check_options, read_inputs
from jaxssm.fitting.run import OUTPUTS, FitRun, fit_wide_table

EXIT_OK, EXIT_BAD_INPUT, EXIT_UNCONVERGED, EXIT_INTERRUPTED = 0, 2, 3, 130


def _remove_earlier_outputs(out: Path) -> None:
    for name in OUTPUTS:
        path = out / name
        if path.is_file():
            path.unlink()


def _describe(run: FitRun, out: Path, folds: int) -> str:
    fit, summary = run.fit, run.summary
    how = "as asked"
    if run.selection is not None:
        table = run.selection.table
        qs = ", ".join(map(str, table["num_factors"].unique()))
        emissions = ", ".join(table["emission"].unique())
        how = f"chosen by {folds}-fold CV over q in {{{qs}}} × {emissions}"
    lines = [
        f"model: q = {summary['num_factors']}, {summary['emission']} emission ({how})",
        f"status: {fit.status} ({summary['iterations']} iterations)",
    ]
    if run.heldout_score is not None:
        s = run.heldout_score
        lines.append(
            f"held-out: {s['log_predictive_per_cell']:.4f} log predictive per cell over "
            f"{s['num_cells']} cells ({s['cells_below_minus_50']} below -50)"
        )
    lines.append(f"files in {out}: {', '.join(run.files)}")
    return "\n".join(lines)


def run_fit(args) -> int:
    """The ``jaxssm fit`` command on parsed arguments; returns the exit code (see
    :mod:`jaxssm.fitting`)."""
    quiet = getattr(args, "quiet", False)

    def say(line: str) -> None:
        if not quiet:
            print(f"jaxssm fit: {line}", file=sys.stderr, flush=True)

    out = Path(args.out)
    try:
        check_options(args)
        inputs = read_inputs(args.counts, args.heldout, args.offset)
        candidate_factors(args.factors, args.candidates, inputs.counts.values.shape, args.counts)
        clash = overwritten_input(
            [out / name for name in OUTPUTS], (args.counts, args.heldout, args.offset)
        )
        if clash is not None:
            raise InputError(f"--out {out}: would overwrite the input {clash[0]}")
        try:
            writable_folder(out)
        except OutputError as err:
            raise InputError(str(err)) from None
    except InputError as err:
        print(f"error: {err}", file=sys.stderr)
        return EXIT_BAD_INPUT
    N, m = inputs.counts.values.shape
    say(
        f"read {args.counts}: {N} windows × {m} locations, "
        f"{int(np.isnan(inputs.counts.values).sum())} missing cells"
        + ("" if inputs.heldout is None else f", {int(np.isfinite(inputs.heldout).sum())} held out")
    )
    options = {k: v for k, v in vars(args).items() if k not in ("command", "func")}
    try:
        _remove_earlier_outputs(out)
        run = fit_wide_table(
            inputs, out, factors=args.factors, candidates=args.candidates,
            emission=args.emission, folds=args.folds, horizon=args.horizon, draws=args.draws,
            seed=args.seed, max_iterations=args.max_iterations, options=options, say=say,
        )  # fmt: skip
    except KeyboardInterrupt:
        print(
            f"interrupted: the files written so far are in {out} (summary.json says whether the "
            "run finished); run the same command again to redo it",
            file=sys.stderr,
        )
        return EXIT_INTERRUPTED
    except OSError as err:  # OutputError: one line naming the path (disk full, read-only)
        print(f"error: {err}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except ValueError as err:  # InputError, DataError and the library's argument checks
        print(f"error: {err}", file=sys.stderr)
        return EXIT_BAD_INPUT
    print(_describe(run, out, args.folds))
    if run.figure_errors:
        print("error: " + "; ".join(run.figure_errors), file=sys.stderr)
        return EXIT_UNCONVERGED
    converged = run.fit.converged and run.summary.get("converged", True)
    if not converged and not getattr(args, "allow_unconverged", False):
        print(
            "warning: the fit is not converged (see status); its outputs are written. Pass "
            "--allow-unconverged to accept it (exit 0), or try --emission negbin, fewer factors "
            "or more --max-iterations.",
            file=sys.stderr,
        )
        return EXIT_UNCONVERGED
    return EXIT_OK
