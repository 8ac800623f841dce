"""MAE-DET reproduction: zero-shot search of detection backbones by multi-scale entropy."""
__version__ = "0.1.0"
