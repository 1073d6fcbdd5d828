"""Test-wide settings."""

import torch

# One intra-op thread: the suite runs on small shared machines, where OpenMP threads waiting for
# a busy core make every op slower; results do not depend on the thread count.
torch.set_num_threads(1)
