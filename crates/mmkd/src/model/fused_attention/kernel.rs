//! The fused attention kernels on plain `f32` slices: forward (output and per-row softmax
//! statistics) and backward (gradients of query, key and value), flash-attention style.
//!
//! Neither pass ever holds a `[Lq, Lk]` score matrix: each query row's scores live in one
//! `Lk`-long scratch row, and the backward recomputes them from the saved row statistics
//! (max and sum of the softmax), so training keeps `O(B H Lq)` numbers per attention instead of
//! `O(B H Lq Lk)`. Work is split over `(batch, head)` pairs with rayon.
//!
//! Semantics are those of the unfused path in `attention.rs`, bit for bit where it matters:
//! scores `scale * q.k`, forbidden keys set to -1e9 (so a fully masked row is uniform, as there),
//! a softmax through its row maximum, and no gradient through a forbidden score.
//!
//! Layout: queries `[B, Lq, H, dh]`, keys and values `[B, Lk, H, dh]` (what the projections
//! give before heads are split, so no transpose is needed), output `[B, Lq, H, dh]`, statistics
//! `[B, H, Lq, 4]` (row max and row sum of `exp(s - max)`, then the same at the map's
//! temperature, `STATS`).

use rayon::prelude::*;

/// The score a forbidden key gets (the unfused path's `mask_fill` value).
pub const MASKED_SCORE: f32 = -1.0e9;

/// Sizes of one fused attention call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Dims {
    /// Batch size.
    pub batch: usize,
    /// Query steps.
    pub lq: usize,
    /// Key (and value) steps.
    pub lk: usize,
    /// Heads.
    pub heads: usize,
    /// Width of one head.
    pub dh: usize,
}

/// A boolean mask (true, stored as a non-zero byte, = forbidden) broadcast over batch and query
/// rows: the row of sample `b`, query `i` starts at `b * batch_step + i * row_step`.
#[derive(Clone, Copy, Debug)]
pub struct MaskView<'a> {
    /// The mask's bytes, contiguous.
    pub data: &'a [u8],
    /// Elements between samples (0 when the mask has batch size 1).
    pub batch_step: usize,
    /// Elements between query rows (0 when the mask has one row for all queries).
    pub row_step: usize,
}

impl<'a> MaskView<'a> {
    fn row(&self, b: usize, i: usize, lk: usize) -> &'a [u8] {
        let start = b * self.batch_step + i * self.row_step;
        &self.data[start..start + lk]
    }
}

/// A dropout mask on the probabilities (non-zero byte = kept), `[B, H, Lq, Lk]`, and the
/// scale `1 / (1 - p)` kept values get: the output is `(P * M / (1 - p)) V`, as Burn's
/// `Dropout` on the unfused path gives with the same mask.
#[derive(Clone, Copy, Debug)]
pub struct DropView<'a> {
    /// The mask's bytes, contiguous.
    pub keep: &'a [u8],
    /// `1 / (1 - p)`.
    pub scale: f32,
}

impl<'a> DropView<'a> {
    fn row(&self, d: &Dims, b: usize, h: usize, i: usize) -> &'a [u8] {
        let start = ((b * d.heads + h) * d.lq + i) * d.lk;
        &self.keep[start..start + d.lk]
    }
}

/// What the backward pass returns, in the layouts of the inputs.
pub struct Backward {
    /// `[B, Lq, H, dh]`.
    pub d_query: Vec<f32>,
    /// `[B, Lk, H, dh]`.
    pub d_key: Vec<f32>,
    /// `[B, Lk, H, dh]`.
    pub d_value: Vec<f32>,
}

/// `exp(x)` written so a loop over a row vectorises: Cephes' polynomial after a range reduction
/// by `ln 2`; round-to-nearest by adding 1.5 * 2^23, whose low mantissa bits then hold the
/// integer (SSE2 has no vector round, and no float-to-int conversion is needed). Relative error
/// about 2e-7; below -87.3 it returns exactly 0, as `f32::exp` underflows there (the masked
/// scores' `exp(-1e9 - max)` is exactly 0 either way).
#[inline(always)]
fn exp_approx(x: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    const C1: f32 = 0.693_359_4;
    const C2: f32 = -2.121_944_4e-4;
    const ROUND: f32 = 12_582_912.0; // 1.5 * 2^23
    let xc = x.clamp(-87.3, 88.3);
    let shifted = xc * LOG2E + ROUND;
    let n = shifted - ROUND;
    let n_int = shifted.to_bits().wrapping_sub(ROUND.to_bits()) as i32;
    let r = xc - n * C1 - n * C2;
    let mut p = 1.987_569_1e-4_f32;
    p = p * r + 1.398_199_9e-3;
    p = p * r + 8.333_452e-3;
    p = p * r + 4.166_579_6e-2;
    p = p * r + 1.666_666_5e-1;
    p = p * r + 5e-1;
    let y = p * r * r + r + 1.0;
    let scale = f32::from_bits((n_int.wrapping_add(127) as u32) << 23);
    if x < -87.3 { 0.0 } else { y * scale }
}

