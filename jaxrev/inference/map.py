"""MAP, pure: L-BFGS on the unconstrained parameters, maximising the log joint density of the
constrained parameters (no Jacobian, as Stan's ``optimizing``). For multilevel models the mode
sits at full pooling; the seed's warning applies, and MAP reports no uncertainty.
"""

from __future__ import annotations

from functools import partial
from typing import NamedTuple

import jax
import jax.numpy as jnp
import optax
from numpyro.infer.util import constrain_fn, log_density, unconstrain_fn

from jaxrev.data import RevenueArrays
from jaxrev.inference.options import MAPOptions
from jaxrev.models import get_model


def map_objective(model: str, priors, arrays: RevenueArrays):
    """Negative log joint density of the constrained parameters, as a function of the
    unconstrained ones (no Jacobian: the mode of the posterior density itself)."""
    program = get_model(model).program

    def objective(unconstrained):
        params = constrain_fn(program, (arrays,), {"priors": priors}, unconstrained)
        return -log_density(program, (arrays,), {"priors": priors}, params)[0]

    return objective


class MAPSolution(NamedTuple):
    """L-BFGS result: unconstrained parameters, objective, gradient norm, steps, and whether a
    stopping rule (``gtol`` or ``ftol``) was met."""

    params: dict
    value: jax.Array
    gradient_norm: jax.Array
    num_steps: jax.Array
    converged: jax.Array


@partial(jax.jit, static_argnums=(0, 1, 2))
def map_solve(model: str, priors, options: MAPOptions, arrays: RevenueArrays) -> MAPSolution:
    """L-BFGS from the data-driven start (pure, jitted; never raises)."""
    spec = get_model(model)
    program = spec.program
    objective = map_objective(model, priors, arrays)
    kwargs = {"priors": priors}
    start = unconstrain_fn(program, (arrays,), kwargs, spec.initial_values(arrays, priors))
    solver = optax.lbfgs()
    value_and_grad = optax.value_and_grad_from_state(objective)
    dtype = arrays.conversions.dtype
    ftol = max(options.ftol, 4 * float(jnp.finfo(dtype).eps))

    def cond(carry):
        return (carry[3] < options.max_steps) & ~carry[6]

    def body(carry):
        params, opt_state, previous, step, _, _, _ = carry
        value, grad = value_and_grad(params, state=opt_state)
        updates, opt_state = solver.update(
            grad, opt_state, params, value=value, grad=grad, value_fn=objective
        )
        params = optax.apply_updates(params, updates)
        gnorm = optax.tree.norm(grad)
        flat = jnp.abs(previous - value) <= ftol * jnp.maximum(1.0, jnp.abs(value))
        done = (gnorm <= options.gtol) | (flat & (step > 0))
        return params, opt_state, value, step + 1, gnorm, value, done

    inf = jnp.asarray(jnp.inf, dtype)
    init = (start, solver.init(start), inf, jnp.asarray(0), inf, inf, jnp.asarray(False))
    params, _, _, steps, gnorm, value, done = jax.lax.while_loop(cond, body, init)
    return MAPSolution(params, value, gnorm, steps, done)
