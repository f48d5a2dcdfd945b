"""Tools around a gated model: bench (cost ratios), maps (attention maps), retrofit (gated start from an ungated
checkpoint), nnU-Net's reference plans. Imports the model and shared modules."""