/// `exp(s - max)` over a row in place, returning the sum (two passes: the map vectorises, the
/// sum keeps eight partial sums).
#[inline(always)]
fn exp_row_sum(row: &mut [f32], max: f32) -> f32 {
    for s in row.iter_mut() {
        *s = exp_approx(*s - max);
    }
    sum(row)
}

#[inline(always)]
fn sum(a: &[f32]) -> f32 {
    let mut acc = [0.0f32; 8];
    let mut chunks = a.chunks_exact(8);
    for c in &mut chunks {
        for l in 0..8 {
            acc[l] += c[l];
        }
    }
    acc.iter().sum::<f32>() + chunks.remainder().iter().sum::<f32>()
}

#[inline(always)]
fn axpy(y: &mut [f32], a: f32, x: &[f32]) {
    for (y, x) in y.iter_mut().zip(x) {
        *y += a * x;
    }
}

/// `out = sum_j w[j] * rows[j]` for `rows` = `[w.len(), out.len()]`: one `dh`-wide multiply-add
/// per key. LLVM does not vectorise this across the head width on its own (it sees eight
/// loop-carried float chains), so head widths that are multiples of 8 up to 32 (every preset:
/// 8 and 16 at `paper`) take AVX2 + FMA intrinsics where the processor has them.
#[inline(always)]
fn weighted_rows_sum(w: &[f32], rows: &[f32], out: &mut [f32]) {
    let dh = out.len();
    assert!(rows.len() >= w.len() * dh, "weighted_rows_sum: rows too short");
    #[cfg(target_arch = "x86_64")]
    if dh.is_multiple_of(8) && dh <= 32 && has_avx2_fma() {
        // SAFETY: AVX2 and FMA are present; the row length was checked above.
        unsafe { weighted_rows_sum_avx2(w, rows, out) };
        return;
    }
    out.fill(0.0);
    for (&wj, row) in w.iter().zip(rows.chunks_exact(dh)) {
        axpy(out, wj, row);
    }
}

/// `weighted_rows_sum` for `dh` in {8, 16, 24, 32}: up to four 8-lane accumulators.
///
/// # Safety
/// The processor must have AVX2 and FMA, and `rows.len() >= w.len() * out.len()`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn weighted_rows_sum_avx2(w: &[f32], rows: &[f32], out: &mut [f32]) {
    use std::arch::x86_64::*;
    let dh = out.len();
    let lanes = dh / 8;
    // Two keys per iteration into separate accumulators: an FMA's latency (4 cycles) would
    // otherwise bound a single chain per lane.
    let mut even = [_mm256_setzero_ps(); 4];
    let mut odd = [_mm256_setzero_ps(); 4];
    let base = rows.as_ptr();
    let pairs = w.len() / 2;
    for jp in 0..pairs {
        let (j0, j1) = (2 * jp, 2 * jp + 1);
        let (w0, w1) = (_mm256_set1_ps(w[j0]), _mm256_set1_ps(w[j1]));
        for l in 0..lanes {
            // SAFETY: j1 * dh + l * 8 + 8 <= w.len() * dh <= rows.len().
            unsafe {
                even[l] = _mm256_fmadd_ps(w0, _mm256_loadu_ps(base.add(j0 * dh + l * 8)), even[l]);
                odd[l] = _mm256_fmadd_ps(w1, _mm256_loadu_ps(base.add(j1 * dh + l * 8)), odd[l]);
            }
        }
    }
    if w.len() % 2 == 1 {
        let j = w.len() - 1;
        let wv = _mm256_set1_ps(w[j]);
        for (l, acc) in even[..lanes].iter_mut().enumerate() {
            // SAFETY: as above.
            *acc = _mm256_fmadd_ps(wv, unsafe { _mm256_loadu_ps(base.add(j * dh + l * 8)) }, *acc);
        }
    }
    for l in 0..lanes {
        // SAFETY: l * 8 + 8 <= dh = out.len().
        unsafe { _mm256_storeu_ps(out.as_mut_ptr().add(l * 8), _mm256_add_ps(even[l], odd[l])) };
    }
}

#[inline(always)]
fn row_max(row: &[f32]) -> f32 {
    let mut acc = [f32::NEG_INFINITY; 8];
    let mut chunks = row.chunks_exact(8);
    for c in &mut chunks {
        for l in 0..8 {
            acc[l] = if c[l] > acc[l] { c[l] } else { acc[l] };
        }
    }
    chunks.remainder().iter().chain(&acc).fold(f32::NEG_INFINITY, |m, &s| if s > m { s } else { m })
}

/// Rows of head `h` of sample `b` from a `[B, L, H, dh]` buffer, as `[L, dh]`.
fn gather_rows(src: &[f32], d: &Dims, l: usize, b: usize, h: usize) -> Vec<f32> {
    let mut out = Vec::with_capacity(l * d.dh);
    for t in 0..l {
        let at = ((b * l + t) * d.heads + h) * d.dh;
        out.extend_from_slice(&src[at..at + d.dh]);
    }
    out
}

