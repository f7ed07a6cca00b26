//! The model layer: ViT architecture, checkpoint loading, interventions and gradients.
pub mod config;
mod fused;
mod fused_device;
mod gelu;
pub mod gradients;
pub mod intervene;
mod kernels;
pub mod load;
pub mod ops;
pub mod save;
pub mod vit;

pub use config::{Pool, VitConfig};
pub use intervene::{Edit, Edits, LayerEdit, Rows};
pub use load::{load_model, LoadOptions, ModelError};
pub use ops::{Gelu, Mode};
pub use vit::Vit;
