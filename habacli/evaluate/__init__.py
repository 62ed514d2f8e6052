"""Evaluation: the train-from-scratch protocol (:mod:`.protocol`), evaluating an artifact or a random
real subset (:mod:`.run`) and rendering results (:mod:`.report`)."""