/// Head `h` of sample `b` from a `[B, L, H, dh]` buffer, transposed to `[dh, L]` so loops over
/// keys run along contiguous memory.
fn gather_transposed(src: &[f32], d: &Dims, l: usize, b: usize, h: usize) -> Vec<f32> {
    let mut out = vec![0.0f32; d.dh * l];
    for t in 0..l {
        let at = ((b * l + t) * d.heads + h) * d.dh;
        for c in 0..d.dh {
            out[c * l + t] = src[at + c];
        }
    }
    out
}

/// How many leading keys of a query row can get weight: one past the last allowed key. Keys
/// after it are forbidden, get exactly zero probability (`exp(-1e9 - max)` underflows to 0) and
/// no gradient, so skipping them changes nothing; MulT's causal mask forbids about half of a
/// square map this way. A fully masked row keeps every key (it is uniform, as in the unfused
/// path).
#[inline(always)]
fn row_extent(mask_row: Option<&[u8]>, lk: usize) -> usize {
    match mask_row.and_then(|m| m.iter().rposition(|&x| x == 0)) {
        Some(last) => last + 1,
        None => lk,
    }
}

/// The scaled, masked scores of one query row (already multiplied by the scale) against the
/// first `scores.len()` keys. The mask is applied arithmetically (`s * (1 - m) + m * -1e9`,
/// exact for m in {0, 1} and finite s), which vectorises where a select becomes masked stores.
#[inline(always)]
fn scores_row(scores: &mut [f32], q_scaled: &[f32], kt: &[f32], lk: usize, mask_row: Option<&[u8]>) {
    let end = scores.len();
    scores.fill(0.0);
    for (c, &qc) in q_scaled.iter().enumerate() {
        axpy(scores, qc, &kt[c * lk..c * lk + end]);
    }
    if let Some(m) = mask_row {
        for (s, &m) in scores.iter_mut().zip(&m[..end]) {
            let m = m as f32;
            *s = *s * (1.0 - m) + m * MASKED_SCORE;
        }
    }
}

/// The head-averaged attention map a call also returns, `mean_h softmax(s_h / t)` (eq. 10-11),
/// as the unfused path's `Probe::map_temperature` does.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct MapSpec {
    /// The softmax temperature t of the map (the attention itself when t = 1).
    pub temperature: f32,
}

impl MapSpec {
    /// Whether the map needs its own softmax (t != 1, the unfused path's test).
    fn tempered(&self) -> bool {
        (self.temperature - 1.0).abs() >= f32::EPSILON
    }
}

/// Statistics kept per query row: max and sum of the attention's softmax, then of the map's
/// tempered softmax (equal to the first two when there is no tempered map).
const STATS: usize = 4;

/// Forward of one (batch, head) pair: its output rows `[Lq, dh]` and statistics `[Lq, 4]`; with
/// a map, adds `weight * softmax(s / t)` of every row into `map` (`[Lq, Lk]`, this sample's).
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn forward_pair(
    q: &[f32],
    k: &[f32],
    v: &[f32],
    mask: Option<MaskView>,
    drop: Option<DropView>,
    scale: f32,
    map: Option<(MapSpec, &mut [f32])>,
    weight: f32,
    d: &Dims,
    b: usize,
    h: usize,
) -> (Vec<f32>, Vec<f32>) {
    let (lq, lk, dh) = (d.lq, d.lk, d.dh);
    let qb = gather_rows(q, d, lq, b, h);
    let kt = gather_transposed(k, d, lk, b, h);
    let vb = gather_rows(v, d, lk, b, h);
    let mut out = vec![0.0f32; lq * dh];
    let mut stats = vec![0.0f32; lq * STATS];
    let mut scores_buf = vec![0.0f32; lk];
    let mut tempered_buf = vec![0.0f32; if map.is_some() { lk } else { 0 }];
    let mut dropped_buf = vec![0.0f32; if drop.is_some() { lk } else { 0 }];
    let mut q_scaled = vec![0.0f32; dh];
    let mut map = map;
    for i in 0..lq {
        for (qs, &qv) in q_scaled.iter_mut().zip(&qb[i * dh..(i + 1) * dh]) {
            *qs = qv * scale;
        }
        let mask_row = mask.map(|m| m.row(b, i, lk));
        let end = row_extent(mask_row, lk);
        let scores = &mut scores_buf[..end];
        scores_row(scores, &q_scaled, &kt, lk, mask_row);
        let mut tempered_stats = None;
        if let Some((spec, map_b)) = map.as_mut()
            && spec.tempered()
        {
            let inv_t = 1.0 / spec.temperature;
            let t = &mut tempered_buf[..end];
            for (t, &s) in t.iter_mut().zip(scores.iter()) {
                *t = s * inv_t;
            }
            let max_t = row_max(t);
            let sum_t = exp_row_sum(t, max_t);
            axpy(&mut map_b[i * lk..i * lk + end], weight / sum_t, t);
            tempered_stats = Some((max_t, sum_t));
        }
        let max = row_max(scores);
        let sum = exp_row_sum(scores, max);
        if let Some((spec, map_b)) = map.as_mut()
            && !spec.tempered()
        {
            axpy(&mut map_b[i * lk..i * lk + end], weight / sum, scores);
        }
        let mut inv = 1.0 / sum;
        let row = &mut out[i * dh..(i + 1) * dh];
        match drop {
            None => weighted_rows_sum(scores, &vb[..end * dh], row),
            Some(dv) => {
                let kept = &mut dropped_buf[..end];
                for ((x, &s), &m) in kept.iter_mut().zip(scores.iter()).zip(&dv.row(d, b, h, i)[..end]) {
                    *x = s * m as f32;
                }
                weighted_rows_sum(kept, &vb[..end * dh], row);
                inv *= dv.scale;
            }
        }
        for o in row.iter_mut() {
            *o *= inv;
        }
        let (max_t, sum_t) = tempered_stats.unwrap_or((max, sum));
        stats[i * STATS..(i + 1) * STATS].copy_from_slice(&[max, sum, max_t, sum_t]);
    }
    (out, stats)
}

