//! MulT's output head: a residual block (proj1 -> ReLU -> dropout -> proj2, plus skip) then the
//! output layer. "Penultimate layer" = the block's output, "final layer" = the logits.

use burn::nn::{Dropout, DropoutConfig, Linear, LinearConfig};
use burn::prelude::*;
use burn::tensor::activation::relu;

#[derive(Module, Debug)]
pub struct MultHead {
    pub proj1: Linear,
    pub proj2: Linear,
    pub out: Linear,
    pub dropout: Dropout,
}

impl MultHead {
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
        let h = self.proj2.forward(self.dropout.forward(relu(self.proj1.forward(x.clone()))));
        let penultimate = h + x;
        let logits = self.out.forward(penultimate.clone());
        (penultimate, logits)
    }
}
