//! The teacher and the student are one network type, assembled from three parts:
//! a front end (three Conv1D layers making the streams V, A, L), a body of MulT transformers
//! (either MulT's branches, or three transformers side by side), and MulT's head.
//!
//! Teacher: the streams come from video, audio and text. Student: all three come from video
//! (`V_S`, `A_S`, `L_S`), so the student can reuse the teacher's Q/K roles with one modality.

use std::collections::{BTreeMap, BTreeSet};

use burn::nn::conv::{Conv1d, Conv1dConfig};
use burn::nn::{Dropout, DropoutConfig, Linear, LinearConfig, PaddingConfig1d};
use burn::prelude::*;

use super::attention::{LayerTrace, Probe};
use super::encoder::{CrossModalEncoder, CrossModalEncoderConfig};
use super::head::MultHead;
use super::modality::{CrossSides, Modality, TransformerId};
use crate::config::{DataShape, ModelConfig};
pub use crate::input::NUM_CLASSES;
use crate::input::NetInput;

/// Which transformers a forward pass should trace, and what to record.
#[derive(Clone, Debug, Default)]
pub struct TraceRequest {
    /// What to record in each traced transformer.
    pub probe: Probe,
    /// The transformers to trace; the others record nothing.
    pub transformers: BTreeSet<TransformerId>,
}

impl TraceRequest {
    /// Trace nothing (plain inference).
    pub fn none() -> Self {
        TraceRequest::default()
    }

    fn probe_for(&self, id: TransformerId) -> Probe {
        if self.transformers.contains(&id) { self.probe } else { Probe::NONE }
    }
}

/// What a forward pass returns.
pub struct NetOutput {
    /// Class logits, [batch, 7] (the "final layer").
    pub logits: Tensor<2>,
    /// The head's residual-block output, [batch, head width] (the "penultimate layer").
    pub penultimate: Tensor<2>,
    /// Per traced transformer, one trace per layer.
    pub traces: BTreeMap<TransformerId, Vec<LayerTrace>>,
}

/// One Conv1D along time, from a raw input (`source`) to a stream of width d.
#[derive(Module, Debug)]
pub struct StreamConv {
    /// The convolution, without bias.
    pub conv: Conv1d,
    /// The raw input it reads (`Video` for all three of a student's streams).
    #[module(skip)]
    pub source: Modality,
    /// Length of the stream it makes (steps).
    #[module(skip)]
    pub out_len: usize,
}

impl StreamConv {
    /// A conv that keeps the length (kernel k, padding k/2), or one that downsamples
    /// `in_len` to exactly `out_len` (stride floor(in/out), kernel in - (out-1)*stride >= stride,
    /// no padding: 500 -> 50 is stride 10, kernel 10). No bias, as MulT's projections: an
    /// all-zero padding frame then stays exactly zero, which MulT's positions rely on.
    pub fn new(source: Modality, d_in: usize, d: usize, kernel: usize, in_len: usize, out_len: usize, device: &Device) -> Self {
        let config = if out_len == in_len {
            Conv1dConfig::new(d_in, d, kernel).with_padding(PaddingConfig1d::Explicit(kernel / 2, (kernel - 1) / 2))
        } else {
            assert!(out_len < in_len && out_len > 0, "can only downsample ({in_len} -> {out_len})");
            let stride = in_len / out_len;
            let k = in_len - (out_len - 1) * stride;
            Conv1dConfig::new(d_in, d, k).with_stride(stride)
        };
        StreamConv { conv: config.with_bias(false).init(device), source, out_len }
    }

    /// [B, L, D_in] -> [B, out_len, d].
    fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        self.conv.forward(x.swap_dims(1, 2)).swap_dims(1, 2)
    }
}

/// MulT branch: two cross-modal transformers sharing the query stream, concatenated on features,
/// then a self-attention ("temporal") transformer.
#[derive(Module, Debug)]
pub struct Branch {
    /// The cross-modal transformers `k <- query`, one per `k` in `query.others()`.
    pub cross: Vec<CrossModalEncoder>,
    /// 2d -> d before the temporal transformer (absent with MulT's 2d width).
    pub reduce: Option<Linear>,
    /// Self-attention over the concatenated (or reduced) cross-modal outputs.
    pub temporal: CrossModalEncoder,
    /// The modality giving the branch's queries.
    #[module(skip)]
    pub query: Modality,
}