/// Backward of one (batch, head) pair: `dQ` rows `[Lq, dh]`, `dK` and `dV` transposed `[dh, Lk]`.
/// With a map, `map` holds the gradient of this sample's map (`[Lq, Lk]`) and `weight` the
/// head's share of it (1 / heads).
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn backward_pair(
    q: &[f32],
    k: &[f32],
    v: &[f32],
    out: &[f32],
    stats: &[f32],
    grad: &[f32],
    mask: Option<MaskView>,
    drop: Option<DropView>,
    scale: f32,
    map: Option<(MapSpec, &[f32])>,
    weight: f32,
    d: &Dims,
    b: usize,
    h: usize,
) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    let (lq, lk, dh) = (d.lq, d.lk, d.dh);
    let qb = gather_rows(q, d, lq, b, h);
    let ob = gather_rows(out, d, lq, b, h);
    let gb = gather_rows(grad, d, lq, b, h);
    let kt = gather_transposed(k, d, lk, b, h);
    let kb = gather_rows(k, d, lk, b, h);
    let vt = gather_transposed(v, d, lk, b, h);
    let st = &stats[(b * d.heads + h) * lq * STATS..(b * d.heads + h + 1) * lq * STATS];
    let mut dq = vec![0.0f32; lq * dh];
    let mut dkt = vec![0.0f32; dh * lk];
    let mut dvt = vec![0.0f32; dh * lk];
    let mut p_buf = vec![0.0f32; lk];
    let mut ds_buf = vec![0.0f32; lk];
    let mut tempered_buf = vec![0.0f32; if map.is_some() { lk } else { 0 }];
    let mut q_scaled = vec![0.0f32; dh];
    for i in 0..lq {
        for (qs, &qv) in q_scaled.iter_mut().zip(&qb[i * dh..(i + 1) * dh]) {
            *qs = qv * scale;
        }
        let mask_row = mask.map(|m| m.row(b, i, lk));
        let end = row_extent(mask_row, lk);
        let (p, ds) = (&mut p_buf[..end], &mut ds_buf[..end]);
        scores_row(p, &q_scaled, &kt, lk, mask_row);
        let row_stats = &st[i * STATS..(i + 1) * STATS];
        if let Some((spec, _)) = map
            && spec.tempered()
        {
            let (inv_t, max_t, inv_sum_t) = (1.0 / spec.temperature, row_stats[2], 1.0 / row_stats[3]);
            for (t, &s) in tempered_buf[..end].iter_mut().zip(p.iter()) {
                *t = exp_approx(s * inv_t - max_t) * inv_sum_t;
            }
        }
        let (max, inv) = (row_stats[0], 1.0 / row_stats[1]);
        for s in p.iter_mut() {
            *s = exp_approx(*s - max) * inv;
        }
        let g = &gb[i * dh..(i + 1) * dh];
        // dP = dO . V^T; D = dO . O = sum_j P dP.
        ds.fill(0.0);
        for (c, &gc) in g.iter().enumerate() {
            axpy(ds, gc, &vt[c * lk..c * lk + end]);
        }
        let drop_row = drop.map(|dv| (dv.scale, &dv.row(d, b, h, i)[..end]));
        if let Some((keep_scale, m)) = drop_row {
            // Through the dropout: dP = (dO . V^T) * M / (1 - p); D = dO . O still equals
            // sum_j P dP, since O is built from the same kept, rescaled probabilities.
            for (x, &m) in ds.iter_mut().zip(m) {
                *x *= m as f32 * keep_scale;
            }
        }
        let d_row: f32 = g.iter().zip(&ob[i * dh..(i + 1) * dh]).map(|(a, b)| a * b).sum();
        for (dsj, &pj) in ds.iter_mut().zip(p.iter()) {
            *dsj = pj * (*dsj - d_row);
        }
        if let Some((spec, grad_map)) = map {
            // The map's softmax backward: P' (w dM - sum_j P' w dM) / t, with P' = P when t = 1.
            let gm = &grad_map[i * lk..i * lk + end];
            let (pt, inv_t): (&[f32], f32) = if spec.tempered() { (&tempered_buf[..end], 1.0 / spec.temperature) } else { (p, 1.0) };
            let c: f32 = pt.iter().zip(gm).map(|(a, g)| a * g).sum::<f32>() * weight;
            for ((dsj, &ptj), &gmj) in ds.iter_mut().zip(pt).zip(gm) {
                *dsj += inv_t * ptj * (weight * gmj - c);
            }
        }
        if let Some(m) = mask_row {
            // mask_fill passes no gradient to a forbidden score.
            for (dsj, &m) in ds.iter_mut().zip(&m[..end]) {
                *dsj *= 1.0 - m as f32;
            }
        }
        let dq_row = &mut dq[i * dh..(i + 1) * dh];
        weighted_rows_sum(ds, &kb[..end * dh], dq_row);
        for x in dq_row.iter_mut() {
            *x *= scale;
        }
        if let Some((keep_scale, m)) = drop_row {
            // dV sees the kept, rescaled probabilities; dQ and dK used the plain ones above.
            for (x, &m) in p.iter_mut().zip(m) {
                *x *= m as f32 * keep_scale;
            }
        }
        for c in 0..dh {
            axpy(&mut dkt[c * lk..c * lk + end], q_scaled[c], ds);
            axpy(&mut dvt[c * lk..c * lk + end], g[c], p);
        }
    }
    (dq, dkt, dvt)
}

