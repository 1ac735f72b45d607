"""Linear inverse problems (``ji.linear``): Tikhonov, truncated SVD, parameter choice, exact
linear-Gaussian posteriors."""

from . import paramchoice as paramchoice
from .gaussian import LinearGaussianPosterior as LinearGaussianPosterior
from .gaussian import linear_gaussian as linear_gaussian
from .operators import LinearOperator as LinearOperator
from .operators import as_operator as as_operator
from .operators import difference_matrix as difference_matrix
from .spectral import SpectralSystem as SpectralSystem
from .spectral import spectral_system as spectral_system
from .tikhonov import TikhonovResult as TikhonovResult
from .tikhonov import tikhonov as tikhonov
from .tsvd import TSVDResult as TSVDResult
from .tsvd import tsvd as tsvd
