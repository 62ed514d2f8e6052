"""DSA: gradient matching with differentiable siamese augmentation (Zhao & Bilen, ICML 2021).

DC (:mod:`habacli.objectives.dc`) plus two things (research/baselines.md sections 2.3 and 5.2):
the real and the synthetic batch of a class are augmented with the same op and the same
parameters while matching (``engine.dsa.siamese``), and the inner-loop network training augments
every sample independently (``engine.dsa(x, generator)``). All hyper-parameters are DC's; the
paper initialises the synthetic set from real images (the preset's ``init = "real"``).
"""

from __future__ import annotations

from typing import ClassVar

from habacli.objectives import OBJECTIVES
from habacli.objectives.dc import GradientMatching


@OBJECTIVES.register("dsa")
class DSAObjective(GradientMatching):
    """Gradient matching with siamese DSA augmentation."""

    name: ClassVar[str] = "dsa"
    paper: ClassVar[str] = "zhao2021dsa"
    siamese: ClassVar[bool] = True
