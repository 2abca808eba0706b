"""Exact structured inference: linear-chain CRFs (forward–backward, Viterbi, k-best) and dependency trees (head
selection, the matrix-tree theorem, MST and Eisner decoding)."""
