//! Dropout masks on flex, drawn in bulk with exactly the numbers Burn would draw.
//!
//! Why: Burn's `Dropout` asks the backend for a Bernoulli tensor, and flex samples it one element
//! at a time through a generic sampler that is rebuilt for every element, then converts each
//! draw to `f32` (and the fused attention's mask back to bytes). At the `small` preset that was
//! a fifth of a training step (bench/NOTES.md, "Where the time goes"). The generator itself is
//! cheap; the path around it is not.
//!
//! How, without changing a single seeded result: flex keeps one process-wide `StdRng`
//! (ChaCha12, `rand` 0.10), seeded by `Device::seed` with `StdRng::seed_from_u64`, and a
//! Bernoulli(p) element is `next_u64() < p_int` (rand's `Bernoulli`). This module keeps a
//! *mirror* of that generator, seeded at the same moments with the same seed (`seed`, which
//! every seeding in mmkd goes through; clippy.toml forbids calling `Device::seed` directly), and
//! draws each mask from it in one loop. The mirror only stands in for flex's generator where
//! nothing but dropout draws from it until the next seeding: a training step of a model whose
//! parameters are all initialised (`seed_for_step`). Burn initialises parameters lazily, on
//! their first use, so the first step of a fresh model draws its weights from the same stream
//! as its dropout masks, interleaved; that step keeps Burn's own masks. The result is the
//! stream Burn's generator would have given: the same masks and weights, bit for bit (`tests`
//! below compares the two generators directly; docs/DECISIONS.md has the end-to-end check).
//!
//! Where the mirror is not seeded, or the device is not flex (CUDA draws on the device), the
//! mask comes from Burn as before.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use burn::module::{ModuleVisitor, Param};
use burn::nn::Dropout;
use burn::prelude::*;
use burn::tensor::{Bool, Distribution, TensorData};
use chacha20::ChaCha12Rng;
use rand_flex::{Rng, SeedableRng};

use super::fused_attention;

/// The mirror of flex's generator; `None` until `seed` is called. rand 0.10's `StdRng` is a
/// `ChaCha12Rng` and seeds it with the trait's `seed_from_u64`, so this is the same stream
/// (`tests::the_mirror_is_rands_std_rng`), with a word position to seek to.
/// Kept with the seed it came from: the parts of a batch start their own copies from it.
static MIRROR: Mutex<Option<(u64, ChaCha12Rng)>> = Mutex::new(None);

/// Whether the mirror draws masks at all (`use_mirror`; `MMKD_DROPOUT_MIRROR=0` turns it off
/// from the start, as an escape hatch and for benchmarks of Burn's path).
static MIRROR_ON: AtomicBool = AtomicBool::new(true);

/// The environment variable that turns the mirror off (`MMKD_DROPOUT_MIRROR=0`).
pub const DISABLE_VAR: &str = "MMKD_DROPOUT_MIRROR";

/// Turn the mirror on or off for this process (off: every mask through Burn's sampler, as
/// before issue 21). Results are the same either way; the end-to-end test compares them.
pub fn use_mirror(on: bool) {
    MIRROR_ON.store(on, Ordering::SeqCst);
}

fn mirror_on() -> bool {
    static FROM_ENV: std::sync::Once = std::sync::Once::new();
    FROM_ENV.call_once(|| {
        if matches!(std::env::var(DISABLE_VAR).as_deref(), Ok("0" | "false" | "off")) {
            use_mirror(false);
        }
    });
    MIRROR_ON.load(Ordering::SeqCst)
}

/// Seed `device`'s generator, and on flex the mirror with it. Every seeding in mmkd goes
/// through here, so that dropout masks follow the seed (see the module's documentation).
pub fn seed(device: &Device, seed: u64) {
    reseed(device, seed, true);
}

/// Seed before a training step of `model`: as `seed`, but the mirror draws this step's masks
/// only if every parameter of `model` is initialised. Otherwise the step's forward initialises
/// some from the same generator, between dropout draws, and only Burn's own generator gives
/// the numbers Burn would give.
pub fn seed_for_step<M: Module>(device: &Device, seed: u64, model: &M) {
    reseed(device, seed, all_initialised(model));
}

/// The backend's generator from `seed`, and the mirror too where it may stand in (flex, and
/// `mirror` allowed); otherwise the mirror is cleared and masks come from Burn.
// The one place allowed to call `Device::seed` (clippy.toml).
#[allow(clippy::disallowed_methods)]
fn reseed(device: &Device, seed: u64, mirror: bool) {
    device.seed(seed);
    let rng = (mirror && fused_attention::supported(device)).then(|| (seed, ChaCha12Rng::seed_from_u64(seed)));
    *MIRROR.lock().unwrap_or_else(|e| e.into_inner()) = rng;
}

