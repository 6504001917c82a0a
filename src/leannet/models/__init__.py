"""Model zoo: every architecture is built by name through the registry."""
from leannet.models.registry import create_model, list_models, register, model_input_shape

__all__ = ["create_model", "list_models", "register", "model_input_shape"]
