"""Shards to a trained Keras model: the ResNet50 variants (model, augment), compilation and
placement on the devices (compiled, accelerator), processes across hosts (multihost), the resumable fit (train, callbacks), staged
fine-tuning (staged) and the learning curves (curves).

May import data and the core; never evaluation, registry or serving."""