/// Whether masks on flex come from the mirror until the next seeding (for tests and
/// diagnostics: false before any seeding, after a `seed_for_step` of a model with lazy
/// parameters, and with the mirror turned off).
pub fn mirror_active() -> bool {
    mirror_on() && MIRROR.lock().unwrap_or_else(|e| e.into_inner()).is_some()
}

/// Whether every parameter of `model` is initialised (Burn initialises lazily, on first use,
/// drawing from the generator dropout draws from).
pub fn all_initialised<M: Module>(model: &M) -> bool {
    let mut lazy = LazyParams(0);
    model.visit(&mut lazy);
    lazy.0 == 0
}

/// Counts parameters not initialised yet (Burn's lazy initialisation).
struct LazyParams(usize);

impl ModuleVisitor for LazyParams {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
        self.0 += usize::from(!param.is_initialized());
    }
}

/// rand's `Bernoulli::new(p)` threshold: an element is kept when a 64-bit draw is below it.
/// `None` for `p == 1` (rand's "always true", which draws nothing).
fn threshold(keep: f64) -> Option<u64> {
    assert!((0.0..=1.0).contains(&keep), "dropout: keep probability {keep} is not in [0, 1]");
    (keep < 1.0).then_some((keep * 2.0 * (1u64 << 63) as f64) as u64)
}

/// `n` values from the mirror, `kept` where an element is kept and `dropped` where not, or
/// `None` where the mirror does not stand in for the device's generator (not flex, or not
/// seeded for this step).
fn mirror_draw<T: Copy>(keep: f64, n: usize, kept: T, dropped: T, device: &Device) -> Option<Vec<T>> {
    if !fused_attention::supported(device) || !mirror_on() {
        return None;
    }
    let mut guard = MIRROR.lock().unwrap_or_else(|e| e.into_inner());
    let (_, rng) = guard.as_mut()?;
    Some(match threshold(keep) {
        None => vec![kept; n],
        Some(p_int) => draw(rng, p_int, n, kept, dropped),
    })
}

/// The masks of one batch whose rows are computed in parts, each part in a thread of its own
/// (`train::step`, `model::parts`): at every dropout site, each part gets its rows of the mask an
/// undivided step would draw there, the same numbers bit for bit, however the threads
/// interleave. Masks are batch-first (`[B, ...]`), as every dropout in mmkd is.
///
/// With the mirror (the usual case), nothing is shared: a site's whole mask takes the next
/// `n` draws of the stream, one 64-bit draw (two 32-bit words) per element, so a part knows
/// where its rows begin from the sizes of the sites before and seeks there (`ChaCha12Rng`'s
/// word position). `finish` then moves the mirror past everything the step drew. Without the
/// mirror (`MMKD_DROPOUT_MIRROR=0`, Burn's sampler), the first part to reach a site draws the
/// whole mask from Burn's generator, in site order (it has passed every earlier site), and
/// every part takes its rows of it.
pub struct BatchMasks {
    rows: usize,
    /// The mirror's seed and its word position when the step began (`None`: Burn's sampler).
    start: Option<(u64, u128)>,
    /// Burn's path: the whole masks drawn so far, in site order.
    drawn: Mutex<Vec<std::sync::Arc<DrawnMask>>>,
    /// Draws the whole step takes from the mirror, as counted by each part that finished.
    consumed: Mutex<Option<u128>>,
}

/// One site's whole-batch mask (Burn's path).
struct DrawnMask {
    keep: f64,
    dims: Vec<usize>,
    kept: Vec<bool>,
}

impl BatchMasks {
    /// The masks of a batch of `rows` rows about to be computed in parts, drawn from where the
    /// device's generator stands now.
    pub fn new(rows: usize) -> std::sync::Arc<BatchMasks> {
        let start = if mirror_on() { MIRROR.lock().unwrap_or_else(|e| e.into_inner()).as_ref().map(|(seed, rng)| (*seed, rng.get_word_pos())) } else { None };
        std::sync::Arc::new(BatchMasks { rows, start, drawn: Mutex::new(Vec::new()), consumed: Mutex::new(None) })
    }

    /// After every part: the mirror continues after the last draw of the step, as it would
    /// after an undivided step.
    pub fn finish(&self) {
        let (Some((_, start)), Some(consumed)) = (&self.start, *self.consumed.lock().unwrap_or_else(|e| e.into_inner())) else { return };
        if let Some((_, rng)) = MIRROR.lock().unwrap_or_else(|e| e.into_inner()).as_mut() {
            rng.set_word_pos(start + 2 * consumed);
        }
    }
}

