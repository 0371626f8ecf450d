//! Distillation: which transformer pairs each student configuration distils, at which level,
//! with which method, and `DistillTask`, which computes `alpha * CE + beta * L_KD` (its
//! `TrainTask` implementation, which plugs it into the loop, is in `train/distill.rs`).
//!
//! The teacher is frozen by construction: it is a `valid()` copy on the plain (non-autodiff)
//! device, outside the trained module, so it has no gradient and no optimizer state, and runs
//! in eval mode (no dropout). Its outputs enter the loss as constants.

pub mod pairs;
pub mod task;

use serde::{Deserialize, Serialize};

use crate::choice::Choice;
pub use pairs::{distilled_pairs, teacher_for_config};
pub use task::{DistillModel, DistillTask};

/// Where in the networks knowledge is distilled (paper section 4.3).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Level {
    /// The logits.
    Final,
    /// The output of the head's residual block.
    Penultimate,
    /// Per layer, the attention output after heads are concatenated and projected.
    PostAttention,
    /// Per layer, the head-averaged attention map.
    AttentionMap,
}
crate::choice::impl_choice!(Level {
    Final => "final", "The logits";
    Penultimate => "penultimate", "The output of the head's residual block";
    PostAttention => "post-attention", "Per layer, the attention output after heads are concatenated and projected";
    AttentionMap => "attention-map", "Per layer, the head-averaged attention map";
});

/// How the student is matched to the teacher at the chosen level.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Method {
    /// Contrastive representation distillation (Tian et al. 2020).
    Crd,
    /// EDAM with the student's A_S / L_S downsampled to the teacher's lengths.
    EdamS,
    /// EDAM with full-length student streams and teacher maps upsampled by a learned map.
    EdamT,
}
crate::choice::impl_choice!(Method {
    Crd => "crd", "Contrastive representation distillation (Tian et al. 2020).";
    EdamS => "edam-s", "EDAM with the student's A_S / L_S downsampled to the teacher's lengths";
    EdamT => "edam-t", "EDAM with full-length student streams and teacher maps upsampled by a learned map";
});

impl Method {
    /// How the student distilled with this method makes `A_S` and `L_S`: EDAM-T upsamples the
    /// teacher's maps to the student's full video length, the others compare at the teacher's
    /// lengths.
    pub fn student_streams(self) -> crate::model::StudentStreams {
        match self {
            Method::EdamT => crate::model::StudentStreams::FullLength,
            Method::Crd | Method::EdamS => crate::model::StudentStreams::Downsampled,
        }
    }
}

/// EDAM's orientation (eq. 13 literally, or the conventional direction): the loss crate's type,
/// saved in config.json as `literal` / `conventional`.
pub use mmkd_losses::EdamOrientation as Orientation;

/// A distillation setting, saved in the run's config.json.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DistillConfig {
    /// The teacher's run directory (made absolute when the run is configured).
    pub teacher_run: std::path::PathBuf,
    /// Where knowledge is distilled.
    pub level: Level,
    /// How it is distilled; EDAM needs `level` = attention map (see `validate`).
    pub method: Method,
    /// Weight of the cross-entropy on labels (CLI default 1.0).
    pub alpha: f64,
    /// Weight of the distillation loss `L_KD` (CLI default 0.8, CRD's own).
    pub beta: f64,
    /// Softmax temperature of the attention maps (eq. 10-11).
    pub temperature: f32,
    /// EDAM's direction (CLI default `literal`, eq. 13 as printed); unused by CRD.
    pub orientation: Orientation,
    /// Which clip's teacher outputs a clip is distilled from: its own, or (a control) another
    /// clip's of the same batch.
    #[serde(default, skip_serializing_if = "TeacherSignal::is_matched")]
    pub teacher_signal: TeacherSignal,
}

/// Which clip's teacher outputs a student clip is distilled from.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TeacherSignal {
    /// Its own clip's (distillation).
    #[default]
    Matched,
    /// The next clip's of the batch (clip i gets clip i+1's, the last the first's): a control
    /// that keeps the loss and its scale and removes what the teacher knows of the clip.
    Shuffled,
}
crate::choice::impl_choice!(TeacherSignal {
    Matched => "matched", "Its own clip's (distillation)";
    Shuffled => "shuffled", "The next clip's of the batch: a control that keeps the loss and removes what the teacher knows of the clip";
});

impl TeacherSignal {
    /// Distillation proper.
    pub fn is_matched(&self) -> bool {
        *self == TeacherSignal::Matched
    }
}

impl DistillConfig {
    /// Only attention maps are distributions, so EDAM applies there alone (paper section 2).
    pub fn validate(&self) -> Result<(), String> {
        if matches!(self.method, Method::EdamS | Method::EdamT) && self.level != Level::AttentionMap {
            return Err(format!("--method {} works on attention maps only; use --level attention-map", self.method.name()));
        }
        if self.teacher_signal == TeacherSignal::Shuffled && !matches!(self.level, Level::AttentionMap | Level::PostAttention) {
            return Err(format!("--teacher-signal shuffled works at the attention-map and post-attention levels (whose losses compare clip by clip); not with --level {}", self.level.name()));
        }
        if self.temperature.is_nan() || self.temperature <= 0.0 {
            return Err(format!("--temperature must be positive, got {}", self.temperature));
        }
        Ok(())
    }
}
