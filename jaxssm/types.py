"""Shape-annotated array types used across jaxssm (jaxtyping).

Axis names: ``N`` windows (time steps $i$), ``m`` locations $\\ell$, ``q`` latent factors,
``B`` independent panels of a batch, ``S`` posterior draws, ``h`` forecast horizon.
"""

from __future__ import annotations

from jaxtyping import Array, Bool, Float

Scalar = Float[Array, ""]
Counts = Float[Array, "N m"]
CellMask = Bool[Array, "N m"]
Offset = Float[Array, "N m"]
Latent = Float[Array, "N q"]
Blocks = Float[Array, "N q q"]
LatentDraws = Float[Array, "S N q"]
Locations = Float[Array, " m"]
Loadings = Float[Array, "m q"]
Square = Float[Array, "q q"]
Vector = Float[Array, " q"]
