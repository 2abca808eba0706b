"""The text-classification task (Hugging Face encoders)."""
