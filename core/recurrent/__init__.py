"""Vanilla RNN vs LSTM vs GRU: gradients through time, measured."""
