"""The layers' named choices, without torch: the commands list them in their help and the
workflow's schema checks them before any model is built."""

#: activations of the blocks and readouts
ACTIVATIONS = ("prelu", "relu", "gelu", "elu", "tanh")
#: what the positional code indexes: the item within its molecule, or the batch-wide index
POSITION_MODES = ("molecule", "batch")
