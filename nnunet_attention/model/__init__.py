"""The model: the attention gate, the gated decoder and networks built from nnU-Net's plans, the trainers nnU-Net
finds (discovery), safe checkpoint loading and paired trainings. Imports only the package's shared modules."""
