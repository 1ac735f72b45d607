"""Data assimilation: cycled strong-constraint 4D-Var on any JAX model step (`cycled_4dvar`),
with the user's truth and observations or a twin experiment (`twin_experiment`)."""

from .fourdvar import CycledResult as CycledResult
from .fourdvar import WindowForward as WindowForward
from .fourdvar import background_prior as background_prior
from .fourdvar import cycled_4dvar as cycled_4dvar
from .fourdvar import observation_operator as observation_operator
from .fourdvar import twin_experiment as twin_experiment
