//! Shared helpers for the load tools in `src/bin/`.
