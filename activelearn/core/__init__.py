"""Pure ML over tensors: the deep ensemble, acquisition functions and metrics."""
