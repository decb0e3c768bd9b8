r"""The result of a Laplace-EM fit (:class:`LaplaceEMResult`): the contract every fit honours.

``status`` (the fit in words), ``converged`` (the verdict), ``messages`` (why it is not
converged, one sentence per finding; empty exactly when converged), ``summary()`` (a pandas
table per location) and ``save(dir)`` (a folder of plain CSV and JSON files, described in
:meth:`LaplaceEMResult.save`), beside the uses of a fit (predictive densities, expected counts,
the parameters' covariance).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd

from jaxssm.em import EMOptions
from jaxssm.files import csv_bytes, json_bytes, write_folder
from jaxssm.forecast import log_rate_moments, predictive_log_likelihood
from jaxssm.laplace import LaplacePosterior
from jaxssm.mstep import emission_parameter_covariance
from jaxssm.params import MStepPrior, Panel, Params

#: The version of the folder that :meth:`LaplaceEMResult.save` writes (in ``summary.json``).
SAVE_FORMAT = 1


class FitCheck(NamedTuple):
    """The checks behind a fit's status (single fits).

    ``newton_status`` of the final E-step; ``worst_cell`` the lowest in-sample log predictive
    of an observed cell and ``worst_window``, ``worst_location`` where it is; ``cells_below``
    how many are below :data:`jaxssm.fit.WORST_CELL`; ``in_sample`` the mean in-sample log
    predictive per observed cell; ``static_objective`` and ``static_in_sample`` the same for
    the static model (q = 0, same emission and priors; NaN when not checked); ``problems`` the
    sentences that made the fit not converged."""

    newton_status: str
    worst_cell: float
    worst_window: int
    worst_location: int
    cells_below: int
    in_sample: float
    objective: float
    static_objective: float
    static_in_sample: float
    problems: tuple[str, ...]


class LaplaceEMResult(NamedTuple):
    """A Laplace-EM fit.

    ``params`` the MAP-EM estimate (``params.emission`` says Poisson or negative binomial);
    ``posterior`` the Laplace posterior of $f_{1:N}$ at ``params``; ``objective``
    (num_iterations,) the MAP-EM objective per iteration (the Laplace $\\log p(X \\mid \\theta_t)$
    plus the log prior; :func:`jaxssm.mstep.log_prior`); ``converged``; ``num_iterations``
    (loop iterations: SQUAREM cycles, or EM maps without acceleration); ``status`` in words
    (``converged``, ``converged (objective peaked)``, ``max_iterations``, ``non_finite: ...``,
    or ``not converged: <what failed a check>``; see :func:`jaxssm.em.stop_rule` and
    :func:`jaxssm.fit.check_fit`), followed by ``; warning: ...`` when a latent component sits
    in a single window (:mod:`jaxssm.diagnostics`); ``panel`` as fitted; ``prior`` with its
    learned scales; ``options`` the :class:`~jaxssm.em.EMOptions` of the fit; ``evaluations``
    the number of EM maps; ``check`` the :class:`FitCheck` behind the status (single fits);
    ``newton_limit_hits`` how many E-steps during the fit stopped at the Newton step limit (the
    status notes it); ``messages`` why the fit is not converged, one sentence per finding (the
    EM's stop when it did not converge, then each failed check): empty exactly when
    ``converged``. Warnings that do not make a fit unconverged (a component in one window, the
    Newton step limit) are in ``status`` only. For a batch every field has a leading panel axis,
    ``status`` is a list and ``messages`` a list of lists.

    ``summary()`` and ``save(dir)`` give the fit as a table and as a folder of files.
    """

    params: Params
    posterior: LaplacePosterior
    objective: np.ndarray
    converged: bool | np.ndarray
    num_iterations: int | np.ndarray
    status: str | list[str]
    panel: Panel
    prior: MStepPrior
    options: EMOptions
    evaluations: int | np.ndarray = 0
    check: FitCheck | None = None
    newton_limit_hits: int | np.ndarray = 0
    messages: Sequence[str] | Sequence[Sequence[str]] = ()

    @property
    def num_factors(self) -> int:
        return self.params.Lambda.shape[-1]

    @property
    def emission(self) -> str:
        """``"poisson"`` or ``"negbin"``."""
        return self.params.emission

    def _single(self, what: str) -> None:
        if self.params.mu.ndim != 1:
            raise ValueError(f"{what} takes a single fit; index the batch first")

    def parameter_covariance(self) -> jax.Array:
        r"""Per-location covariance of $(\mu_\ell, \Lambda_\ell)$, (m, q+1, q+1) (see
        :func:`jaxssm.mstep.emission_parameter_covariance`); pass it as ``parameter_cov`` to the
        predictive functions. Single fits only."""
        self._single("parameter_covariance()")
        return emission_parameter_covariance(self.params, self.posterior, self.panel, self.prior)

    def log_predictive(
        self, counts, cells=None, *, parameter_uncertainty: bool = True, num_nodes: int = 48
    ) -> np.ndarray:
        r"""The log predictive density of the counts in ``cells`` (N, m) under this fit, with its
        own offset and emission: $\log\int p(x \mid \eta)\,N(\eta; E\eta, \mathrm{Var}\,\eta)\,
        d\eta$, integrating $f$ and (with ``parameter_uncertainty``) each location's
        $(\mu_\ell, \Lambda_\ell)$. NaN outside ``cells`` (default: every finite count)."""
        self._single("log_predictive()")
        x = np.asarray(counts, np.float64)
        cells = np.isfinite(x) if cells is None else np.asarray(cells, bool) & np.isfinite(x)
        cov = self.parameter_covariance() if parameter_uncertainty else None
        value = predictive_log_likelihood(
            self.params, self.posterior, np.nan_to_num(x), cells, self.panel,
            num_nodes=num_nodes, parameter_cov=cov,
        )  # fmt: skip
        return np.asarray(value)

    def expected_counts(self, *, parameter_uncertainty: bool = False) -> np.ndarray:
        r"""$E[X_i(\ell)] = E[\lambda_{i\ell}]$ for every cell (N, m), observed or missing, under
        the Laplace posterior (both emissions have mean $\lambda$)."""
        self._single("expected_counts()")
        cov = self.parameter_covariance() if parameter_uncertainty else None
        mean, var = log_rate_moments(self.params, self.posterior, self.panel, cov)
        return np.asarray(jnp.exp(mean + 0.5 * var))

    # ---- the contract: figures, summary, save ----------------------------------------------

    def figures(self) -> dict:
        """The fit-level figures: ``num_factors`` (q), ``emission``, ``status``, ``converged``,
        ``iterations``, ``evaluations`` (EM maps) and ``objective`` (the last MAP-EM
        objective; None when there is none). Single fits only."""
        self._single("figures()")
        return {
            "num_factors": self.num_factors,
            "emission": self.emission,
            "status": self.status,
            "converged": bool(self.converged),
            "iterations": int(self.num_iterations),
            "evaluations": int(self.evaluations),
            "objective": float(self.objective[-1]) if len(self.objective) else None,
        }

    def summary(self, locations: Sequence | None = None) -> pd.DataFrame:
        r"""The fit as a table: one row per location $\ell$, in the panel's column order.

        Columns: ``location`` (``locations``, default 0..m-1), ``mu`` ($\mu_\ell$), ``loading_1``
        ... ``loading_q`` ($\Lambda_\ell$), ``dispersion`` ($\phi_\ell = e^{\psi_\ell}$ of the
        negative binomial; NaN for the Poisson), ``observed_cells`` (windows where the location
        is observed) and ``observed_mean`` (its mean observed count; NaN when never observed).
        The fit-level figures (:meth:`figures`, and ``messages``) are in ``attrs["fit"]``.
        Single fits only.

        Example:
            >>> fit.summary(locations=counts.columns)  # doctest: +SKIP
        """
        self._single("summary()")
        m, q = self.params.Lambda.shape
        table = pd.DataFrame({"location": _names(locations, m, "locations")})
        table["mu"] = _float64(self.params.mu)
        Lambda = _float64(self.params.Lambda)
        for k in range(q):
            table[f"loading_{k + 1}"] = Lambda[:, k]
        table["dispersion"] = self._dispersion()
        mask = np.asarray(self.panel.mask)
        cells = mask.sum(axis=0)
        total = np.where(mask, np.asarray(self.panel.counts, np.float64), 0.0).sum(axis=0)
        table["observed_cells"] = cells
        table["observed_mean"] = np.where(cells > 0, total / np.maximum(cells, 1), np.nan)
        table.attrs["fit"] = {**self.figures(), "messages": list(self.messages)}
        return table

    def parameter_tables(
        self, locations: Sequence | None = None, windows: Sequence | None = None
    ) -> dict[str, pd.DataFrame]:
        r"""The parameters and the factors' posterior mean as tables, by file name in the folder
        that :meth:`save` writes (its docstring describes them). Values are float64 (exactly
        the fit's values, converted); ``locations`` (default 0..m-1) and ``windows`` (default
        0..N-1) label the rows. Single fits only."""
        self._single("parameter_tables()")
        m, q = self.params.Lambda.shape
        N = self.posterior.mean.shape[0]
        locations = _names(locations, m, "locations")
        names = [f"factor_{k + 1}" for k in range(q)]

        def square(matrix) -> pd.DataFrame:
            frame = pd.DataFrame(_float64(matrix).reshape(q, q), columns=names)
            frame.insert(0, "factor", names)
            return frame

        mu = pd.DataFrame({"location": locations, "mu": _float64(self.params.mu)})
        mu["dispersion"] = self._dispersion()
        loadings = pd.DataFrame(_float64(self.params.Lambda).reshape(m, q), columns=names)
        loadings.insert(0, "location", locations)
        initial = square(self.params.P1)
        initial.insert(1, "mean", _float64(self.params.a1))
        factors = pd.DataFrame(_float64(self.posterior.mean).reshape(N, q), columns=names)
        factors.insert(0, "window", _names(windows, N, "windows"))
        return {
            "params/mu.csv": mu,
            "params/loadings.csv": loadings,
            "params/transition.csv": square(self.params.Phi),
            "params/innovation.csv": square(self.params.Q),
            "params/initial_state.csv": initial,
            "factors.csv": factors,
        }

    def save(
        self,
        directory: str | os.PathLike,
        *,
        locations: Sequence | None = None,
        windows: Sequence | None = None,
    ) -> dict[str, Path]:
        r"""Write the fit to the folder ``directory``, atomically (a new folder appears whole;
        in an existing one each file is replaced whole, ``summary.json`` last, and other files
        are left alone; :func:`jaxssm.files.write_folder`). Single fits only.

        The folder (CSV: a header row, ``,`` separators, floats written exactly: read back with
        ``pandas.read_csv`` they are the fit's float64 values; q factors are named
        ``factor_1`` ... ``factor_q``):

        * ``summary.json``: ``format`` (:data:`SAVE_FORMAT`), the :meth:`figures`
          (``num_factors``, ``emission``, ``status``, ``converged``, ``iterations``,
          ``evaluations``, ``objective``), ``messages``, ``num_windows``, ``num_locations`` and
          ``files`` (the CSVs below).
        * ``params/mu.csv``: ``location``, ``mu`` ($\mu_\ell$), ``dispersion``
          ($\phi_\ell = e^{\psi_\ell}$; empty for the Poisson emission), one row per location.
        * ``params/loadings.csv``: ``location``, then $\Lambda_\ell$ in ``factor_1`` ...
        * ``params/transition.csv``: ``factor``, then the row of $\Phi$ in ``factor_1`` ...
        * ``params/innovation.csv``: the same for $Q$.
        * ``params/initial_state.csv``: ``factor``, ``mean`` ($a_1$), then the row of $P_1$.
        * ``factors.csv``: ``window``, then the posterior mean $\hat f_i$, one row per window.

        ``mu.csv``, ``loadings.csv`` and ``transition.csv`` have the layout of the files of the
        same names that ``jaxssm fit`` writes (which round floats to 10 digits).

        Args:
            directory: the folder (created with its parents when missing).
            locations: names of the m locations (default 0..m-1).
            windows: labels of the N windows (default 0..N-1).

        Returns:
            The path of each file written, by its name above.

        Raises:
            jaxssm.errors.OutputError: naming the folder.

        Example:
            >>> fit.save("out/fit", locations=counts.columns)  # doctest: +SKIP
            >>> pd.read_csv("out/fit/params/mu.csv")           # doctest: +SKIP
        """
        tables = self.parameter_tables(locations, windows)
        files = {name: csv_bytes(frame) for name, frame in tables.items()}
        summary = {
            "format": SAVE_FORMAT,
            **self.figures(),
            "messages": list(self.messages),
            "num_windows": int(self.posterior.mean.shape[0]),
            "num_locations": int(self.params.mu.shape[0]),
            "files": list(tables),
        }
        files["summary.json"] = json_bytes(summary)
        return write_folder(directory, files)

    def _dispersion(self) -> np.ndarray:
        psi = self.params.log_dispersion
        m = self.params.mu.shape[-1]
        return np.full(m, np.nan) if psi is None else np.exp(_float64(psi))


def _float64(array) -> np.ndarray:
    return np.asarray(array, np.float64)


def _names(names: Sequence | None, size: int, what: str) -> list:
    if names is None:
        return list(range(size))
    names = list(names)
    if len(names) != size:
        raise ValueError(f"{what}: {len(names)} names for {size} {what}")
    return names
