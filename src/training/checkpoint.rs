//! End-of-epoch checkpoints: `weights.safetensors` (parameters under timm names plus the AdamW
//! moments) and `state.json` (recipe, epochs done, optimizer step, history). The random state
//! needs no saving: every epoch draws from its own seeded stream.
use super::adamw::AdamW;
use super::params::Params;
use super::{EpochStats, Recipe, TrainError};
use candle_core::{Device, Tensor};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::path::Path;

const WEIGHTS: &str = "weights.safetensors";
const STATE: &str = "state.json";
/// The files of a checkpoint folder.
pub const FILES: [&str; 2] = [WEIGHTS, STATE];

#[derive(Serialize, Deserialize)]
struct State {
    recipe: Recipe,
    epochs_done: usize,
    /// Optimizer steps taken (AdamW bias correction, learning-rate schedule).
    step: usize,
    /// How the random streams are derived from the recipe's seed.
    rng: String,
    history: Vec<EpochStats>,
}

pub(super) struct Resumed {
    pub params: Params,
    pub opt: AdamW,
    pub history: Vec<EpochStats>,
}

fn err(path: &Path, msg: impl std::fmt::Display) -> TrainError {
    TrainError::Checkpoint {
        path: path.to_path_buf(),
        msg: msg.to_string(),
    }
}

pub(super) fn save(
    dir: &Path,
    recipe: &Recipe,
    params: &Params,
    opt: &AdamW,
    history: &[EpochStats],
) -> Result<(), TrainError> {
    std::fs::create_dir_all(dir).map_err(|e| err(dir, e))?;
    let mut tensors: HashMap<String, Tensor> = opt.state(params);
    for p in &params.list {
        tensors.insert(p.name.clone(), p.var.as_tensor().clone());
    }
    let epochs = history.len().to_string();
    let meta = HashMap::from([("epochs_done".to_string(), epochs)]);
    // Write-then-rename, weights first: a crash leaves either the old pair or new weights whose
    // recorded epoch disagrees with state.json, which `load` reports.
    let w = dir.join(WEIGHTS);
    let bytes = safetensors::serialize(&tensors, Some(meta)).map_err(|e| err(&w, e))?;
    crate::output::write_atomic(&w, &bytes).map_err(|e| err(&w, e))?;
    let state = State {
        recipe: recipe.clone(),
        epochs_done: history.len(),
        step: opt.t,
        rng: format!(
            "ChaCha8Rng::seed_from_u64({}): stream 0 initialises, stream 1+e shuffles and augments epoch e (0-based)",
            recipe.seed
        ),
        history: history.to_vec(),
    };
    let s = dir.join(STATE);
    let text = serde_json::to_string_pretty(&state).expect("state serialises");
    crate::output::write_atomic(&s, text.as_bytes()).map_err(|e| err(&s, e))
}

fn read_state(dir: &Path) -> Result<State, TrainError> {
    let path = dir.join(STATE);
    let text = std::fs::read_to_string(&path)
        .map_err(|e| err(&path, format!("no checkpoint to resume from ({e})")))?;
    serde_json::from_str(&text).map_err(|e| err(&path, format!("invalid checkpoint state: {e}")))
}

/// The recipe a checkpoint was trained with.
pub fn recipe(dir: &Path) -> Result<Recipe, TrainError> {
    Ok(read_state(dir)?.recipe)
}

pub(super) fn load(dir: &Path, recipe: &Recipe, device: &Device) -> Result<Resumed, TrainError> {
    let state = read_state(dir)?;
    let path = dir.join(STATE);
    if state.recipe != *recipe {
        return Err(err(
            &path,
            format!(
                "trained with a different recipe; resume with the same options\n  checkpoint: {:?}\n  asked:      {:?}",
                state.recipe, recipe
            ),
        ));
    }
    let w = dir.join(WEIGHTS);
    let bytes = std::fs::read(&w).map_err(|e| err(&w, e))?;
    let (_, meta) = safetensors::SafeTensors::read_metadata(&bytes).map_err(|e| err(&w, e))?;
    let epochs = meta
        .metadata()
        .as_ref()
        .and_then(|m| m.get("epochs_done").cloned());
    if epochs != Some(state.epochs_done.to_string()) {
        return Err(err(
            &w,
            format!(
                "holds epoch {epochs:?} but {} says {} (interrupted while saving?)",
                path.display(),
                state.epochs_done
            ),
        ));
    }
    let tensors = candle_core::safetensors::load_buffer(&bytes, device).map_err(|e| err(&w, e))?;
    let params =
        Params::from_tensors(&recipe.arch.config(), &tensors, device).map_err(|e| err(&w, e))?;
    let mut opt = AdamW::new(&params, recipe.lr, recipe.weight_decay)?;
    opt.restore(&params, &tensors, state.step)
        .map_err(|e| err(&w, e))?;
    Ok(Resumed {
        params,
        opt,
        history: state.history,
    })
}
