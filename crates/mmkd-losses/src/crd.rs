//! CRD: Contrastive Representation Distillation (Tian, Krishnan & Isola, ICLR 2020), as the
//! paper applies it (section 4.3) and METHOD.md fixes it.
//!
//! Pieces, following the authors' RepDistiller code (`crd/criterion.py`, `crd/memory.py`):
//! * [`CrdEmbed`]: `Linear(d_in -> 128)` then L2 normalisation; one for the student side and
//!   one for the teacher side, both trained with the student (the teacher network is frozen,
//!   its embedding head is not).
//! * [`CrdMemoryBank`]: the two momentum memory banks of `ContrastMemory`, the negatives, the
//!   normalising constants `Z` and the NCE loss of `ContrastLoss` ([`nce_contrast_loss`]).
//!   For vectors that exist once per sample: the final layer (logits) and the penultimate one.
//! * [`crd_in_batch_loss`]: for vectors that exist many times per sample (per layer, per
//!   attention row), where no bank fits (arithmetic below): the other samples of the batch
//!   are the negatives.
//!
//! # Memory arithmetic (MOSEI: 16,326 training clips, 128-d embeddings, f32 = 4 B)
//! | what a bank would hold | size |
//! | --- | --- |
//! | one per-sample bank: 16,326 x 128 x 4 B | 8,358,912 B = 8.36 MB (7.97 MiB) |
//! | the two banks of one CRD level (student + teacher) | 16.7 MB |
//! | per-row attention-map bank, 500-row maps: 16,326 x 4 layers x 500 rows x 128 x 4 B | 16.7 GB per bank, 33.4 GB per distilled pair (2 banks) |
//! | the same for 50-row maps (language queries) | 1.67 GB per bank, 3.34 GB per pair |
//! | per-time-step post-attention outputs (500 steps x 4 layers) | 16.7 GB per bank, as above |
//!
//! Config 5 distils two pairs (`V<-A`: 500 rows, `V<-L`: 50 rows): 36.8 GB of banks for
//! attention maps; config 1 distils nine pairs. Per-row banks are therefore out of the
//! question on a 128 GB host and on any GPU, and they would also be refreshed only once per
//! epoch per row. A bank of one flattened vector per layer (the whole `[500, 64]`
//! post-attention output as one vector) would take only 16,326 x 4 x 128 x 4 B = 33.4 MB per
//! bank, but its embedding head would be `Linear(32,000 -> 128)`, 4.1 M weights per layer and
//! side, 32.8 M per pair: 48 times the whole 0.675 M student. Hence METHOD.md's rule: banks for
//! the final and penultimate layers, in-batch negatives for per-layer and per-row vectors.
//!
//! Compute and memory of one bank step, batch 64, K = 16,325: the original gathers the
//! `K + 1` bank rows per sample, `[64, 16,326, 128]` = 535 MB per bank per step. This crate
//! computes the scores against the whole bank instead, `[64, 128] x [128, 16,326]` ->
//! `[64, 16,326]` = 4.2 MB, then gathers the `K + 1` scores per sample: the same numbers
//! (a dot product does not care which of the two it gathers first) with 128 times less memory.
//! In-batch, per-row attention maps of one pair (4 layers x 500 rows, batch 64) give
//! `[2000, 64, 128]` = 65.5 MB of embeddings per side and `[2000, 64, 64]` = 32.8 MB of logits.

use std::collections::HashMap;

use burn::config::Config;
use burn::module::Module;
use burn::nn::{Linear, LinearConfig};
use burn::tensor::activation::log_softmax;
use burn::tensor::{Device, IndexingUpdateOp, Int, Tensor, TensorData};

use crate::error::{LossError, check_dims};
use crate::rng::SplitMix64;

