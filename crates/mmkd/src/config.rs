//! Run configuration: plain serde structs with named presets.
//!
//! Every run directory gets the *effective* config (preset plus command-line overrides) as
//! `config.json`, so a run can be reproduced or resumed without remembering its flags.

use serde::{Deserialize, Serialize};

/// The named presets. `smoke` is for tests (seconds), `small` for the README's main job on a
/// 2-core CPU (minutes), `paper` is the paper's setting on CMU-MOSEI.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Preset {
    /// Tests: lengths 6/12/12, 96/32/48 clips, d = 16, 1 layer, 2 heads, 2 epochs.
    Smoke,
    /// README's CPU job: lengths 10/20/20, 2,000/400/1,000 clips, d = 32, 2 layers, 4 heads.
    Small,
    /// The paper: MOSEI's lengths (50/500/500) and splits, d = 64, 4 layers, 8 heads, 100 epochs.
    Paper,
}
crate::choice::impl_choice!(Preset {
    Smoke => "smoke", "Tests: lengths 6/12/12, 96/32/48 clips, d = 16, 1 layer, 2 heads, 2 epochs";
    Small => "small", "README's CPU job: lengths 10/20/20, 2,000/400/1,000 clips, d = 32, 2 layers, 4 heads";
    Paper => "paper", "The paper: MOSEI's lengths (50/500/500) and splits, d = 64, 4 layers, 8 heads, 100 epochs";
});

/// The compute devices a command can run on (`--device`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DeviceKind {
    /// Burn's flex backend on the CPU (fused attention, nothing to install).
    Flex,
    /// The first NVIDIA GPU through Burn's CUDA backend (unfused attention).
    Cuda,
}
crate::choice::impl_choice!(DeviceKind {
    Flex => "flex", "Burn's flex backend on the CPU (fused attention, nothing to install)";
    Cuda => "cuda", "The first NVIDIA GPU through Burn's CUDA backend (unfused attention)";
});

/// Shape of a MOSEI-like dataset: feature dims, sequence lengths and split sizes.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DataShape {
    /// Text features per step (GloVe: 300).
    pub text_dim: usize,
    /// Audio features per frame (COVAREP: 74).
    pub audio_dim: usize,
    /// Video features per frame (Facet: 35).
    pub video_dim: usize,
    /// Text steps per clip (MOSEI: 50).
    pub text_len: usize,
    /// Audio frames per clip (MOSEI: 500).
    pub audio_len: usize,
    /// Video frames per clip (MOSEI: 500).
    pub video_len: usize,
    /// Clips in the training split (MOSEI: 16,326).
    pub n_train: usize,
    /// Clips in the validation split (MOSEI: 1,871).
    pub n_valid: usize,
    /// Clips in the test split (MOSEI: 4,659).
    pub n_test: usize,
}

impl DataShape {
    /// Same feature dims and sequence lengths (split sizes may differ): a network built for
    /// one shape accepts the other's clips.
    pub fn same_inputs(&self, other: &DataShape) -> bool {
        (self.text_dim, self.audio_dim, self.video_dim, self.text_len, self.audio_len, self.video_len)
            == (other.text_dim, other.audio_dim, other.video_dim, other.text_len, other.audio_len, other.video_len)
    }

    /// The shape of `preset`: always MOSEI's feature dims; lengths and split sizes shrink below
    /// `paper`.
    pub fn for_preset(preset: Preset) -> Self {
        // MOSEI's modality dims are kept in every preset (GloVe 300, COVAREP 74, Facet 35);
        // only lengths and split sizes shrink, so the input layers are the paper's.
        let (text_len, audio_len, video_len, n_train, n_valid, n_test) = match preset {
            Preset::Smoke => (6, 12, 12, 96, 32, 48),
            Preset::Small => (10, 20, 20, 2000, 400, 1000),
            Preset::Paper => (50, 500, 500, 16_326, 1_871, 4_659),
        };
        DataShape { text_dim: 300, audio_dim: 74, video_dim: 35, text_len, audio_len, video_len, n_train, n_valid, n_test }
    }
}