/// How the student's `A_S` and `L_S` are made from video.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum StudentStreams {
    /// Downsampled to the teacher's audio and language lengths (EDAM-S; the default student).
    Downsampled,
    /// Kept at the video length (EDAM-T upsamples the teacher's maps instead).
    FullLength,
}
crate::choice::impl_choice!(StudentStreams {
    Downsampled => "downsampled", "Downsampled to the teacher's audio and language lengths (EDAM-S; the default student)";
    FullLength => "full-length", "Kept at the video length (EDAM-T upsamples the teacher's maps instead)";
});

/// The body of a network.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum BodySpec {
    /// MulT branches, one per query modality listed.
    Branches(Vec<Modality>),
    /// Cross-modal transformers side by side; their last steps are concatenated.
    Flat(Vec<CrossSides>),
}

impl BodySpec {
    /// Every transformer of the body, in a stable order.
    pub fn transformers(&self) -> Vec<TransformerId> {
        match self {
            BodySpec::Branches(queries) => queries
                .iter()
                .flat_map(|&q| {
                    let [k1, k2] = q.others();
                    [TransformerId::cross(k1, q), TransformerId::cross(k2, q), TransformerId::Temporal(q)]
                })
                .collect(),
            BodySpec::Flat(sides) => sides.iter().map(|s| s.id()).collect(),
        }
    }
}

/// One transformer of a flat body, with the streams it reads.
#[derive(Module, Debug)]
pub struct FlatTransformer {
    /// The transformer.
    pub encoder: CrossModalEncoder,
    /// Which streams give its keys and its queries.
    #[module(skip)]
    pub sides: CrossSides,
}

/// The trained transformers of a network's body; each part carries the modalities it reads,
/// so the layout (`MultimodalNet::spec`) is read from the body, never kept beside it.
#[derive(Module, Debug)]
pub enum Body {
    /// MulT branches, one per query modality.
    Branches(Vec<Branch>),
    /// Cross-modal transformers side by side.
    Flat(Vec<FlatTransformer>),
}

/// A teacher or a student: front end, body, head.
#[derive(Module, Debug)]
pub struct MultimodalNet {
    /// Streams in the order V, A, L.
    pub front: Vec<StreamConv>,
    /// The transformers.
    pub body: Body,
    /// MulT's residual head on the concatenated last steps.
    pub head: MultHead,
    /// Branch dropout on the last steps before the head (`ModelConfig::branch_dropout`); a
    /// flat body's transformers count as branches.
    pub branch_dropout: Dropout,
    /// Whether keys past a clip's length are masked (`ModelConfig::key_padding_mask`). Lengths
    /// in a batch are ignored otherwise: data converted from a pickle carries lengths, and a
    /// network trained without the mask must see the same inputs when it is evaluated.
    #[module(skip)]
    pub key_padding_mask: bool,
}

fn stream_index(m: Modality) -> usize {
    match m {
        Modality::Video => 0,
        Modality::Audio => 1,
        Modality::Text => 2,
    }
}

/// MulT's dropout on the attention probabilities of a transformer: it follows the key/value
/// modality (0.1 for text, 0.0 otherwise); a temporal transformer's keys are its own branch.
pub fn attention_dropout(cfg: &ModelConfig, id: TransformerId) -> f64 {
    let keys = match id {
        TransformerId::Cross { keys, .. } => keys,
        TransformerId::Temporal(q) => q,
    };
    keys_dropout(cfg, keys)
}

fn keys_dropout(cfg: &ModelConfig, keys: Modality) -> f64 {
    if keys == Modality::Text { cfg.attn_dropout_text } else { cfg.attn_dropout_other }
}

fn encoder_config(cfg: &ModelConfig, keys: Modality, width: usize) -> CrossModalEncoderConfig {
    let attn_dropout = keys_dropout(cfg, keys);
    CrossModalEncoderConfig::new(width, cfg.layers, cfg.heads)
        .with_attn_dropout(attn_dropout)
        .with_relu_dropout(cfg.relu_dropout)
        .with_res_dropout(cfg.res_dropout)
        .with_embed_dropout(cfg.embed_dropout)
        .with_causal_mask(cfg.causal_mask)
        .with_positions_from_first_feature(cfg.positions_from_first_feature)
}