/// A part in progress on this thread: its batch's masks, its rows, the sites passed.
struct PartInProgress {
    masks: std::sync::Arc<BatchMasks>,
    rows: std::ops::Range<usize>,
    /// Sites passed (Burn's path: the index of the next).
    sites: usize,
    /// Draws the whole masks of the sites passed took from the mirror.
    draws: u128,
}

thread_local! {
    /// A stack, not a slot: a thread that waits inside a part may run another part's work.
    static PARTS: std::cell::RefCell<Vec<PartInProgress>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Run `f`, the forward pass of rows `rows` of a batch, with every dropout mask taken from
/// `masks` (see `BatchMasks`).
pub fn in_part<R>(masks: &std::sync::Arc<BatchMasks>, rows: std::ops::Range<usize>, f: impl FnOnce() -> R) -> R {
    assert!(rows.end <= masks.rows, "dropout: part rows {rows:?} outside a batch of {} rows", masks.rows);
    PARTS.with(|p| p.borrow_mut().push(PartInProgress { masks: masks.clone(), rows, sites: 0, draws: 0 }));
    struct Pop;
    impl Drop for Pop {
        fn drop(&mut self) {
            let Some(part) = PARTS.with(|p| p.borrow_mut().pop()) else { return };
            if std::thread::panicking() {
                return;
            }
            let mut consumed = part.masks.consumed.lock().unwrap_or_else(|e| e.into_inner());
            match *consumed {
                None => *consumed = Some(part.draws),
                Some(other) => assert_eq!(other, part.draws, "dropout: the parts of one batch drew different amounts ({} sites in this one)", part.sites),
            }
        }
    }
    let _pop = Pop;
    f()
}

/// This part's rows of the next site's whole-batch mask, `kept` / `dropped`, or `None` when no
/// part is in progress on this thread.
fn part_draw<T: Copy>(keep: f64, dims: &[usize], kept: T, dropped: T, device: &Device) -> Option<Vec<T>> {
    let per_row: usize = dims.iter().skip(1).product();
    // This site's place: its index, and the draws the whole masks of the sites before took (a
    // mask with nothing to drop draws nothing, as rand's Bernoulli at p = 1).
    let (masks, rows, site, draws_before) = PARTS.with(|p| {
        let mut p = p.borrow_mut();
        let part = p.last_mut()?;
        let at = (part.masks.clone(), part.rows.clone(), part.sites, part.draws);
        part.sites += 1;
        if threshold(keep).is_some() {
            part.draws += (part.masks.rows * per_row) as u128;
        }
        Some(at)
    })?;
    assert_eq!(dims.first(), Some(&rows.len()), "dropout: a mask of {dims:?} in a part of rows {rows:?}; masks must be batch-first");
    let whole = masks.rows * per_row;
    if let Some((seed, start)) = masks.start {
        let Some(p_int) = threshold(keep) else { return Some(vec![kept; dims.iter().product()]) };
        let mut rng = ChaCha12Rng::seed_from_u64(seed);
        rng.set_word_pos(start + 2 * (draws_before + (rows.start * per_row) as u128));
        return Some(draw(&mut rng, p_int, rows.len() * per_row, kept, dropped));
    }
    let mut whole_dims = dims.to_vec();
    whole_dims[0] = masks.rows;
    let mask = {
        let mut drawn = masks.drawn.lock().unwrap_or_else(|e| e.into_inner());
        assert!(site <= drawn.len(), "dropout: site {site} reached before site {}", drawn.len());
        if site == drawn.len() {
            // Converted here, not by a tensor op that could hand work to rayon while this lock
            // is held (a worker waiting on it could be the one asked to help).
            let kept = Tensor::<1>::random([whole], Distribution::Bernoulli(keep), device).into_data().iter::<f32>().map(|v| v == 1.0).collect();
            drawn.push(std::sync::Arc::new(DrawnMask { keep, dims: whole_dims.clone(), kept }));
        }
        drawn[site].clone()
    };
    assert!(mask.keep == keep && mask.dims == whole_dims, "dropout: the parts of one batch diverged at site {site} ({:?} at keep {} drawn, {whole_dims:?} at keep {keep} asked)", mask.dims, mask.keep);
    Some(mask.kept[rows.start * per_row..rows.end * per_row].iter().map(|&k| if k { kept } else { dropped }).collect())
}

/// The draws themselves, one `next_u64` per element as rand's Bernoulli makes them. Not inlined,
/// so that a profile names it (bench/profile.sh counts it as random numbers). Reading the stream
/// in chunks with `fill_bytes` (the same words) was tried: no faster (bench/NOTES.md).
#[inline(never)]
fn draw<T: Copy>(rng: &mut ChaCha12Rng, p_int: u64, n: usize, kept: T, dropped: T) -> Vec<T> {
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        out.push(if rng.next_u64() < p_int { kept } else { dropped });
    }
    out
}

