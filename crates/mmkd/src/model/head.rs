//! MulT's output head: a residual block (proj1 -> ReLU -> dropout -> proj2, plus skip) then the
//! output layer. "Penultimate layer" = the block's output, "final layer" = the logits.

use burn::nn::{Dropout, DropoutConfig, Linear, LinearConfig};
use burn::prelude::*;
use burn::tensor::activation::relu;

/// MulT's output head: `h = proj2(dropout(relu(proj1(x)))) + x`, then `logits = out(h)`.
#[derive(Module, Debug)]
pub struct MultHead {
    /// First layer of the residual block, dim -> dim.
    pub proj1: Linear,
    /// Second layer of the residual block, dim -> dim.
    pub proj2: Linear,
    /// Output layer, dim -> classes (the logits).
    pub out: Linear,
    /// Dropout between the ReLU and `proj2` (MulT's `out_dropout`).
    pub dropout: Dropout,
}

impl MultHead {
    /// A head over `dim` features (the concatenated last steps) with `classes` outputs.
    pub fn new(dim: usize, classes: usize, out_dropout: f64, device: &Device) -> Self {
        MultHead {
            proj1: LinearConfig::new(dim, dim).init(device),
            proj2: LinearConfig::new(dim, dim).init(device),
            out: LinearConfig::new(dim, classes).init(device),
            dropout: DropoutConfig::new(out_dropout).init(),
        }
    }

    /// Returns (penultimate features, logits).
    pub fn forward(&self, x: Tensor<2>) -> (Tensor<2>, Tensor<2>) {
        let h = self.proj2.forward(super::dropout::apply(&self.dropout, relu(self.proj1.forward(x.clone()))));
        let penultimate = h + x;
        let logits = self.out.forward(penultimate.clone());
        (penultimate, logits)
    }
}