impl MultimodalNet {
    /// Build a network from its front end and body.
    pub fn new(front: Vec<StreamConv>, spec: BodySpec, cfg: &ModelConfig, device: &Device) -> Self {
        let d = cfg.d_model;
        let (body, head_dim) = match &spec {
            BodySpec::Branches(queries) => {
                let width = if cfg.temporal_width_2d { 2 * d } else { d };
                let branches: Vec<Branch> = queries
                    .iter()
                    .map(|&q| Branch {
                        cross: q.others().iter().map(|&k| encoder_config(cfg, k, d).init(device)).collect(),
                        reduce: (!cfg.temporal_width_2d).then(|| LinearConfig::new(2 * d, d).init(device)),
                        temporal: encoder_config(cfg, q, width).init(device),
                        query: q,
                    })
                    .collect();
                let n = branches.len();
                (Body::Branches(branches), n * width)
            }
            BodySpec::Flat(sides) => {
                let flat: Vec<FlatTransformer> = sides.iter().map(|&s| FlatTransformer { encoder: encoder_config(cfg, s.keys, d).init(device), sides: s }).collect();
                (Body::Flat(flat), sides.len() * d)
            }
        };
        let head = MultHead::new(head_dim, NUM_CLASSES, cfg.out_dropout, device);
        MultimodalNet { front, body, head, branch_dropout: DropoutConfig::new(cfg.branch_dropout).init(), key_padding_mask: cfg.key_padding_mask }
    }

    /// What the body holds: its branches' query modalities, or its flat transformers' sides.
    pub fn spec(&self) -> BodySpec {
        match &self.body {
            Body::Branches(branches) => BodySpec::Branches(branches.iter().map(|b| b.query).collect()),
            Body::Flat(flat) => BodySpec::Flat(flat.iter().map(|t| t.sides).collect()),
        }
    }

    /// Every transformer of the body, in `BodySpec::transformers`' order.
    pub fn transformers(&self) -> Vec<TransformerId> {
        self.spec().transformers()
    }

    /// Length of the stream that plays modality `m` (a student's `A_S` comes from video but
    /// plays audio).
    pub fn stream_len(&self, m: Modality) -> usize {
        self.front[stream_index(m)].out_len
    }

    /// The input modalities the network reads (a student: video alone).
    pub fn inputs(&self) -> Vec<Modality> {
        Modality::ALL.into_iter().filter(|&m| self.front.iter().any(|c| c.source == m)).collect()
    }

    /// Run the network on a batch; only the transformers named in `request` record traces.
    ///
    /// Panics when `input` lacks a modality the network reads: callers check data against
    /// `inputs()` when they load it (`Dataset::check_trainable`), so this is a programming error.
    pub fn forward(&self, input: &NetInput, request: &TraceRequest) -> NetOutput {
        let (head, traces) = self.run(input, request, false);
        let (penultimate, logits) = head.expect("a full forward runs the head");
        NetOutput { logits, penultimate, traces }
    }

    /// Only the traces `request` asks for, equal to `forward`'s: runs the transformers traced
    /// (and a branch's cross transformers when its temporal transformer is traced) and skips the
    /// rest of the body and the head. A frozen teacher at the attention-map and post-attention
    /// levels needs nothing else; in configuration 5 that is 2 of its 9 transformers.
    pub fn traces(&self, input: &NetInput, request: &TraceRequest) -> BTreeMap<TransformerId, Vec<LayerTrace>> {
        self.run(input, request, true).1
    }

