//! Distillation losses for mmkd: a multimodal MulT-style teacher distilled into a video-only
//! student (paper section 4.3; METHOD.md, "Distillation").
//!
//! * [`edam_loss`]: EDAM on attention maps, eqs. 12-13, in the printed ([`EdamOrientation::Literal`],
//!   default) or the conventional orientation.
//! * [`EdamUpsampler`]: EDAM-T's learned, row-stochastic resampling of teacher maps to the
//!   student's shape.
//! * [`CrdEmbed`], [`CrdMemoryBank`], [`nce_contrast_loss`]: CRD with momentum memory banks
//!   for per-sample vectors (final and penultimate layers).
//! * [`crd_in_batch_loss`]: CRD with in-batch negatives for per-layer and per-row vectors.
//!
//! Every loss returns a `[1]` tensor, ready for `alpha * CE + beta * L_KD`. Nothing here picks
//! a backend: tensors live on whatever `Device` the caller made them on (e.g.
//! `Device::flex().autodiff()` for training). Inputs that can be wrong at run time (shapes,
//! dataset indices, configuration) give a [`LossError`] instead of a panic.

#![warn(missing_docs)]

mod crd;
mod edam;
mod edam_t;
mod error;
mod rng;
#[cfg(test)]
mod test_util;

pub use crd::{
    CRD_FEAT_DIM, CRD_MOMENTUM, CRD_NCE_K, CRD_TEMPERATURE, CrdEmbed, CrdEmbedConfig, CrdMemoryBank, CrdMemoryBankConfig, CrdMemoryState, L2_NORM_EPS, NCE_EPS, crd_in_batch_loss, l2_normalize,
    nce_contrast_loss,
};
pub use edam::{EDAM_LOG_EPS, EdamOrientation, edam_loss, edam_map_loss};
pub use edam_t::{EdamUpsampler, EdamUpsamplerConfig};
pub use error::LossError;
