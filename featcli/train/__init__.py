"""Training a stack: the data sets (built-in and folders), the training loop, evaluation, and the files a
training run writes (the model file and its pictures)."""
