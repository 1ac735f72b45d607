"""Data assimilation on any JAX model step: cycled strong- and weak-constraint 4D-Var with a
static or hybrid ensemble-variational B and sliding windows (`cycled_4dvar`, `Hybrid`),
cycled ensemble filters and smoothers (`cycled_filter` with `ETKF`, `EnKF`, `LETKF`,
`ParticleFilter`, `EnKS`, `IEnKS`; `AdaptiveInflation`; time-varying observations with
`TimeVarying`), derivative-free inversion (`eki`, `uki`, `eks`), with
the user's truth and observations or a twin experiment (`twin_experiment`)."""

from .cycling import FilterResult as FilterResult
from .cycling import FilterWarning as FilterWarning
from .cycling import cycled_filter as cycled_filter
from .eki import KalmanInversionResult as KalmanInversionResult
from .eki import eki as eki
from .eki import uki as uki
from .eks import eks as eks
from .enkf import ETKF as ETKF
from .enkf import LETKF as LETKF
from .enkf import AbstractFilter as AbstractFilter
from .enkf import EnKF as EnKF
from .enkf import ObsModel as ObsModel
from .enkf import ParticleFilter as ParticleFilter
from .enkf import TimeVarying as TimeVarying
from .enkf import gaspari_cohn as gaspari_cohn
from .enks import EnKS as EnKS
from .fourdvar import CycledResult as CycledResult
from .fourdvar import WindowForward as WindowForward
from .fourdvar import background_prior as background_prior
from .fourdvar import cycled_4dvar as cycled_4dvar
from .fourdvar import observation_operator as observation_operator
from .fourdvar import twin_experiment as twin_experiment
from .ienks import IEnKS as IEnKS
from .inflation import AdaptiveInflation as AdaptiveInflation
from .variational import ControlWindow as ControlWindow
from .variational import Hybrid as Hybrid
