"""What every task shares: calibration methods and their folded forms, G-RW, the two-stage model, the
training loops, checkpoints and plots."""
