"""Softmax saturation in scaled dot-product attention, measured on real tokens."""
