//! Run configuration: plain serde structs with named presets.
//!
//! Every run directory gets the *effective* config (preset plus command-line overrides) as
//! `config.json`, so a run can be reproduced or resumed without remembering its flags.

use serde::{Deserialize, Serialize};

/// The named presets. `smoke` is for tests (seconds), `small` for the README's main job on a
/// 2-core CPU (minutes), `paper` is the paper's setting on CMU-MOSEI.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Preset {
    Smoke,
    Small,
    Paper,
}

impl Preset {
    pub fn name(self) -> &'static str {
        match self {
            Preset::Smoke => "smoke",
            Preset::Small => "small",
            Preset::Paper => "paper",
        }
    }
}

/// Shape of a MOSEI-like dataset: feature dims, sequence lengths and split sizes.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DataShape {
    pub text_dim: usize,
    pub audio_dim: usize,
    pub video_dim: usize,
    pub text_len: usize,
    pub audio_len: usize,
    pub video_len: usize,
    pub n_train: usize,
    pub n_valid: usize,
    pub n_test: usize,
}

impl DataShape {
    /// Same feature dims and sequence lengths (split sizes may differ): a network built for
    /// one shape accepts the other's clips.
    pub fn same_inputs(&self, other: &DataShape) -> bool {
        (self.text_dim, self.audio_dim, self.video_dim, self.text_len, self.audio_len, self.video_len)
            == (other.text_dim, other.audio_dim, other.video_dim, other.text_len, other.audio_len, other.video_len)
    }

    pub fn for_preset(preset: Preset) -> Self {
        // MOSEI's modality dims are kept in every preset (GloVe 300, COVAREP 74, Facet 35);
        // only lengths and split sizes shrink, so the input layers are the paper's.
        let (text_len, audio_len, video_len, n_train, n_valid, n_test) = match preset {
            Preset::Smoke => (6, 12, 12, 96, 32, 48),
            Preset::Small => (10, 20, 20, 2000, 400, 1000),
            Preset::Paper => (50, 500, 500, 16_326, 1_871, 4_659),
        };
        DataShape {
            text_dim: 300,
            audio_dim: 74,
            video_dim: 35,
            text_len,
            audio_len,
            video_len,
            n_train,
            n_valid,
            n_test,
        }
    }
}

/// Hyper-parameters of every transformer and of the two networks built from them.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ModelConfig {
    /// Width of every transformer (the paper preset uses d = 64, see METHOD.md).
    pub d_model: usize,
    pub layers: usize,
    pub heads: usize,
    /// Kernel of the teacher's per-modality Conv1D and of the student's same-length Conv1D.
    pub conv_kernel: usize,
    /// MulT's width of 2d for a branch's temporal transformer instead of a linear 2d -> d.
    pub temporal_width_2d: bool,
    /// Attention dropout when text gives keys/values (MulT: 0.1) and otherwise (MulT: 0.0).
    pub attn_dropout_text: f64,
    pub attn_dropout_other: f64,
    pub relu_dropout: f64,
    pub res_dropout: f64,
    pub embed_dropout: f64,
    pub out_dropout: f64,
    /// MulT's future mask (upper triangle offset by 1 + |Lk - Lq|) in every attention.
    pub causal_mask: bool,
    /// MulT's positions: an all-zero frame (first feature == 0) gets the zero position vector.
    pub positions_from_first_feature: bool,
    /// Mask keys beyond each sample's length (needs lengths in the data).
    pub key_padding_mask: bool,
}

impl ModelConfig {
    pub fn for_preset(preset: Preset) -> Self {
        let paper = ModelConfig {
            d_model: 64,
            layers: 4,
            heads: 8,
            conv_kernel: 3,
            temporal_width_2d: false,
            attn_dropout_text: 0.1,
            attn_dropout_other: 0.0,
            relu_dropout: 0.1,
            res_dropout: 0.1,
            embed_dropout: 0.2,
            out_dropout: 0.0,
            causal_mask: true,
            positions_from_first_feature: true,
            key_padding_mask: false,
        };
        match preset {
            Preset::Paper => paper,
            Preset::Small => ModelConfig { d_model: 32, layers: 2, heads: 4, ..paper },
            Preset::Smoke => ModelConfig { d_model: 16, layers: 1, heads: 2, ..paper },
        }
    }
}

/// The training recipe (paper appendix A.3 plus MulT's defaults where the paper is silent).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TrainConfig {
    pub epochs: usize,
    pub batch_size: usize,
    pub lr: f64,
    pub adam_epsilon: f32,
    pub plateau_patience: usize,
    pub plateau_factor: f64,
    /// Gradient norm clip (MulT: 0.8 in its README, 1.0 in its default args).
    pub grad_clip: Option<f32>,
    pub seed: u64,
    /// Seconds between resumable checkpoints inside an epoch (0: after every batch). Does not
    /// change results: dropout is seeded per batch.
    #[serde(default = "default_checkpoint_secs")]
    pub checkpoint_secs: u64,
}

fn default_checkpoint_secs() -> u64 {
    300
}

impl TrainConfig {
    pub fn for_preset(preset: Preset) -> Self {
        let paper = TrainConfig {
            epochs: 100,
            batch_size: 64,
            lr: 1e-3,
            adam_epsilon: 1e-8,
            plateau_patience: 10,
            plateau_factor: 0.5,
            grad_clip: Some(1.0),
            seed: 1,
            checkpoint_secs: default_checkpoint_secs(),
        };
        match preset {
            Preset::Paper => paper,
            Preset::Small => TrainConfig { epochs: 5, plateau_patience: 2, ..paper },
            Preset::Smoke => TrainConfig { epochs: 2, batch_size: 16, plateau_patience: 1, ..paper },
        }
    }
}
