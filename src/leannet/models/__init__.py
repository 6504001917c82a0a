"""Model zoo: every architecture is built by name through the registry."""
from leannet.models.registry import (create_model, list_models, model_config, model_input_shape,
                                     register)

__all__ = ["create_model", "list_models", "model_config", "model_input_shape", "register"]
