"""Prediction: the forward pass with TTA shared by training and the offline kernel (forward), and
the offline kernel's prediction from a bundle (kernel), which imports no training code."""
