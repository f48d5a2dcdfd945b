"""The study pipeline: the generated task (synth), the step model (plan, train, find_best, predict; done-ness from
nnU-Net's files), the grid and the demo that run those steps. Imports the model, the comparison and shared modules."""
