"""Training tasks: how the baseline, the teacher and the student turn a batch into losses and predictions."""
