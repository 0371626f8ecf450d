//! Helpers shared by the unit tests: devices, small random inputs, host read-back.

use burn::tensor::{Device, Tensor, TensorData};

use crate::rng::SplitMix64;

/// The plain CPU device the tests run on.
pub(crate) fn device() -> Device {
    Device::flex()
}

/// The same device with gradients recorded.
pub(crate) fn autodiff_device() -> Device {
    Device::flex().autodiff()
}

/// Uniform values in `[lo, hi)` from a seeded stream.
pub(crate) fn uniform(len: usize, lo: f64, hi: f64, seed: u64) -> Vec<f64> {
    let mut rng = SplitMix64::new(seed);
    (0..len).map(|_| lo + (hi - lo) * f64::from(rng.next_f32())).collect()
}

/// A `[b, m, n]` array whose rows are random distributions (softmax of uniform logits).
pub(crate) fn row_stochastic(dims: [usize; 3], seed: u64) -> Vec<f64> {
    let n = dims[2];
    let mut v = uniform(dims.iter().product(), -2.0, 2.0, seed);
    for row in v.chunks_mut(n) {
        let z: f64 = row.iter().map(|x| x.exp()).sum();
        for x in row.iter_mut() {
            *x = x.exp() / z;
        }
    }
    // Round through f32 so the reference sees exactly what the tensor holds.
    v.iter().map(|&x| f64::from(x as f32)).collect()
}

/// `[rows, dim]` vectors of unit L2 norm, rounded through f32.
pub(crate) fn unit_rows(rows: usize, dim: usize, seed: u64) -> Vec<f64> {
    let mut v = uniform(rows * dim, -1.0, 1.0, seed);
    for row in v.chunks_mut(dim) {
        let norm = row.iter().map(|x| x * x).sum::<f64>().sqrt();
        for x in row.iter_mut() {
            *x /= norm;
        }
    }
    v.iter().map(|&x| f64::from(x as f32)).collect()
}

fn to_f32(v: &[f64]) -> Vec<f32> {
    v.iter().map(|&x| x as f32).collect()
}

pub(crate) fn tensor2(v: &[f64], dims: [usize; 2], dev: &Device) -> Tensor<2> {
    Tensor::from_data(TensorData::new(to_f32(v), dims), dev)
}

pub(crate) fn tensor3(v: &[f64], dims: [usize; 3], dev: &Device) -> Tensor<3> {
    Tensor::from_data(TensorData::new(to_f32(v), dims), dev)
}

/// Reads a float tensor back as f64 values in row-major order.
pub(crate) fn values<const D: usize>(t: Tensor<D>) -> Vec<f64> {
    t.try_into_vec_as::<f32>().expect("test tensors are readable f32").into_iter().map(f64::from).collect()
}
