//! Input and output: image decoding and preprocessing, data sets, result files.
pub mod dataset;
pub mod fashion_mnist;
pub mod file_error;
pub mod inputs;
pub mod npy_out;
pub mod preprocess;
pub mod reference;
pub mod results;
pub mod shard;
