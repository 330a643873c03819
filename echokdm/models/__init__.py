"""Networks that are saved subclass diffusers' ``ModelMixin, ConfigMixin``: checkpoints are
``save_pretrained`` folders loaded with ``from_pretrained``."""
