"""jaxssm: a Poisson dynamic factor state-space model fitted by Laplace-EM in pure JAX.

$X_i(\\ell) \\mid f_i \\sim \\mathrm{Poisson}(\\lambda_{i\\ell})$,
$\\log \\lambda_i = \\mu + \\Lambda f_i$,
$f_i = \\Phi f_{i-1} + \\varepsilon$, $\\varepsilon \\sim N(0, Q)$, $f_1 \\sim N(a_1, P_1)$.
The model and its stargazers application arrive with their own issues; this package is their home.
"""

__all__: list[str] = []
