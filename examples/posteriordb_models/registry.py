"""The eight models by posteriordb name, with their data, and `build`."""

from __future__ import annotations

from . import data, models

# posteriordb posterior name -> (model, data)
MODELS = {
    "eight_schools-eight_schools_noncentered": (models.eight_schools, lambda: data.EIGHT_SCHOOLS),
    "hudson_lynx_hare-lotka_volterra": (models.lotka_volterra, lambda: data.LYNX_HARE),
    "kidiq-kidscore_momhsiq": (models.kidiq, data.kidiq),
    "gp_pois_regr-gp_regr": (models.gp_regression, lambda: data.GP_REGR),
    "gp_pois_regr-gp_pois_regr": (models.gp_poisson_regression, lambda: data.GP_POIS_REGR),
    "arK-arK": (models.ar_k, data.ar_k),
    "garch-garch11": (models.garch, data.garch),
    "mesquite-logmesquite": (models.log_mesquite, data.mesquite),
}


def build(name: str):
    """``(problem, y)`` for the posteriordb posterior ``name`` (a key of `MODELS`)."""
    if name not in MODELS:
        raise ValueError(f"name: got {name!r}, expected one of {sorted(MODELS)}")
    model, make_data = MODELS[name]
    return model(make_data())