/// Embedding width of CRD (`feat_dim` in the original).
pub const CRD_FEAT_DIM: usize = 128;
/// NCE temperature of the original (`nce_t`).
pub const CRD_TEMPERATURE: f64 = 0.07;
/// Memory-bank momentum of the original (`nce_m`).
pub const CRD_MOMENTUM: f64 = 0.5;
/// Negatives per sample in the original (`nce_k`); capped at `n_data - 1` here.
pub const CRD_NCE_K: usize = 16_384;
/// The `eps` of the original `ContrastLoss`, added to the NCE denominators.
pub const NCE_EPS: f64 = 1e-7;
/// Lower clamp on a norm before dividing by it (as `torch.nn.functional.normalize`); the
/// original divides without one, which turns an all-zero vector into NaN.
pub const L2_NORM_EPS: f64 = 1e-12;

/// Divides every vector along the last axis by its L2 norm (clamped at [`L2_NORM_EPS`]).
pub fn l2_normalize<const D: usize>(x: Tensor<D>) -> Tensor<D> {
    let norm = x.clone().square().sum_dim(D - 1).sqrt().clamp_min(L2_NORM_EPS);
    x.div(norm)
}

/// Configuration of a [`CrdEmbed`] head.
#[derive(Config, Debug)]
pub struct CrdEmbedConfig {
    /// Width of the features to embed (e.g. 7 logits, the penultimate width, a map row).
    pub d_input: usize,
    /// Embedding width.
    #[config(default = 128)]
    pub d_output: usize,
}

/// `Linear(d_in -> d_out)` followed by L2 normalisation (`Embed` of the original).
///
/// Burn's default `Linear` initialisation, `U(-1/sqrt(d_in), 1/sqrt(d_in))` for weights and
/// bias, is the same as PyTorch's `nn.Linear`, which the original uses.
#[derive(Module, Debug)]
pub struct CrdEmbed {
    /// The projection; its weight is stored `[d_in, d_out]` (`y = x W + b`).
    pub linear: Linear,
}

impl CrdEmbedConfig {
    /// Builds the head on `device` (the training device: it is trained with the student).
    pub fn init(&self, device: &Device) -> Result<CrdEmbed, LossError> {
        if self.d_input == 0 || self.d_output == 0 {
            return Err(LossError::InvalidConfig(format!("CRD embedding sizes must be positive, got {} -> {}", self.d_input, self.d_output)));
        }
        Ok(CrdEmbed { linear: LinearConfig::new(self.d_input, self.d_output).init(device) })
    }
}

impl CrdEmbed {
    /// Embeds `[..., d_in]` into unit vectors `[..., d_out]`; any leading axes (batch, or
    /// groups x batch for the in-batch loss) pass through.
    pub fn forward<const D: usize>(&self, x: Tensor<D>) -> Result<Tensor<D>, LossError> {
        let [d_in, _] = self.linear.weight.dims();
        let mut expected = x.dims();
        expected[D - 1] = d_in;
        check_dims("CRD embedding input", x.dims(), expected)?;
        Ok(l2_normalize(self.linear.forward(x)))
    }
}

/// The NCE loss of the original `ContrastLoss`, for one direction.
///
/// `probs` is `[batch, 1 + m]`: column 0 holds the positive's `P = exp(s / T) / Z`, the other
/// `m` columns the negatives'. With the noise distribution uniform over `n_data` samples,
/// `P_n = 1 / n_data`:
///
/// ```text
/// log D1 = log(P_pos / (P_pos + m P_n + eps))
/// log D0 = log(m P_n / (P_neg + m P_n + eps))
/// loss   = -(sum log D1 + sum log D0) / batch
/// ```
///
/// with `eps` = [`NCE_EPS`]. Returns a `[1]` tensor.
pub fn nce_contrast_loss(probs: Tensor<2>, n_data: usize) -> Result<Tensor<1>, LossError> {
    let [batch, cols] = probs.dims();
    if batch == 0 {
        return Err(LossError::Empty("the batch given to the NCE loss"));
    }
    if cols < 2 {
        return Err(LossError::ShapeMismatch { what: "NCE scores (a positive and at least one negative per row)", expected: vec![batch, 2], got: vec![batch, cols] });
    }
    if n_data == 0 {
        return Err(LossError::InvalidConfig("the NCE noise distribution needs n_data > 0".into()));
    }
    let m_pn = (cols - 1) as f64 / n_data as f64;
    let positive = probs.clone().narrow(1, 0, 1);
    let log_d1 = positive.clone().div(positive.add_scalar(m_pn + NCE_EPS)).log();
    let negatives = probs.narrow(1, 1, cols - 1);
    // log(m P_n / (P_neg + m P_n + eps)) = log(m P_n) - log(P_neg + m P_n + eps).
    let log_d0 = negatives.add_scalar(m_pn + NCE_EPS).log().neg().add_scalar(m_pn.ln());
    Ok((log_d1.sum() + log_d0.sum()).neg().div_scalar(batch as f64))
}

