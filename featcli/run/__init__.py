"""A run: its configuration, where its outputs go, one image through plan -> execute -> write
(`Runner`), the batch scheduler, and writing the pictures and raw tensors."""