    /// The forward pass; with `traces_only`, only what the requested traces need.
    fn run(&self, input: &NetInput, request: &TraceRequest, traces_only: bool) -> (Option<(Tensor<2>, Tensor<2>)>, BTreeMap<TransformerId, Vec<LayerTrace>>) {
        let needed = |id: TransformerId| !traces_only || request.transformers.contains(&id);
        let batch = input;
        let input = |m: Modality| -> Tensor<3> {
            match batch.get(m) {
                Some(t) => t.clone(),
                None => panic!("the batch has no {} features; check the data with `MultimodalNet::inputs` first", m.name()),
            }
        };
        let streams: Vec<Tensor<3>> = self.front.iter().map(|conv| conv.forward(input(conv.source))).collect();
        let key_lengths = |m: Modality| -> Option<Vec<usize>> {
            let conv = &self.front[stream_index(m)];
            batch.lengths.as_ref().filter(|_| self.key_padding_mask).map(|l| l.scaled(conv.source, conv.out_len))
        };
        let mut traces = BTreeMap::new();
        // Run one transformer on (queries, keys/values), keeping its trace when requested.
        // `keys_values == None` is self-attention over `queries`.
        let mut run = |enc: &CrossModalEncoder, id: TransformerId, queries: Tensor<3>, keys_values: Option<Tensor<3>>, key_modality: Modality| {
            let lens = key_lengths(key_modality);
            let (h, t) = enc.forward(queries, keys_values, lens.as_deref(), request.probe_for(id));
            if !t.is_empty() {
                traces.insert(id, t);
            }
            h
        };
        let stream = |m: Modality| streams[stream_index(m)].clone();
        let mut lasts = Vec::new();
        match &self.body {
            Body::Branches(branches) => {
                for branch in branches {
                    let q = branch.query;
                    let temporal = needed(TransformerId::Temporal(q));
                    let mut outs = Vec::new();
                    for (enc, k) in branch.cross.iter().zip(q.others()) {
                        let id = TransformerId::cross(k, q);
                        if temporal || needed(id) {
                            outs.push(run(enc, id, stream(q), Some(stream(k)), k));
                        }
                    }
                    if !temporal {
                        continue;
                    }
                    let mut h = Tensor::cat(outs, 2);
                    if let Some(reduce) = &branch.reduce {
                        h = reduce.forward(h);
                    }
                    lasts.push(last_step(run(&branch.temporal, TransformerId::Temporal(q), h, None, q)));
                }
            }
            Body::Flat(flat) => {
                for t in flat {
                    let CrossSides { keys, queries } = t.sides;
                    if !needed(t.sides.id()) {
                        continue;
                    }
                    // One stream on both sides (the student's `V<-V`) is self-attention; see
                    // docs/DECISIONS.md.
                    let keys_values = (keys != queries).then(|| stream(keys));
                    lasts.push(last_step(run(&t.encoder, t.sides.id(), stream(queries), keys_values, keys)));
                }
            }
        }
        if traces_only {
            return (None, traces);
        }
        let lasts = drop_branches(lasts, &self.branch_dropout);
        (Some(self.head.forward(Tensor::cat(lasts, 1))), traces)
    }
}

/// Which keys the query rows of one transformer may see, from the masks its forward pass applies
/// (MulT's future mask when on; the key padding mask when on and the batch has lengths): what
/// "visible" means for the uniform baseline of the event share, whatever the softmax made of
/// the visible keys (a peaked row can underflow to exactly 0 on keys it may see).
pub struct KeyVisibility {
    /// Keys `j` with `j - i >= offset` are hidden from query `i` (MulT's `1 + |Lk - Lq|`).
    future_offset: Option<i64>,
    /// Valid keys per clip (at least 1), when padding is masked.
    key_lengths: Option<Vec<usize>>,
}

impl KeyVisibility {
    /// Whether query `row` of clip `clip` may attend to key `col`.
    pub fn visible(&self, clip: usize, row: usize, col: usize) -> bool {
        let future = self.future_offset.is_some_and(|offset| col as i64 - row as i64 >= offset);
        let padded = self.key_lengths.as_ref().is_some_and(|lens| col >= lens[clip].max(1));
        !(future || padded)
    }
}

impl MultimodalNet {
    /// The encoder of transformer `id`, when the network has it.
    pub fn encoder(&self, id: TransformerId) -> Option<&CrossModalEncoder> {
        let ids = self.transformers();
        let encoders: Vec<&CrossModalEncoder> = match &self.body {
            Body::Branches(branches) => branches.iter().flat_map(|b| b.cross.iter().chain(std::iter::once(&b.temporal))).collect(),
            Body::Flat(flat) => flat.iter().map(|t| &t.encoder).collect(),
        };
        ids.iter().position(|&i| i == id).and_then(|k| encoders.get(k).copied())
    }

    /// What the masks of transformer `id` let its `lq` query rows see of its `lk` keys, for the
    /// clips whose `lengths` are given (as `forward` computes its masks).
    pub fn key_visibility(&self, id: TransformerId, lq: usize, lk: usize, lengths: Option<&crate::input::Lengths>) -> KeyVisibility {
        let causal = self.encoder(id).is_some_and(|e| e.causal_mask);
        let keys = match id {
            TransformerId::Cross { keys, .. } => keys,
            TransformerId::Temporal(q) => q,
        };
        let conv = &self.front[stream_index(keys)];
        KeyVisibility { future_offset: causal.then(|| 1 + lq.abs_diff(lk) as i64), key_lengths: lengths.filter(|_| self.key_padding_mask).map(|l| l.scaled(conv.source, conv.out_len)) }
    }
}