/// Settings of a [`CrdMemoryBank`]; the defaults are the original's.
#[derive(Config, Debug, PartialEq)]
pub struct CrdMemoryBankConfig {
    /// Number of training samples (rows of each bank); dataset indices must be below it.
    pub n_data: usize,
    /// Embedding width.
    #[config(default = 128)]
    pub dim: usize,
    /// Requested negatives per sample; the bank uses `min(nce_k, n_data - 1)`.
    #[config(default = 16384)]
    pub nce_k: usize,
    /// NCE temperature.
    #[config(default = 0.07)]
    pub temperature: f64,
    /// Weight of the old bank row in the update (`new = m * old + (1 - m) * embedding`).
    #[config(default = 0.5)]
    pub momentum: f64,
    /// Seed of the bank's initial values and of the negative sampling.
    #[config(default = 0)]
    pub seed: u64,
}

/// The two memory banks of CRD (`ContrastMemory`) with their sampler and constants.
///
/// Not a `Module`: the banks are state, not parameters (no gradient, no optimiser), so they
/// live on the device without autodiff and are saved through [`CrdMemoryBank::to_state`].
///
/// Per training batch, [`CrdMemoryBank::loss`]:
/// 1. draws `K = min(nce_k, n_data - 1)` negatives per sample, i.i.d. uniform over the
///    training set without the sample itself (with replacement, as the original's alias
///    sampler; K can reach `n_data - 1` so drawing without replacement would just enumerate);
/// 2. scores the student embedding against the teacher bank (`out_v1`) and the teacher
///    embedding against the student bank (`out_v2`): `exp(v . bank_row / T)`, column 0 being
///    the sample's own (not yet updated) row;
/// 3. on the first call only, fixes `Z = mean(exp scores) * n_data` for each direction;
/// 4. returns `nce(out_v1 / Z_v1) + nce(out_v2 / Z_v2)`;
/// 5. moves each sample's rows towards its detached embeddings with momentum and
///    renormalises them.
///
/// Embeddings must be L2-normalised (the output of [`CrdEmbed`]); the scores are then bounded
/// by `|v| |row| / T`, about 14 for unit rows, so `exp` cannot overflow. Use it on training
/// batches only: validation samples have no bank rows.
#[derive(Debug)]
pub struct CrdMemoryBank {
    config: CrdMemoryBankConfig,
    /// `memory_v1`: student embeddings, `[n_data, dim]`, without autodiff.
    student_bank: Tensor<2>,
    /// `memory_v2`: teacher embeddings, `[n_data, dim]`, without autodiff.
    teacher_bank: Tensor<2>,
    /// `Z_v1`: normaliser of the student embedding against the teacher bank.
    z_student: Option<f64>,
    /// `Z_v2`: normaliser of the teacher embedding against the student bank.
    z_teacher: Option<f64>,
    rng: SplitMix64,
}

