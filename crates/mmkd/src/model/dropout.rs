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
use rand_flex::rngs::StdRng;
use rand_flex::{Rng, SeedableRng};

use super::fused_attention;

/// The mirror of flex's generator; `None` until `seed` is called.
static MIRROR: Mutex<Option<StdRng>> = Mutex::new(None);

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
    let mut lazy = LazyParams(0);
    model.visit(&mut lazy);
    reseed(device, seed, lazy.0 == 0);
}

/// The backend's generator from `seed`, and the mirror too where it may stand in (flex, and
/// `mirror` allowed); otherwise the mirror is cleared and masks come from Burn.
// The one place allowed to call `Device::seed` (clippy.toml).
#[allow(clippy::disallowed_methods)]
fn reseed(device: &Device, seed: u64, mirror: bool) {
    device.seed(seed);
    let rng = (mirror && fused_attention::supported(device)).then(|| StdRng::seed_from_u64(seed));
    *MIRROR.lock().unwrap_or_else(|e| e.into_inner()) = rng;
}

/// Whether masks on flex come from the mirror until the next seeding (for tests and
/// diagnostics: false before any seeding, after a `seed_for_step` of a model with lazy
/// parameters, and with the mirror turned off).
pub fn mirror_active() -> bool {
    mirror_on() && MIRROR.lock().unwrap_or_else(|e| e.into_inner()).is_some()
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
    let rng = guard.as_mut()?;
    Some(match threshold(keep) {
        None => vec![kept; n],
        Some(p_int) => draw(rng, p_int, n, kept, dropped),
    })
}

/// The draws themselves, one `next_u64` per element as rand's Bernoulli makes them. Not inlined,
/// so that a profile names it (bench/profile.sh counts it as random numbers).
#[inline(never)]
fn draw<T: Copy>(rng: &mut StdRng, p_int: u64, n: usize, kept: T, dropped: T) -> Vec<T> {
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        out.push(if rng.next_u64() < p_int { kept } else { dropped });
    }
    out
}

/// A keep mask of `dims` (true = kept, each with probability `keep`): the same values as
/// `Tensor::random(dims, Bernoulli(keep), device).equal_elem(1.0)` after the same seeding.
pub fn keep_mask<const D: usize>(keep: f64, dims: [usize; D], device: &Device) -> Tensor<D, Bool> {
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
    let Some(scaled) = mirror_draw(keep, dims.iter().product(), scale, 0.0, &device) else {
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

    #[test]
    fn threshold_is_rands_bernoulli_threshold() {
        // rand's Bernoulli::new: (p * 2^64) as u64, and "always" for p == 1.
        assert_eq!(threshold(0.5), Some(1u64 << 63));
        assert_eq!(threshold(0.0), Some(0));
        assert_eq!(threshold(1.0), None);
        assert_eq!(threshold(0.75), Some(3 * (1u64 << 62)));
    }
}