/// Scatter `[L, dh]` rows of head `h`, sample `b` into a `[B, L, H, dh]` buffer.
fn scatter_rows(dst: &mut [f32], rows: &[f32], d: &Dims, l: usize, b: usize, h: usize) {
    for t in 0..l {
        let at = ((b * l + t) * d.heads + h) * d.dh;
        dst[at..at + d.dh].copy_from_slice(&rows[t * d.dh..(t + 1) * d.dh]);
    }
}

/// Scatter a transposed `[dh, L]` block of head `h`, sample `b` into a `[B, L, H, dh]` buffer.
fn scatter_transposed(dst: &mut [f32], block: &[f32], d: &Dims, l: usize, b: usize, h: usize) {
    for t in 0..l {
        let at = ((b * l + t) * d.heads + h) * d.dh;
        for c in 0..d.dh {
            dst[at + c] = block[c * l + t];
        }
    }
}

/// Below this many (query, key, head, sample) scores a call runs on one thread: rayon's hand-off
/// costs more than it saves (the `small` preset at batch 1 has a few hundred).
pub(super) const PARALLEL_MIN_SCORES: usize = 1 << 16;

/// Runs `f` for each of `units` work units (pairs, or samples when a map is accumulated over
/// heads), in parallel when the call is large enough.
fn for_units<T: Send, F: Fn(usize) -> T + Sync + Send>(units: usize, d: &Dims, f: F) -> Vec<T> {
    if units > 1 && d.batch * d.heads * d.lq * d.lk >= PARALLEL_MIN_SCORES { (0..units).into_par_iter().map(f).collect() } else { (0..units).map(f).collect() }
}

#[cfg(test)]
thread_local! {
    /// A test sets this to run the baseline (SSE2) code on a processor that has AVX2. Per
    /// thread, so that it reaches only the test's own (single-threaded: below
    /// `PARALLEL_MIN_SCORES`) kernel calls and never a test running beside it.
    static FORCE_BASELINE: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Whether this processor runs the AVX2 + FMA copies of the pair kernels (checked once).
fn has_avx2_fma() -> bool {
    #[cfg(test)]
    if FORCE_BASELINE.with(|f| f.get()) {
        return false;
    }
    #[cfg(target_arch = "x86_64")]
    {
        static HAS: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
        *HAS.get_or_init(|| std::is_x86_feature_detected!("avx2") && std::is_x86_feature_detected!("fma"))
    }
    #[cfg(not(target_arch = "x86_64"))]
    false
}

// The pair kernels compiled a second time for AVX2 + FMA: `#[inline(always)]` pulls the whole
// loop nest into these bodies, so it is vectorised eight lanes wide; the baseline x86-64 target
// only has SSE2 (four lanes, no FMA).
#[cfg(target_arch = "x86_64")]
#[allow(clippy::too_many_arguments)]
#[target_feature(enable = "avx2,fma")]
fn forward_pair_avx2(
    q: &[f32],
    k: &[f32],
    v: &[f32],
    mask: Option<MaskView>,
    drop: Option<DropView>,
    scale: f32,
    map: Option<(MapSpec, &mut [f32])>,
    weight: f32,
    d: &Dims,
    b: usize,
    h: usize,
) -> (Vec<f32>, Vec<f32>) {
    forward_pair(q, k, v, mask, drop, scale, map, weight, d, b, h)
}

#[cfg(target_arch = "x86_64")]
#[allow(clippy::too_many_arguments)]
#[target_feature(enable = "avx2,fma")]
fn backward_pair_avx2(
    q: &[f32],
    k: &[f32],
    v: &[f32],
    out: &[f32],
    stats: &[f32],
    grad: &[f32],
    mask: Option<MaskView>,
    drop: Option<DropView>,
    scale: f32,
    map: Option<(MapSpec, &[f32])>,
    weight: f32,
    d: &Dims,
    b: usize,
    h: usize,
) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    backward_pair(q, k, v, out, stats, grad, mask, drop, scale, map, weight, d, b, h)
}

