//! Naive f64 references for tests.

use burn::nn::Linear;
use burn::prelude::*;

use super::attention::CrossModalAttention;

pub fn to_vec<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    t.into_data().try_to_vec::<f32>().expect("f32 data")
}

/// (W [d_in][d_out], b [d_out]) in f64.
pub fn linear_f64(l: &Linear) -> (Vec<Vec<f64>>, Vec<f64>) {
    let w = l.weight.val();
    let [din, dout] = w.dims();
    let wv = to_vec(w);
    let b = l.bias.as_ref().map(|b| to_vec(b.val())).unwrap_or(vec![0.0; dout]);
    let rows = (0..din).map(|i| (0..dout).map(|j| wv[i * dout + j] as f64).collect()).collect();
    (rows, b.iter().map(|&x| x as f64).collect())
}

fn apply(x: &[f64], (w, b): &(Vec<Vec<f64>>, Vec<f64>)) -> Vec<f64> {
    let mut y = b.clone();
    for (i, xi) in x.iter().enumerate() {
        for (j, yj) in y.iter_mut().enumerate() {
            *yj += xi * w[i][j];
        }
    }
    y
}

/// Multi-head attention by loops in f64. Returns (output [B*Lq*d], head-averaged map at
/// temperature `t` [B*Lq*Lk]). `forbidden[i][j]` masks key j for query i.
pub fn naive_attention(attn: &CrossModalAttention, q: &Tensor<3>, kv: &Tensor<3>, forbidden: Option<&Vec<Vec<bool>>>, t: f64) -> (Vec<f64>, Vec<f64>) {
    let [b, lq, d] = q.dims();
    let lk = kv.dims()[1];
    let h = attn.heads;
    let dh = d / h;
    let qv = to_vec(q.clone());
    let kvv = to_vec(kv.clone());
    let (wq, wk, wv, wo) = (linear_f64(&attn.query), linear_f64(&attn.key), linear_f64(&attn.value), linear_f64(&attn.output));
    let mut out = Vec::new();
    let mut map = vec![0.0; b * lq * lk];
    for bi in 0..b {
        let row = |src: &[f32], l: usize, i: usize| -> Vec<f64> { src[(bi * l + i) * d..(bi * l + i + 1) * d].iter().map(|&x| x as f64).collect() };
        let qs: Vec<Vec<f64>> = (0..lq).map(|i| apply(&row(&qv, lq, i), &wq)).collect();
        let ks: Vec<Vec<f64>> = (0..lk).map(|j| apply(&row(&kvv, lk, j), &wk)).collect();
        let vs: Vec<Vec<f64>> = (0..lk).map(|j| apply(&row(&kvv, lk, j), &wv)).collect();
        for i in 0..lq {
            let mut concat = vec![0.0; d];
            for hi in 0..h {
                let sl = hi * dh..(hi + 1) * dh;
                let scores: Vec<f64> = (0..lk)
                    .map(|j| {
                        if forbidden.is_some_and(|f| f[i][j]) {
                            f64::NEG_INFINITY
                        } else {
                            qs[i][sl.clone()].iter().zip(&ks[j][sl.clone()]).map(|(a, b)| a * b).sum::<f64>() / (dh as f64).sqrt()
                        }
                    })
                    .collect();
                let softmax = |temp: f64| -> Vec<f64> {
                    let m = scores.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                    let e: Vec<f64> = scores.iter().map(|s| ((s - m) / temp).exp()).collect();
                    let z: f64 = e.iter().sum();
                    e.iter().map(|x| x / z).collect()
                };
                let p = softmax(1.0);
                let pt = softmax(t);
                for j in 0..lk {
                    map[(bi * lq + i) * lk + j] += pt[j] / h as f64;
                    for (c, k) in sl.clone().enumerate() {
                        let _ = c;
                        concat[k] += p[j] * vs[j][k];
                    }
                }
            }
            out.extend(apply(&concat, &wo));
        }
    }
    (out, map)
}
