//! The paper's method and its baselines.
