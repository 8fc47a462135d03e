"""The experiment layer: everything that reads a whole config or a run directory.

Config loading (:mod:`~scoregan.experiment.config`), run directories and rebuilding a rule from a
checkpoint (:mod:`~scoregan.experiment.runs`), the one training loop and its callbacks
(:mod:`~scoregan.experiment.loop`, :mod:`~scoregan.experiment.callbacks`,
:mod:`~scoregan.experiment.monitor`, :mod:`~scoregan.experiment.early_stopping`), evaluation,
tracking, guided sampling from a run and the toy benchmark. Nothing below this layer imports it;
``scoregan.api`` and ``scoregan.cli`` sit on top.
"""
