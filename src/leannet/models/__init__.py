"""Model zoo: every architecture is built by name through the registry."""
from leannet.models.registry import (Zoo, ZooInfo, create_model, get_model_entry, list_models,
                                     list_zoos, model_config, model_input_shape, register,
                                     register_zoo)
from leannet.models.weights import load_weights, read_weights_file

__all__ = ["Zoo", "ZooInfo", "create_model", "get_model_entry", "list_models", "list_zoos",
           "load_weights", "model_config", "model_input_shape", "read_weights_file", "register",
           "register_zoo"]