/// Plain-data snapshot of a [`CrdMemoryBank`] for checkpoints (banks row-major `[n_data, dim]`).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct CrdMemoryState {
    /// The bank's settings (flattened: the JSON keeps `n_data`, `dim`, ... at the top level).
    /// Its seed is the one the bank was created with; `rng_state` continues the stream.
    #[serde(flatten)]
    pub config: CrdMemoryBankConfig,
    /// The sampler's full state after the last draw.
    pub rng_state: u64,
    /// `Z_v1` (student embedding vs teacher bank), `None` before the first batch.
    pub z_student: Option<f64>,
    /// `Z_v2` (teacher embedding vs student bank), `None` before the first batch.
    pub z_teacher: Option<f64>,
    /// Student bank (`memory_v1`), `n_data * dim` values.
    pub student_bank: Vec<f32>,
    /// Teacher bank (`memory_v2`), `n_data * dim` values.
    pub teacher_bank: Vec<f32>,
}

impl CrdMemoryBankConfig {
    fn validate(&self) -> Result<(), LossError> {
        let bad = |msg: String| Err(LossError::InvalidConfig(msg));
        if self.n_data < 2 {
            return bad(format!("CRD needs at least 2 training samples (one positive, one negative), got {}", self.n_data));
        }
        if self.dim == 0 || self.nce_k == 0 {
            return bad(format!("CRD dim and nce_k must be positive, got {} and {}", self.dim, self.nce_k));
        }
        if !(self.temperature.is_finite() && self.temperature > 0.0) {
            return bad(format!("CRD temperature must be positive, got {}", self.temperature));
        }
        if !(0.0..=1.0).contains(&self.momentum) {
            return bad(format!("CRD momentum must lie in [0, 1], got {}", self.momentum));
        }
        Ok(())
    }
}

impl CrdMemoryBank {
    /// Creates both banks, uniform in `[-stdv, stdv]` with `stdv = 1 / sqrt(dim / 3)` as the
    /// original (rows then have unit expected squared norm), from the seeded generator.
    /// `device` may have autodiff enabled; the banks are stored without it.
    pub fn new(config: &CrdMemoryBankConfig, device: &Device) -> Result<Self, LossError> {
        config.validate()?;
        let mut rng = SplitMix64::new(config.seed);
        let stdv = (1.0 / (config.dim as f64 / 3.0).sqrt()) as f32;
        let len = config.n_data * config.dim;
        let mut draw = || -> Vec<f32> { (0..len).map(|_| rng.next_f32() * 2.0 * stdv - stdv).collect() };
        let student = draw();
        let teacher = draw();
        let bank_device = device.clone().without_autodiff();
        let shape = [config.n_data, config.dim];
        Ok(Self {
            config: config.clone(),
            student_bank: Tensor::from_data(TensorData::new(student, shape), &bank_device),
            teacher_bank: Tensor::from_data(TensorData::new(teacher, shape), &bank_device),
            z_student: None,
            z_teacher: None,
            rng,
        })
    }

    /// Rows per bank.
    pub fn n_data(&self) -> usize {
        self.config.n_data
    }

    /// Negatives drawn per sample: `min(nce_k, n_data - 1)` (16,325 for MOSEI's 16,326 clips,
    /// where the original's 16,384 is more than the training set holds).
    pub fn n_negatives(&self) -> usize {
        self.config.nce_k.min(self.config.n_data - 1)
    }

    /// `(Z_v1, Z_v2)`: fixed by the first batch, `None` before it.
    pub fn normalizers(&self) -> (Option<f64>, Option<f64>) {
        (self.z_student, self.z_teacher)
    }

    /// The student bank (`memory_v1`), `[n_data, dim]`.
    pub fn student_bank(&self) -> Tensor<2> {
        self.student_bank.clone()
    }

    /// The teacher bank (`memory_v2`), `[n_data, dim]`.
    pub fn teacher_bank(&self) -> Tensor<2> {
        self.teacher_bank.clone()
    }

    fn check_indices(&self, indices: &[usize]) -> Result<(), LossError> {
        match indices.iter().find(|&&i| i >= self.config.n_data) {
            Some(&index) => Err(LossError::IndexOutOfRange { index, n_data: self.config.n_data }),
            None => Ok(()),
        }
    }