/// Hyper-parameters of every transformer and of the two networks built from them.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ModelConfig {
    /// Width of every transformer (the paper preset uses d = 64, see METHOD.md).
    pub d_model: usize,
    /// Encoder layers per transformer (paper: 4).
    pub layers: usize,
    /// Attention heads per layer (paper: 8); must divide `d_model`.
    pub heads: usize,
    /// Kernel of the teacher's per-modality Conv1D and of the student's same-length Conv1D.
    pub conv_kernel: usize,
    /// MulT's width of 2d for a branch's temporal transformer instead of a linear 2d -> d.
    pub temporal_width_2d: bool,
    /// Attention dropout when text gives keys/values (MulT: 0.1).
    pub attn_dropout_text: f64,
    /// Attention dropout when audio or video gives keys/values (MulT: 0.0).
    pub attn_dropout_other: f64,
    /// Dropout after the feed-forward ReLU (MulT: 0.1).
    pub relu_dropout: f64,
    /// Dropout on each sub-layer's output before its residual add (MulT: 0.1).
    pub res_dropout: f64,
    /// Dropout on the scaled, position-added encoder inputs (MulT: 0.2).
    pub embed_dropout: f64,
    /// Dropout inside the head's residual block, after its ReLU (MulT: 0.0).
    pub out_dropout: f64,
    /// MulT's future mask (upper triangle offset by 1 + |Lk - Lq|) in every attention.
    pub causal_mask: bool,
    /// MulT's positions: an all-zero frame (first feature == 0) gets the zero position vector.
    pub positions_from_first_feature: bool,
    /// Mask keys beyond each sample's length (needs lengths in the data).
    pub key_padding_mask: bool,
    /// Branch dropout (not in MulT; 0 in every preset): in training, each clip drops each
    /// branch's last step, its block of the head's input, with this probability and scales the
    /// kept ones by 1/(1-p), so that every branch must predict alone (docs/DECISIONS.md).
    #[serde(default)]
    pub branch_dropout: f64,
}

impl ModelConfig {
    /// The model of `preset`: d/layers/heads 64/4/8 (`paper`), 32/2/4 (`small`), 16/1/2 (`smoke`).
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
            branch_dropout: 0.0,
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
    /// Training epochs (paper: 100).
    pub epochs: usize,
    /// Clips per mini-batch (paper: 64).
    pub batch_size: usize,
    /// Adam's initial learning rate (paper: 1e-3).
    pub lr: f64,
    /// Adam's epsilon (1e-8).
    pub adam_epsilon: f32,
    /// Epochs without a lower validation loss before ReduceLROnPlateau cuts the rate (paper: 10).
    pub plateau_patience: usize,
    /// Factor ReduceLROnPlateau multiplies the learning rate by (paper: 0.5).
    pub plateau_factor: f64,
    /// Gradient norm clip (MulT: 0.8 in its README, 1.0 in its default args).
    pub grad_clip: Option<f32>,
    /// Seeds initialisation, the epoch shuffles and per-batch dropout.
    pub seed: u64,
    /// Seconds between resumable checkpoints inside an epoch (0: after every batch). Does not
    /// change results: dropout is seeded per batch.
    #[serde(default = "default_checkpoint_secs")]
    pub checkpoint_secs: u64,
    /// Burn's balanced gradient checkpointing: memory-bound activations are recomputed in the
    /// backward instead of kept (less memory, more time; results unchanged up to rounding).
    #[serde(default)]
    pub gradient_checkpointing: bool,
    /// Early stopping: end training when the validation loss has not improved for this many
    /// epochs (`None`: train every epoch). The best checkpoint is evaluated either way.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub early_stop: Option<usize>,
    /// On flex, a training step computes a batch of more rows than this in parts of at most
    /// this many, each on a thread of its own (`model::parts`; the loss must be a mean over
    /// rows, so CRD steps stay whole). The parts depend on the batch size alone, not on the
    /// machine's cores; the result differs from a whole batch's by rounding. `None` (runs from
    /// before this field): one piece. Ignored with gradient checkpointing and on CUDA.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rows_per_part: Option<usize>,
}

fn default_checkpoint_secs() -> u64 {
    300
}

impl TrainConfig {
    /// The autodiff device a training step runs on: `device` with autodiff, and with balanced
    /// gradient checkpointing when asked.
    pub fn autodiff_device(&self, device: &burn::prelude::Device) -> burn::prelude::Device {
        let ad = device.clone().autodiff();
        if self.gradient_checkpointing { ad.gradient_checkpointing() } else { ad }
    }

    /// The rows per part a training step is cut into (`rows_per_part`), or `None` where the
    /// batch stays whole: with gradient checkpointing, whose strategy a part's fresh parameter
    /// leaves would not carry.
    pub fn step_rows_per_part(&self) -> Option<usize> {
        self.rows_per_part.filter(|_| !self.gradient_checkpointing)
    }

    /// The recipe of `preset`: the paper's for `paper`; `small` 5 epochs, patience 2; `smoke` 2
    /// epochs, batch 16, patience 1.
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
            gradient_checkpointing: false,
            early_stop: None,
            // Two parts of 32 at batch 64: at `small` and at `paper` two single-threaded
            // halves beat one batch on two threads (bench/NOTES.md, "A batch in parts").
            rows_per_part: Some(32),
        };
        match preset {
            Preset::Paper => paper,
            Preset::Small => TrainConfig { epochs: 5, plateau_patience: 2, ..paper },
            Preset::Smoke => TrainConfig { epochs: 2, batch_size: 16, plateau_patience: 1, ..paper },
        }
    }
}