/// What the forward pass returns: the output and the statistics the backward needs.
pub struct Forward {
    /// `[B, Lq, H, dh]`.
    pub output: Vec<f32>,
    /// `[B, H, Lq, 4]`: per query row, the score maximum and the sum of `exp(s - max)`, then the
    /// same for the map's tempered scores `s / t`.
    pub stats: Vec<f32>,
    /// `[B, Lq, Lk]`, the head-averaged map, when one was asked for.
    pub map: Option<Vec<f32>>,
}

/// The forward pass: over (batch, head) pairs, or over samples (each summing its heads' maps)
/// when `map` asks for the head-averaged map.
pub fn forward(q: &[f32], k: &[f32], v: &[f32], mask: Option<MaskView>, drop: Option<DropView>, scale: f32, map: Option<MapSpec>, d: Dims) -> Forward {
    check_sizes(q, k, v, &d);
    check_drop(drop, &d);
    let avx2 = has_avx2_fma();
    let weight = 1.0 / d.heads as f32;
    let pair = |b: usize, h: usize, map: Option<(MapSpec, &mut [f32])>| {
        #[cfg(target_arch = "x86_64")]
        if avx2 {
            // SAFETY: the processor has AVX2 and FMA (checked by `has_avx2_fma`).
            return unsafe { forward_pair_avx2(q, k, v, mask, drop, scale, map, weight, &d, b, h) };
        }
        let _ = avx2;
        forward_pair(q, k, v, mask, drop, scale, map, weight, &d, b, h)
    };
    let (pairs, map): (Vec<(Vec<f32>, Vec<f32>)>, Option<Vec<f32>>) = match map {
        None => (for_units(d.batch * d.heads, &d, |p| pair(p / d.heads, p % d.heads, None)), None),
        Some(spec) => {
            let samples = for_units(d.batch, &d, |b| {
                let mut m = vec![0.0f32; d.lq * d.lk];
                let heads: Vec<_> = (0..d.heads).map(|h| pair(b, h, Some((spec, &mut m)))).collect();
                (heads, m)
            });
            let mut all = Vec::with_capacity(d.batch * d.heads);
            let mut map = Vec::with_capacity(d.batch * d.lq * d.lk);
            for (heads, m) in samples {
                all.extend(heads);
                map.extend_from_slice(&m);
            }
            (all, Some(map))
        }
    };
    let mut output = vec![0.0f32; d.batch * d.lq * d.heads * d.dh];
    let mut stats = Vec::with_capacity(d.batch * d.heads * d.lq * STATS);
    for (p, (rows, st)) in pairs.into_iter().enumerate() {
        scatter_rows(&mut output, &rows, &d, d.lq, p / d.heads, p % d.heads);
        stats.extend_from_slice(&st);
    }
    Forward { output, stats, map }
}