/// Branch dropout: per clip, each branch's last step is kept whole or zeroed whole. Burn's
/// `Dropout` on a [batch, branches] tensor of ones draws the mask, so the rule for when it acts
/// (training, an autodiff device) and its seeding are those of every other dropout.
fn drop_branches(lasts: Vec<Tensor<2>>, dropout: &Dropout) -> Vec<Tensor<2>> {
    // Without branch dropout (MulT, every preset) the graph stays as it was; otherwise
    // `Dropout` itself decides whether it acts.
    let Some(first) = lasts.first().filter(|_| dropout.prob > 0.0) else { return lasts };
    let [batch, _] = first.dims();
    let keep = super::dropout::apply(dropout, Tensor::<2>::ones([batch, lasts.len()], &first.device()));
    lasts.into_iter().enumerate().map(|(i, h)| h * keep.clone().narrow(1, i, 1)).collect()
}

/// [B, L, d] -> [B, d]: the last time step (MulT's `h[-1]`).
fn last_step(h: Tensor<3>) -> Tensor<2> {
    let [_, l, _] = h.dims();
    h.narrow(1, l - 1, 1).squeeze_dim(1)
}

/// Teacher configurations of the paper.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TeacherKind {
    /// All three branches (9 transformers).
    Complete,
    /// The video branch: `A<-V`, `L<-V`, then `V-temporal`.
    Video,
    /// The audio branch: `V<-A`, `L<-A`, then `A-temporal`.
    Audio,
    /// The language branch: `V<-L`, `A<-L`, then `L-temporal`.
    Language,
}
crate::choice::impl_choice!(TeacherKind {
    Complete => "complete", "All three branches (9 transformers)";
    Video => "video", "The video branch: `A<-V`, `L<-V`, then `V-temporal`";
    Audio => "audio", "The audio branch: `V<-A`, `L<-A`, then `A-temporal`";
    Language => "language", "The language branch: `V<-L`, `A<-L`, then `L-temporal`";
});

impl TeacherKind {
    /// The teacher's body: its MulT branches.
    pub fn body(self) -> BodySpec {
        BodySpec::Branches(match self {
            TeacherKind::Complete => Modality::ALL.to_vec(),
            TeacherKind::Video => vec![Modality::Video],
            TeacherKind::Audio => vec![Modality::Audio],
            TeacherKind::Language => vec![Modality::Text],
        })
    }
}

/// The five student-teacher configurations of the paper's section 4.2 (METHOD.md). Written as
/// its number (1..=5) in configs and on the command line.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
#[serde(try_from = "u8", into = "u8")]
pub enum StudentConfig {
    /// MulT's three branches, every stream from video; distils the complete teacher.
    C1,
    /// `V<-V`, `A<-V`, `L<-V`; distils the video branch.
    C2,
    /// `V<-V`, `V<-L`, `A<-L`; distils the language branch.
    C3,
    /// `V<-V`, `V<-A`, `L<-A`; distils the audio branch.
    C4,
    /// `V<-V`, `V<-L`, `V<-A`; distils the complete teacher (the default student).
    C5,
}

impl StudentConfig {
    /// Every configuration, in the paper's order.
    pub const ALL: [StudentConfig; 5] = [StudentConfig::C1, StudentConfig::C2, StudentConfig::C3, StudentConfig::C4, StudentConfig::C5];

    /// The paper's number of the configuration.
    pub fn number(self) -> u8 {
        match self {
            StudentConfig::C1 => 1,
            StudentConfig::C2 => 2,
            StudentConfig::C3 => 3,
            StudentConfig::C4 => 4,
            StudentConfig::C5 => 5,
        }
    }

    /// The student's body.
    pub fn body(self) -> BodySpec {
        use Modality::{Audio as A, Text as L, Video as V};
        let c = |keys, queries| CrossSides { keys, queries };
        match self {
            StudentConfig::C1 => BodySpec::Branches(Modality::ALL.to_vec()),
            StudentConfig::C2 => BodySpec::Flat(vec![c(V, V), c(A, V), c(L, V)]),
            StudentConfig::C3 => BodySpec::Flat(vec![c(V, V), c(V, L), c(A, L)]),
            StudentConfig::C4 => BodySpec::Flat(vec![c(V, V), c(V, A), c(L, A)]),
            StudentConfig::C5 => BodySpec::Flat(vec![c(V, V), c(V, L), c(V, A)]),
        }
    }
}

impl TryFrom<u8> for StudentConfig {
    type Error = String;
    fn try_from(n: u8) -> Result<Self, String> {
        StudentConfig::ALL.into_iter().find(|c| c.number() == n).ok_or_else(|| format!("student configuration {n} does not exist (1..=5)"))
    }
}