    /// Draws the contrast set of a batch: row-major `[batch, 1 + K]`, column 0 the positive
    /// (the sample's own dataset index), then `K` negatives uniform over the other indices.
    pub fn sample_contrast_indices(&mut self, positives: &[usize]) -> Result<Vec<usize>, LossError> {
        self.check_indices(positives)?;
        let k = self.n_negatives();
        let others = (self.config.n_data - 1) as u64;
        let mut out = Vec::with_capacity(positives.len() * (k + 1));
        for &positive in positives {
            out.push(positive);
            for _ in 0..k {
                // Uniform over 0..n-1, then skip the positive: uniform over the other n - 1.
                let r = self.rng.below(others) as usize;
                out.push(if r >= positive { r + 1 } else { r });
            }
        }
        Ok(out)
    }

    /// The training loss of one batch: draws negatives, fixes `Z` on the first call, returns
    /// `nce(student vs teacher bank) + nce(teacher vs student bank)` as `[1]`, then updates
    /// both banks at `indices`.
    ///
    /// `student` and `teacher` are the `[batch, dim]` outputs of the two [`CrdEmbed`] heads
    /// (both keep their graphs: both heads train); `indices` are the samples' dataset indices.
    pub fn loss(&mut self, student: Tensor<2>, teacher: Tensor<2>, indices: &[usize]) -> Result<Tensor<1>, LossError> {
        // Validate before drawing so a rejected batch leaves the sampler untouched.
        self.check_batch(&student, &teacher, indices.len())?;
        let contrast = self.sample_contrast_indices(indices)?;
        self.loss_with_contrast_indices(student, teacher, &contrast)
    }

    /// As [`CrdMemoryBank::loss`], with the contrast set given (row-major `[batch, 1 + m]`,
    /// column 0 the positives), like the original's `contrast_idx` argument. The number of
    /// negatives `m` is `contrast.len() / batch - 1` and sets `m` in the NCE formula.
    pub fn loss_with_contrast_indices(&mut self, student: Tensor<2>, teacher: Tensor<2>, contrast: &[usize]) -> Result<Tensor<1>, LossError> {
        let batch = self.check_batch(&student, &teacher, None)?;
        if !contrast.len().is_multiple_of(batch) || contrast.len() / batch < 2 {
            return Err(LossError::ShapeMismatch {
                what: "CRD contrast indices (batch x (1 positive + at least 1 negative))",
                expected: vec![batch, self.n_negatives() + 1],
                got: vec![contrast.len()],
            });
        }
        self.check_indices(contrast)?;
        let cols = contrast.len() / batch;
        let positives: Vec<usize> = contrast.chunks(cols).map(|row| row[0]).collect();

        let device = student.device();
        let as_i64: Vec<i64> = contrast.iter().map(|&i| i as i64).collect();
        let contrast_t = Tensor::<2, Int>::from_data(TensorData::new(as_i64, [batch, cols]), &device);

        // out_v1: student embedding against the teacher bank; out_v2: the reverse. The banks
        // carry no autodiff, so they act as constants while the embeddings keep their graphs.
        let out_student = self.exp_scores(student.clone(), &self.teacher_bank, &contrast_t);
        let out_teacher = self.exp_scores(teacher.clone(), &self.student_bank, &contrast_t);

        let n = self.config.n_data as f64;
        let z_student = match self.z_student {
            Some(z) => z,
            None => read_mean(&out_student)? * n,
        };
        let z_teacher = match self.z_teacher {
            Some(z) => z,
            None => read_mean(&out_teacher)? * n,
        };
        let loss = nce_contrast_loss(out_student.div_scalar(z_student), self.config.n_data)? + nce_contrast_loss(out_teacher.div_scalar(z_teacher), self.config.n_data)?;
        // Commit state only once everything that can fail has succeeded.
        self.z_student = Some(z_student);
        self.z_teacher = Some(z_teacher);
        self.update(student, teacher, &positives);
        Ok(loss)
    }

