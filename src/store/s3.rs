//! Placeholder: the implementation is being written on its own branch.
