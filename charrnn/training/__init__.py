"""Training: the loop, the step, its state, set-up and resume, the width probe, distributed runs."""