/// A keep mask of `dims` (true = kept, each with probability `keep`): the same values as
/// `Tensor::random(dims, Bernoulli(keep), device).equal_elem(1.0)` after the same seeding.
pub fn keep_mask<const D: usize>(keep: f64, dims: [usize; D], device: &Device) -> Tensor<D, Bool> {
    if let Some(flags) = part_draw(keep, &dims, true, false, device) {
        return Tensor::from_data(TensorData::new(flags, dims), device);
    }
    let n = dims.iter().product();
    match mirror_draw(keep, n, true, false, device) {
        Some(flags) => Tensor::from_data(TensorData::new(flags, dims), device),
        None => Tensor::<D>::random(dims, Distribution::Bernoulli(keep), device).equal_elem(1.0),
    }
}

/// `dropout.forward(x)` with the mask from the mirror: the same rule for when it acts (a rate
/// above zero, training mode, an autodiff device) and the same numbers, `x * mask * (1 / keep)`,
/// as one tracked product with the scaled mask (exact: the mask is 0 or 1).
pub fn apply<const D: usize>(dropout: &Dropout, x: Tensor<D>) -> Tensor<D> {
    if dropout.prob == 0.0 || !dropout.training.is_enabled() || !x.device().is_autodiff() {
        return x;
    }
    let keep = 1.0 - dropout.prob;
    let device = x.device();
    let dims = x.dims();
    // Burn multiplies by the f64 scale 1 / keep, which reaches the f32 kernel as this f32.
    let scale = (1.0 / keep) as f32;
    let scaled = part_draw(keep, &dims, scale, 0.0, &device).or_else(|| mirror_draw(keep, dims.iter().product(), scale, 0.0, &device));
    let Some(scaled) = scaled else {
        return dropout.forward(x);
    };
    x * Tensor::<D>::from_data(TensorData::new(scaled, dims), &device)
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::nn::DropoutConfig;

    // The tests that compare seeded sequences with Burn's are in tests/seeded.rs: the unit
    // tests of the library draw from flex's generator on parallel threads.
    fn bools<const D: usize>(t: Tensor<D, Bool>) -> Vec<bool> {
        t.into_data().try_to_vec::<bool>().unwrap()
    }

    #[test]
    fn off_outside_training_and_on_a_device_without_autodiff() {
        let plain = Device::flex();
        let x = Tensor::<2>::ones([3, 4], &plain);
        let dropout = DropoutConfig::new(0.5).init();
        assert_eq!(bools(apply(&dropout, x.clone()).equal_elem(1.0)), vec![true; 12], "no autodiff device: identity");
        let train = Device::flex().autodiff();
        let frozen = dropout.valid();
        let y = apply(&frozen, Tensor::<2>::ones([3, 4], &train));
        assert_eq!(bools(y.equal_elem(1.0)), vec![true; 12], "valid(): identity");
    }

    /// The mirror is rand 0.10's `StdRng` (flex's generator) word for word, and seeking to a
    /// word position continues the stream as drawing up to it does.
    #[test]
    fn the_mirror_is_rands_std_rng_and_seeks_within_its_stream() {
        for seed in [0u64, 1, 42, u64::MAX] {
            let mut std = rand_flex::rngs::StdRng::seed_from_u64(seed);
            let mut ours = ChaCha12Rng::seed_from_u64(seed);
            let a: Vec<u64> = (0..1000).map(|_| std.next_u64()).collect();
            let b: Vec<u64> = (0..1000).map(|_| ours.next_u64()).collect();
            assert_eq!(a, b, "seed {seed}");
            assert_eq!(ours.get_word_pos(), 2000, "two words per 64-bit draw");
            for at in [0usize, 1, 7, 31, 32, 33, 500, 999] {
                let mut seeker = ChaCha12Rng::seed_from_u64(seed);
                seeker.set_word_pos(2 * at as u128);
                assert_eq!(seeker.next_u64(), a[at], "seed {seed}, draw {at}");
            }
        }
    }

    #[test]
    fn threshold_is_rands_bernoulli_threshold() {
        // rand's Bernoulli::new: (p * 2^64) as u64, and "always" for p == 1.
        assert_eq!(threshold(0.5), Some(1u64 << 63));
        assert_eq!(threshold(0.0), Some(0));
        assert_eq!(threshold(1.0), None);
        assert_eq!(threshold(0.75), Some(3 * (1u64 << 62)));
    }
}
