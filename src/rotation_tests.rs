//! The rotation plan over simulated days, with restarts at every step.
