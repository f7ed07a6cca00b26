//! Input and output: image decoding and preprocessing, data sets, result files.
pub mod dataset;
pub mod preprocess;
