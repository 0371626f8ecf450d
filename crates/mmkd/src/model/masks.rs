//! Attention masks (true = forbidden) and positions, built on the host: they are tiny, and
//! building them from plain data keeps their meaning obvious.

use burn::prelude::*;
use burn::tensor::{Bool, TensorData};

/// MulT's future mask: query i may not see key j when j - i >= 1 + |Lk - Lq|
/// (`torch.triu(-inf, 1 + abs(dim2 - dim1))` in MulT's `buffered_future_mask`). [Lq, Lk].
pub fn future_mask(lq: usize, lk: usize, device: &Device) -> Tensor<2, Bool> {
    let offset = 1 + lq.abs_diff(lk) as i64;
    let data: Vec<bool> = (0..lq).flat_map(|i| (0..lk).map(move |j| j as i64 - i as i64 >= offset)).collect();
    Tensor::from_data(TensorData::new(data, [lq, lk]), device)
}

/// Key padding mask from lengths: key j of sample b is forbidden when j >= lengths[b]. [B, Lk].
pub fn key_padding_mask(lengths: &[usize], lk: usize, device: &Device) -> Tensor<2, Bool> {
    let data: Vec<bool> = lengths.iter().flat_map(|&len| (0..lk).map(move |j| j >= len.max(1))).collect();
    Tensor::from_data(TensorData::new(data, [lengths.len(), lk]), device)
}

/// fairseq/MulT sinusoidal table for positions 1..=len (row p-1 holds position p), [len, d]:
/// the first half of the features are sines, the second half cosines.
pub fn sinusoidal_table(len: usize, d: usize, device: &Device) -> Tensor<2> {
    let half = d / 2;
    let scale = if half > 1 { (10_000f64).ln() / (half as f64 - 1.0) } else { 0.0 };
    let mut data = vec![0f32; len * d];
    for p in 0..len {
        let pos = (p + 1) as f64;
        for i in 0..half {
            let angle = pos * (-(i as f64) * scale).exp();
            data[p * d + i] = angle.sin() as f32;
            data[p * d + half + i] = angle.cos() as f32;
        }
    }
    Tensor::from_data(TensorData::new(data, [len, d]), device)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn future_mask_follows_mult_offset() {
        let device = Device::flex();
        let m: Vec<bool> = future_mask(2, 4, &device).into_data().try_to_vec().unwrap();
        // offset = 1 + |4 - 2| = 3: only (0, 3) is masked.
        assert_eq!(m, vec![false, false, false, true, false, false, false, false]);
        let sq: Vec<bool> = future_mask(3, 3, &device).into_data().try_to_vec().unwrap();
        assert_eq!(sq, vec![false, true, true, false, false, true, false, false, false]);
    }

    #[test]
    fn sinusoidal_matches_closed_form() {
        let device = Device::flex();
        let t: Vec<f32> = sinusoidal_table(3, 4, &device).into_data().try_to_vec().unwrap();
        // half = 2, scale = ln(10000); position 2: sin(2), sin(2e-4), cos(2), cos(2e-4).
        let p2 = &t[4..8];
        let expect = [2f64.sin(), (2e-4f64).sin(), 2f64.cos(), (2e-4f64).cos()];
        for (a, b) in p2.iter().zip(expect) {
            assert!((*a as f64 - b).abs() < 1e-6);
        }
    }
}
