"""Building blocks; each takes `spatial_dims` in {2, 3} and is written once for both."""

from medattn.layers.attention import MultiHeadAttention
from medattn.layers.channel import EfficientChannelAttention, SqueezeExcitation, eca_kernel_size
from medattn.layers.factories import (
    ChannelLayerNorm,
    ConvNormAct,
    activation,
    adaptive_avg_pool_type,
    adaptive_max_pool_type,
    avg_pool_type,
    conv_type,
    max_pool_type,
    norm_layer,
    pool_type,
)
from medattn.layers.head import ClassifierHead
from medattn.layers.spatial import CBAM, AttentionGate, ChannelGate, SpatialAttention
from medattn.layers.transformer import (
    FeedForward,
    GridPositionEmbedding,
    TransformerBlock,
    TransformerEncoder,
)

__all__ = [
    "CBAM",
    "AttentionGate",
    "ChannelGate",
    "ChannelLayerNorm",
    "ClassifierHead",
    "ConvNormAct",
    "EfficientChannelAttention",
    "FeedForward",
    "GridPositionEmbedding",
    "MultiHeadAttention",
    "SpatialAttention",
    "SqueezeExcitation",
    "TransformerBlock",
    "TransformerEncoder",
    "activation",
    "adaptive_avg_pool_type",
    "adaptive_max_pool_type",
    "avg_pool_type",
    "conv_type",
    "eca_kernel_size",
    "max_pool_type",
    "norm_layer",
    "pool_type",
]
