"""Evaluation of generated images: the shipped Fashion-MNIST classifier and the scores built on it."""
