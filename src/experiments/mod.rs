//! Experiments over discovered paths.
