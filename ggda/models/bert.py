"""BERT for sequence-pair classification (transformers' BertForSequenceClassification)."""

from __future__ import annotations

import torch
from torch import nn

from .base import Classifier

#: The tiny randomly initialised configuration used offline (no download): small enough for a CPU.
TINY_CONFIG = dict(hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
                   hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)


def _transformers():
    try:
        import transformers
    except ImportError as err:
        raise ImportError("the bert model needs transformers: pip install -e '.[text]'") from err
    return transformers


class BertClassifier(Classifier):
    """Wraps BertForSequenceClassification. ``features`` is the (dropout-free at eval) pooled [CLS]
    output (B, hidden); ``head`` is the classifier layer.

    Attention is the "eager" implementation: the SDPA path inspects the mask's values, which
    torch.func's vmap (per-sample and group gradients) cannot trace.

    pretrained: None builds the tiny random configuration (``TINY_CONFIG``, vocabulary of the data
        set's tokenizer); otherwise a hub name such as "bert-base-uncased" or a local folder, loaded
        with ``from_pretrained`` (the data must then be tokenised with the matching tokenizer).
    """

    def __init__(self, num_classes: int, vocab_size: int, max_length: int, pretrained: str | None = None):
        super().__init__()
        tf = _transformers()
        if pretrained is None:
            config = tf.BertConfig(vocab_size=vocab_size, max_position_embeddings=max(max_length, 8),
                                   num_labels=num_classes, attn_implementation="eager", **TINY_CONFIG)
            self.bert = tf.BertForSequenceClassification(config)
        else:
            self.bert = tf.BertForSequenceClassification.from_pretrained(
                pretrained, num_labels=num_classes, attn_implementation="eager")

    @property
    def head(self) -> nn.Linear:
        # A property, not a second registration of the module: torch.func.functional_call swaps
        # parameters by name and would leave one of two aliases pointing at a transformed tensor.
        return self.bert.classifier

    def features(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        # BertModel.forward builds its attention mask with value-dependent shortcuts that torch.func's
        # vmap cannot trace; the additive mask built here is the same for eager attention.
        core = self.bert.bert
        hidden = core.embeddings(input_ids=input_ids)
        additive = (1.0 - attention_mask[..., None, None, :].to(hidden.dtype)) * torch.finfo(hidden.dtype).min
        out = core.encoder(hidden, attention_mask=additive)
        return self.bert.dropout(core.pooler(out[0]))
