"""The network at initialisation: mean-field theory, the probe, their charts."""
