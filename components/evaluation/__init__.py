"""What a trained model is worth: test metrics and the tuned threshold (evaluate, metrics), when to
trust a verdict (trust, calibration, robustness, gallery), pictures (plots), and the variants'
comparison (compare, quality).

May import registry (to load models safely), training, data and the core; never serving."""
