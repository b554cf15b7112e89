"""bmx.nn: Gluon binary layers with BMXNet-v2 semantics (Bethge et al., BMXNet 2, 2019)."""
from .._mxnet import mx as _mx  # noqa: F401 - names `pip install bmx[train]` if MXNet is missing
from .config import BinaryLayerConfig, binary_layer_config, set_binary_layer_config
from .layers import (BinaryConvolution, QActivation, QConv2D, QDense, activated_conv,
                     set_binary_wd_mult)
from .quantizers import (get_activation_quantizer, get_weight_quantizer,
                         register_activation_quantizer, register_weight_quantizer)

__all__ = ["BinaryLayerConfig", "binary_layer_config", "set_binary_layer_config",
           "QActivation", "QConv2D", "QDense", "BinaryConvolution", "activated_conv",
           "set_binary_wd_mult", "get_activation_quantizer", "get_weight_quantizer",
           "register_activation_quantizer", "register_weight_quantizer"]