    /// Checks `[batch, dim]` on both sides (and the index count, if given); returns `batch`.
    fn check_batch(&self, student: &Tensor<2>, teacher: &Tensor<2>, n_indices: impl Into<Option<usize>>) -> Result<usize, LossError> {
        let [batch, _] = student.dims();
        if batch == 0 {
            return Err(LossError::Empty("the CRD batch"));
        }
        check_dims("CRD student embedding", student.dims(), [batch, self.config.dim])?;
        check_dims("CRD teacher embedding", teacher.dims(), [batch, self.config.dim])?;
        if let Some(n) = n_indices.into() {
            check_dims("CRD dataset indices (one per sample)", [n], [batch])?;
        }
        Ok(batch)
    }

    /// `exp(v_b . bank[contrast[b, k]] / T)`, `[batch, cols]`: scores against the whole bank,
    /// then the gather (see the module docs for why this order).
    fn exp_scores(&self, v: Tensor<2>, bank: &Tensor<2>, contrast: &Tensor<2, Int>) -> Tensor<2> {
        v.matmul(bank.clone().transpose()).gather(1, contrast.clone()).div_scalar(self.config.temperature).exp()
    }

    /// Momentum update of the positives' rows with the detached embeddings, then
    /// renormalisation (`ContrastMemory`'s `index_copy_` step). If an index repeats within the
    /// batch, its last occurrence wins, as sequential `index_copy_` would give.
    fn update(&mut self, student: Tensor<2>, teacher: Tensor<2>, positives: &[usize]) {
        let mut last_position: HashMap<usize, usize> = HashMap::with_capacity(positives.len());
        for (position, &index) in positives.iter().enumerate() {
            last_position.insert(index, position);
        }
        let mut pairs: Vec<(usize, usize)> = last_position.into_iter().collect();
        pairs.sort_unstable_by_key(|&(_, position)| position);

        let device = self.student_bank.device();
        let int_tensor = |v: Vec<i64>| {
            let len = v.len();
            Tensor::<1, Int>::from_data(TensorData::new(v, [len]), &device)
        };
        let rows = int_tensor(pairs.iter().map(|&(i, _)| i as i64).collect());
        let positions = int_tensor(pairs.iter().map(|&(_, p)| p as i64).collect());

        let momentum = self.config.momentum;
        let blend = |bank: Tensor<2>, embedding: Tensor<2>| {
            // `without_autodiff` drops the graph: the bank only stores values.
            let fresh = embedding.without_autodiff().select(0, positions.clone());
            let old = bank.clone().select(0, rows.clone());
            let mixed = l2_normalize(old.mul_scalar(momentum) + fresh.mul_scalar(1.0 - momentum));
            bank.select_assign(0, rows.clone(), mixed, IndexingUpdateOp::Assign)
        };
        self.student_bank = blend(self.student_bank.clone(), student);
        self.teacher_bank = blend(self.teacher_bank.clone(), teacher);
    }

    /// Copies everything needed to resume (banks, `Z`, sampler state) to the host.
    pub fn to_state(&self) -> Result<CrdMemoryState, LossError> {
        let read = |t: &Tensor<2>| t.try_to_vec_as::<f32>().map_err(|e| LossError::Read(e.to_string()));
        Ok(CrdMemoryState {
            config: self.config.clone(),
            rng_state: self.rng.state(),
            z_student: self.z_student,
            z_teacher: self.z_teacher,
            student_bank: read(&self.student_bank)?,
            teacher_bank: read(&self.teacher_bank)?,
        })
    }

    /// Rebuilds a bank from [`CrdMemoryBank::to_state`]'s snapshot on `device`.
    pub fn from_state(state: CrdMemoryState, device: &Device) -> Result<Self, LossError> {
        let config = state.config;
        config.validate()?;
        let len = config.n_data * config.dim;
        for (what, bank) in [("saved CRD student bank", &state.student_bank), ("saved CRD teacher bank", &state.teacher_bank)] {
            check_dims(what, [bank.len()], [len])?;
        }
        for z in [state.z_student, state.z_teacher].into_iter().flatten() {
            if !(z.is_finite() && z > 0.0) {
                return Err(LossError::InvalidConfig(format!("saved CRD normaliser Z must be finite and positive, got {z}")));
            }
        }
        let bank_device = device.clone().without_autodiff();
        let shape = [config.n_data, config.dim];
        Ok(Self {
            config,
            student_bank: Tensor::from_data(TensorData::new(state.student_bank, shape), &bank_device),
            teacher_bank: Tensor::from_data(TensorData::new(state.teacher_bank, shape), &bank_device),
            z_student: state.z_student,
            z_teacher: state.z_teacher,
            rng: SplitMix64::new(state.rng_state),
        })
    }
}