/// The backward pass, given the forward's output and statistics, the gradient of the output
/// and, when the forward returned a map, the map's spec and gradient (`[B, Lq, Lk]`).
#[allow(clippy::too_many_arguments)]
pub fn backward(
    q: &[f32],
    k: &[f32],
    v: &[f32],
    out: &[f32],
    stats: &[f32],
    grad: &[f32],
    mask: Option<MaskView>,
    drop: Option<DropView>,
    scale: f32,
    map: Option<(MapSpec, &[f32])>,
    d: Dims,
) -> Backward {
    check_sizes(q, k, v, &d);
    check_drop(drop, &d);
    assert_eq!(out.len(), q.len(), "fused attention backward: output size");
    assert_eq!(grad.len(), q.len(), "fused attention backward: gradient size");
    assert_eq!(stats.len(), d.batch * d.heads * d.lq * STATS, "fused attention backward: statistics size");
    if let Some((_, g)) = map {
        assert_eq!(g.len(), d.batch * d.lq * d.lk, "fused attention backward: map gradient size");
    }
    let avx2 = has_avx2_fma();
    let weight = 1.0 / d.heads as f32;
    let pair = |b: usize, h: usize| {
        let map_b = map.map(|(spec, g)| (spec, &g[b * d.lq * d.lk..(b + 1) * d.lq * d.lk]));
        #[cfg(target_arch = "x86_64")]
        if avx2 {
            // SAFETY: the processor has AVX2 and FMA (checked by `has_avx2_fma`).
            return unsafe { backward_pair_avx2(q, k, v, out, stats, grad, mask, drop, scale, map_b, weight, &d, b, h) };
        }
        let _ = avx2;
        backward_pair(q, k, v, out, stats, grad, mask, drop, scale, map_b, weight, &d, b, h)
    };
    let pairs = for_units(d.batch * d.heads, &d, |p| pair(p / d.heads, p % d.heads));
    let mut d_query = vec![0.0f32; q.len()];
    let mut d_key = vec![0.0f32; k.len()];
    let mut d_value = vec![0.0f32; v.len()];
    for (p, (dq, dkt, dvt)) in pairs.into_iter().enumerate() {
        let (b, h) = (p / d.heads, p % d.heads);
        scatter_rows(&mut d_query, &dq, &d, d.lq, b, h);
        scatter_transposed(&mut d_key, &dkt, &d, d.lk, b, h);
        scatter_transposed(&mut d_value, &dvt, &d, d.lk, b, h);
    }
    Backward { d_query, d_key, d_value }
}

fn check_drop(drop: Option<DropView>, d: &Dims) {
    if let Some(dv) = drop {
        assert_eq!(dv.keep.len(), d.batch * d.heads * d.lq * d.lk, "fused attention: dropout mask size");
    }
}

fn check_sizes(q: &[f32], k: &[f32], v: &[f32], d: &Dims) {
    assert_eq!(q.len(), d.batch * d.lq * d.heads * d.dh, "fused attention: query size");
    assert_eq!(k.len(), d.batch * d.lk * d.heads * d.dh, "fused attention: key size");
    assert_eq!(v.len(), k.len(), "fused attention: value size");
}

