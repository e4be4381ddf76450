"""One module per route; each only runs its own steps and hands ``converter.conversion.plan`` a result."""