/// The mean of a tensor, read to the host (sets `Z` once per run).
fn read_mean(t: &Tensor<2>) -> Result<f64, LossError> {
    t.clone().mean().try_into_scalar::<f32>().map(f64::from).map_err(|e| LossError::Read(e.to_string()))
}

/// CRD with in-batch negatives for grouped vectors: a symmetric InfoNCE per group.
///
/// `student` and `teacher` are `[G, B, D]`, already embedded and L2-normalised
/// ([`CrdEmbed::forward`] accepts the rank-3 input); `G` flattens whatever the vectors are
/// per sample (layers x pairs for post-attention outputs, layers x rows for attention maps).
/// Within a group, sample `b`'s teacher vector is the positive of its student vector and the
/// other `B - 1` teacher vectors are the negatives, and symmetrically. With
/// `L_g = S_g T_g^T / temperature` (`[G, B, B]`, one batched matmul):
///
/// ```text
/// loss = -(1 / (G B)) sum_g sum_b [ log softmax_row(L_g)[b, b] + log softmax_col(L_g)[b, b] ]
/// ```
///
/// The two terms mirror CRD's two directions (student anchor against teacher candidates, as
/// `out_v1`; teacher anchor against student candidates, as `out_v2`) and are summed like
/// `s_loss + t_loss`. Returns `[1]`; a batch of one has no negatives and gives 0.
///
/// Why InfoNCE and not the bank's NCE form with `P_n = 1/B`, `m = B - 1`: NCE needs `Z`
/// because over a 16k-sample bank the partition function is too costly to sum per sample.
/// Over a batch it is the sum of `B` exponentials that the matmul has already produced, so
/// the softmax is the exact quantity NCE estimates. A `Z` frozen from the first batch would
/// instead need state per group (2000 groups for per-row maps) and would go stale as both
/// embedding heads move, with only `B - 1 = 63` negatives to estimate it from. InfoNCE
/// (van den Oord et al. 2018; the softmax variant CRD's paper also discusses) keeps a
/// mutual-information bound per direction, `I(T; S) >= log(B) - loss_direction`, is
/// stateless (nothing to checkpoint) and well conditioned: with unit vectors the logits lie
/// in `[-1/T, 1/T]` = `[-14.3, 14.3]`, and `log_softmax` is stable.
pub fn crd_in_batch_loss(student: Tensor<3>, teacher: Tensor<3>, temperature: f64) -> Result<Tensor<1>, LossError> {
    let [groups, batch, dim] = student.dims();
    check_dims("in-batch CRD teacher embeddings", teacher.dims(), [groups, batch, dim])?;
    if groups == 0 || batch == 0 || dim == 0 {
        return Err(LossError::Empty("the in-batch CRD input"));
    }
    if !(temperature.is_finite() && temperature > 0.0) {
        return Err(LossError::InvalidConfig(format!("CRD temperature must be positive, got {temperature}")));
    }
    let device = student.device();
    // logits[g, i, j] = s_gi . t_gj / T.
    let logits = student.matmul(teacher.swap_dims(1, 2)).div_scalar(temperature);
    // Picks the diagonal (the positives) of every group by broadcasting over G.
    let diagonal = Tensor::<2>::eye(batch, &device).unsqueeze::<3>();
    let student_anchor = log_softmax(logits.clone(), 2).mul(diagonal.clone()).sum();
    let teacher_anchor = log_softmax(logits, 1).mul(diagonal).sum();
    Ok((student_anchor + teacher_anchor).neg().div_scalar((groups * batch) as f64))
}

#[cfg(test)]
mod tests;