impl From<StudentConfig> for u8 {
    fn from(c: StudentConfig) -> u8 {
        c.number()
    }
}

impl std::str::FromStr for StudentConfig {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let n: u8 = s.trim().parse().map_err(|_| format!("student configuration '{s}' is not a number (1..=5)"))?;
        StudentConfig::try_from(n)
    }
}

impl std::fmt::Display for StudentConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.number())
    }
}

/// The teacher `kind` for data of `shape`: one length-keeping Conv1D per modality, then its
/// branches.
pub fn build_teacher(kind: TeacherKind, shape: &DataShape, cfg: &ModelConfig, device: &Device) -> MultimodalNet {
    let d = cfg.d_model;
    let k = cfg.conv_kernel;
    let front = vec![
        StreamConv::new(Modality::Video, shape.video_dim, d, k, shape.video_len, shape.video_len, device),
        StreamConv::new(Modality::Audio, shape.audio_dim, d, k, shape.audio_len, shape.audio_len, device),
        StreamConv::new(Modality::Text, shape.text_dim, d, k, shape.text_len, shape.text_len, device),
    ];
    MultimodalNet::new(front, kind.body(), cfg, device)
}

/// The video-only student `config`: three Conv1Ds from video (`V_S`, `A_S`, `L_S`, their lengths
/// set by `streams`), then its body.
pub fn build_student(config: StudentConfig, streams: StudentStreams, shape: &DataShape, cfg: &ModelConfig, device: &Device) -> MultimodalNet {
    let d = cfg.d_model;
    let k = cfg.conv_kernel;
    let lv = shape.video_len;
    let (la, ll) = match streams {
        StudentStreams::Downsampled => (shape.audio_len.min(lv), shape.text_len.min(lv)),
        StudentStreams::FullLength => (lv, lv),
    };
    let front = vec![
        StreamConv::new(Modality::Video, shape.video_dim, d, k, lv, lv, device),
        StreamConv::new(Modality::Video, shape.video_dim, d, k, lv, la, device),
        StreamConv::new(Modality::Video, shape.video_dim, d, k, lv, ll, device),
    ];
    MultimodalNet::new(front, config.body(), cfg, device)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::test_util::to_vec;
    use burn::tensor::Distribution;

    /// In training each (clip, branch) block is zeroed whole or kept whole and scaled by
    /// 1/(1-p); in evaluation (`valid()`) and on a device without autodiff nothing changes.
    /// Whatever the generator draws, the structure holds; the count of dropped blocks is a
    /// Binomial(192, 0.5) and lies within 5 standard deviations (6.9) of 96.
    #[test]
    fn branch_dropout_zeroes_or_keeps_whole_branches_in_training_only() {
        let train = Device::flex().autodiff();
        let p = 0.5;
        let dropout = DropoutConfig::new(p).init();
        let (batch, width) = (64, 4);
        // Entries in [1, 2]: a kept block has no zero, a dropped one only zeros.
        let lasts: Vec<Tensor<2>> = (0..3).map(|_| Tensor::<2>::random([batch, width], Distribution::Uniform(1.0, 2.0), &train)).collect();
        let dropped_out = drop_branches(lasts.clone(), &dropout);
        let mut dropped = 0;
        for (x, y) in lasts.iter().zip(&dropped_out) {
            let (x, y) = (to_vec(x.clone()), to_vec(y.clone()));
            for row in 0..batch {
                let (xr, yr) = (&x[row * width..(row + 1) * width], &y[row * width..(row + 1) * width]);
                if yr.iter().all(|&v| v == 0.0) {
                    dropped += 1;
                } else {
                    for (a, b) in xr.iter().zip(yr) {
                        assert!((b - a / (1.0 - p as f32)).abs() < 1e-6, "a kept block is scaled by 1/(1-p): {a} -> {b}");
                    }
                }
            }
        }
        assert!((96 - 35..=96 + 35).contains(&dropped), "{dropped} of 192 blocks dropped at p = 0.5");
        let frozen = dropout.valid();
        for (x, y) in lasts.iter().zip(drop_branches(lasts.clone(), &frozen)) {
            assert_eq!(to_vec(x.clone()), to_vec(y), "valid(): no branch dropout");
        }
        let plain: Vec<Tensor<2>> = lasts.iter().map(|x| x.clone().inner()).collect();
        for (x, y) in plain.iter().zip(drop_branches(plain.clone(), &dropout)) {
            assert_eq!(to_vec(x.clone()), to_vec(y), "no autodiff device: no branch dropout");
        }
    }
}
