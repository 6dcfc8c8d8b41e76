// Mirroring arrives with the mirror engine.
