"""What a student inherited from its teacher: analyses that return plain numbers (Ojha et al. 2023)."""
