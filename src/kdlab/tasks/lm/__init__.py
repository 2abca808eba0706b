"""The causal language-modelling task (Hugging Face causal LMs)."""
