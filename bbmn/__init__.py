"""bbmn: BatmanNet, the bi-branch masked graph transformer autoencoder, as a reproducible pipeline."""

__version__ = "0.1.0"
