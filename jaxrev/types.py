"""Shape-annotated array types used across :mod:`jaxrev` (declared once, here).

Axis names: ``obs`` (hourly observations i), ``adsets`` (ad sets a), ``campaigns`` (campaigns c),
``draws`` (posterior draws, chains flattened).
"""

from jaxtyping import Array, Bool, Float, Int

ObsFloat = Float[Array, "obs"]
ObsInt = Int[Array, "obs"]
ObsBool = Bool[Array, "obs"]
AdsetFloat = Float[Array, "adsets"]
AdsetInt = Int[Array, "adsets"]
AdsetBool = Bool[Array, "adsets"]
CampaignFloat = Float[Array, "campaigns"]
CampaignBool = Bool[Array, "campaigns"]
Scalar = Float[Array, ""]

__all__ = [
    "AdsetBool",
    "AdsetFloat",
    "AdsetInt",
    "CampaignBool",
    "CampaignFloat",
    "ObsBool",
    "ObsFloat",
    "ObsInt",
    "Scalar",
]
