//! Image decoding and the paper's preprocessing (PIL-exact bilinear resize, ToTensor, Normalize).
