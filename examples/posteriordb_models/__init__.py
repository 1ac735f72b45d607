"""Eight standard models of Stan's posterior database written with jinverse's built-ins (issue 14)."""

from . import data as data
from . import models as models
from .registry import MODELS as MODELS
from .registry import build as build
