"""The DVC stages of the MQP LoRA pipeline (one module per stage) and what they share."""
