"""PyTorch -> Keras 3 rules, one idiom per module."""
