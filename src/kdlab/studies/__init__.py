"""Studies: sets of experiments that reproduce a paper's claims at small scale and report on them."""