/// Uniform test values in [-2, 2) from a xorshift64 stream (no shared generator, so tests
/// drawing them cannot race).
#[cfg(test)]
pub(super) fn pseudo_random(n: usize, seed: u64) -> Vec<f32> {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            ((s >> 40) as f32 / (1u64 << 24) as f32) * 4.0 - 2.0
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exp_approx_is_close_to_exp_and_exactly_zero_far_below() {
        let mut worst = 0.0f64;
        let mut x = -87.0f32;
        while x <= 10.0 {
            let rel = ((exp_approx(x) as f64) - (x as f64).exp()).abs() / (x as f64).exp();
            worst = worst.max(rel);
            x += 0.0137;
        }
        assert!(worst < 5e-7, "relative error {worst}");
        assert_eq!(exp_approx(0.0), 1.0);
        assert_eq!(exp_approx(-1.0e9), 0.0);
        assert_eq!(exp_approx(-88.0), 0.0);
    }

    /// Naive f64 attention over the same layout, with probabilities and gradients by the
    /// textbook formulas (scores materialised, softmax, P^T dO, ...).
    #[allow(clippy::type_complexity)]
    fn naive(q: &[f32], k: &[f32], v: &[f32], grad: &[f32], mask: Option<&dyn Fn(usize, usize, usize) -> bool>, scale: f64, d: Dims) -> (Vec<f64>, Vec<f64>, Vec<f64>, Vec<f64>) {
        let at = |l: usize, b: usize, t: usize, h: usize, c: usize| ((b * l + t) * d.heads + h) * d.dh + c;
        let mut out = vec![0.0; q.len()];
        let (mut dq, mut dk, mut dv) = (vec![0.0; q.len()], vec![0.0; k.len()], vec![0.0; v.len()]);
        for b in 0..d.batch {
            for h in 0..d.heads {
                for i in 0..d.lq {
                    let masked = |j: usize| mask.is_some_and(|m| m(b, i, j));
                    let s: Vec<f64> = (0..d.lk)
                        .map(|j| if masked(j) { MASKED_SCORE as f64 } else { scale * (0..d.dh).map(|c| q[at(d.lq, b, i, h, c)] as f64 * k[at(d.lk, b, j, h, c)] as f64).sum::<f64>() })
                        .collect();
                    let m = s.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                    let e: Vec<f64> = s.iter().map(|x| (x - m).exp()).collect();
                    let z: f64 = e.iter().sum();
                    let p: Vec<f64> = e.iter().map(|x| x / z).collect();
                    for c in 0..d.dh {
                        out[at(d.lq, b, i, h, c)] = (0..d.lk).map(|j| p[j] * v[at(d.lk, b, j, h, c)] as f64).sum();
                    }
                    let g: Vec<f64> = (0..d.dh).map(|c| grad[at(d.lq, b, i, h, c)] as f64).collect();
                    let dp: Vec<f64> = (0..d.lk).map(|j| (0..d.dh).map(|c| g[c] * v[at(d.lk, b, j, h, c)] as f64).sum()).collect();
                    let pdp: f64 = (0..d.lk).map(|j| p[j] * dp[j]).sum();
                    for j in 0..d.lk {
                        let ds = if masked(j) { 0.0 } else { p[j] * (dp[j] - pdp) };
                        for c in 0..d.dh {
                            dq[at(d.lq, b, i, h, c)] += scale * ds * k[at(d.lk, b, j, h, c)] as f64;
                            dk[at(d.lk, b, j, h, c)] += scale * ds * q[at(d.lq, b, i, h, c)] as f64;
                            dv[at(d.lk, b, j, h, c)] += p[j] * g[c];
                        }
                    }
                }
            }
        }
        (out, dq, dk, dv)
    }

    fn assert_close(name: &str, got: &[f32], want: &[f64], tol: f64) {
        assert_eq!(got.len(), want.len(), "{name}: length");
        let scale = want.iter().fold(1e-3f64, |m, x| m.max(x.abs()));
        for (i, (g, w)) in got.iter().zip(want).enumerate() {
            assert!((*g as f64 - w).abs() <= tol * scale, "{name}[{i}]: {g} vs {w} (scale {scale})");
        }
    }

    /// Forward and every gradient against the naive f64 computation: no mask, a causal-style
    /// mask shared by all samples, and key padding that leaves one sample's rows fully masked;
    /// once with the AVX2 code where the processor has it, once with the baseline code.
    #[test]
    fn matches_naive_attention_with_and_without_masks() {
        for baseline in [false, true] {
            FORCE_BASELINE.with(|f| f.set(baseline));
            check_against_naive();
        }
        FORCE_BASELINE.with(|f| f.set(false));
    }

    fn check_against_naive() {
        // lk = 13 and 37 exercise the vector remainders; dh = 3 is not a multiple of anything.
        for (case, d) in
            [Dims { batch: 2, lq: 5, lk: 13, heads: 2, dh: 3 }, Dims { batch: 3, lq: 9, lk: 37, heads: 3, dh: 8 }, Dims { batch: 3, lq: 6, lk: 6, heads: 1, dh: 16 }].into_iter().enumerate()
        {
            // Single-threaded sizes: `FORCE_BASELINE` is per thread.
            assert!(d.batch * d.heads * d.lq * d.lk < PARALLEL_MIN_SCORES);
            let q = pseudo_random(d.batch * d.lq * d.heads * d.dh, 1 + case as u64);
            let k = pseudo_random(d.batch * d.lk * d.heads * d.dh, 2 + case as u64);
            let v = pseudo_random(d.batch * d.lk * d.heads * d.dh, 3 + case as u64);
            let g = pseudo_random(d.batch * d.lq * d.heads * d.dh, 4 + case as u64);
            let scale = 1.0 / (d.dh as f64).sqrt();
            // Causal (offset 1 + |lk - lq|, like MulT): one row per query, shared by the batch.
            let offset = 1 + d.lq.abs_diff(d.lk);
            let causal: Vec<u8> = (0..d.lq).flat_map(|i| (0..d.lk).map(move |j| (j >= i + offset) as u8)).collect();
            // Key padding: sample 0 keeps 4 keys, sample 1 none (a fully masked row), others all.
            let keep = |b: usize| match b {
                0 => 4,
                1 => 0,
                _ => d.lk,
            };
            let padding: Vec<u8> = (0..d.batch).flat_map(|b| (0..d.lk).map(move |j| (j >= keep(b)) as u8)).collect();
            let causal_fn = |_b: usize, i: usize, j: usize| j >= i + offset;
            let padding_fn = |b: usize, _i: usize, j: usize| j >= keep(b);
            let cases: [(Option<MaskView>, Option<&dyn Fn(usize, usize, usize) -> bool>); 3] = [
                (None, None),
                (Some(MaskView { data: &causal, batch_step: 0, row_step: d.lk }), Some(&causal_fn)),
                (Some(MaskView { data: &padding, batch_step: d.lk, row_step: 0 }), Some(&padding_fn)),
            ];
            for (m, (mask, mask_fn)) in cases.into_iter().enumerate() {
                let f = forward(&q, &k, &v, mask, None, scale as f32, None, d);
                let bw = backward(&q, &k, &v, &f.output, &f.stats, &g, mask, None, scale as f32, None, d);
                let (out, dq, dk, dv) = naive(&q, &k, &v, &g, mask_fn, scale, d);
                let name = |t: &str| format!("case {case} mask {m}: {t}");
                assert_close(&name("output"), &f.output, &out, 2e-6);
                assert_close(&name("dQ"), &bw.d_query, &dq, 1e-5);
                assert_close(&name("dK"), &bw.d_key, &dk, 1e-5);
                assert_close(&name("dV"), &bw.d_value, &dv, 1e-5);
            }
        }
    }
}
