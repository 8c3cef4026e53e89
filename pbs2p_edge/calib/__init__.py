"""Text and calibration: corpora, token windows, and the one Hessian accumulator."""
