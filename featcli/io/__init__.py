"""Files in and out: images (probe, decode, tensor), input discovery, checkpoints (safe readers), model
files, PNG encoding, atomic outputs, and the `featcli info` description."""
