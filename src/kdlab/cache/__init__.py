"""The teacher-output cache: keys (hashes of weights, data and views), top-k compression, memory-mapped arrays
with checksums, building, and the two teacher sources of a step (online or cached)."""
