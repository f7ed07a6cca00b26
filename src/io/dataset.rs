//! ImageNet-style class folders and `.npy` input arrays.
