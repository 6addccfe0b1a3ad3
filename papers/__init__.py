"""One package per paper: only what is new in that paper; the rest lives in `common`."""
