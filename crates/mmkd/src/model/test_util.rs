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
                let scores: Vec<f64> =
                    (0..lk)
                        .map(|j| {
                            if forbidden.is_some_and(|f| f[i][j]) { f64::NEG_INFINITY } else { qs[i][sl.clone()].iter().zip(&ks[j][sl.clone()]).map(|(a, b)| a * b).sum::<f64>() / (dh as f64).sqrt() }
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

/// One sample's sequence, `[L][d]`, in f64.
pub type Rows = Vec<Vec<f64>>;

fn layer_norm_rows(x: &Rows, ln: &burn::nn::LayerNorm) -> Rows {
    let g = to_vec(ln.gamma.val());
    let b = ln.beta.as_ref().map(|b| to_vec(b.val())).unwrap_or(vec![0.0; g.len()]);
    x.iter()
        .map(|r| {
            let n = r.len() as f64;
            let mean = r.iter().sum::<f64>() / n;
            let var = r.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / n;
            r.iter().enumerate().map(|(i, v)| (v - mean) / (var + 1e-5).sqrt() * g[i] as f64 + b[i] as f64).collect()
        })
        .collect()
}

/// Multi-head attention of query rows over key and value rows; `forbidden(i, j)` masks key j.
fn attend_rows(attn: &CrossModalAttention, q: &Rows, k: &Rows, v: &Rows, forbidden: &dyn Fn(usize, usize) -> bool) -> Rows {
    let (wq, wk, wv, wo) = (linear_f64(&attn.query), linear_f64(&attn.key), linear_f64(&attn.value), linear_f64(&attn.output));
    let d = q[0].len();
    let dh = d / attn.heads;
    let qs: Rows = q.iter().map(|r| apply(r, &wq)).collect();
    let ks: Rows = k.iter().map(|r| apply(r, &wk)).collect();
    let vs: Rows = v.iter().map(|r| apply(r, &wv)).collect();
    (0..q.len())
        .map(|i| {
            let mut concat = vec![0.0; d];
            for h in 0..attn.heads {
                let sl = h * dh..(h + 1) * dh;
                let scores: Vec<f64> = (0..k.len())
                    .map(|j| if forbidden(i, j) { f64::NEG_INFINITY } else { qs[i][sl.clone()].iter().zip(&ks[j][sl.clone()]).map(|(a, b)| a * b).sum::<f64>() / (dh as f64).sqrt() })
                    .collect();
                let m = scores.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                let e: Vec<f64> = scores.iter().map(|s| (s - m).exp()).collect();
                let z: f64 = e.iter().sum();
                for (j, ej) in e.iter().enumerate() {
                    for c in sl.clone() {
                        concat[c] += ej / z * vs[j][c];
                    }
                }
            }
            apply(&concat, &wo)
        })
        .collect()
}

/// MulT's encoder by loops in f64, written from MulT's `TransformerEncoder` (causal mask and
/// first-feature positions on, no dropout): `kv == None` is self-attention, where every layer
/// attends to its own current input; otherwise every layer attends to the embedded `kv`.
pub fn naive_encoder(enc: &super::encoder::CrossModalEncoder, x: &Rows, kv: Option<&Rows>) -> Rows {
    let d = x[0].len();
    let embed = |rows: &Rows| -> Rows {
        let half = d / 2;
        let scale = (10_000f64).ln() / (half as f64 - 1.0);
        rows.iter()
            .enumerate()
            .map(|(p, r)| {
                let padding = r[0] == 0.0;
                (0..d)
                    .map(|c| {
                        let (i, sin) = if c < half { (c, true) } else { (c - half, false) };
                        let angle = (p + 1) as f64 * (-(i as f64) * scale).exp();
                        let pos = if padding {
                            0.0
                        } else if sin {
                            angle.sin()
                        } else {
                            angle.cos()
                        };
                        r[c] * (d as f64).sqrt() + pos
                    })
                    .collect()
            })
            .collect()
    };
    let mut h = embed(x);
    let kv = kv.map(embed);
    let (lq, lk) = (x.len(), kv.as_ref().map_or(x.len(), |k| k.len()));
    let offset = 1 + lq.abs_diff(lk);
    let forbidden = move |i: usize, j: usize| j >= i + offset;
    for layer in &enc.layers {
        let q = layer_norm_rows(&h, &layer.attn_norm);
        let a = match &kv {
            None => attend_rows(&layer.attention, &q, &q, &q, &forbidden),
            Some(kv) => {
                let k = layer_norm_rows(kv, &layer.attn_norm);
                attend_rows(&layer.attention, &q, &k, &k, &forbidden)
            }
        };
        h = h.iter().zip(&a).map(|(x, y)| x.iter().zip(y).map(|(p, q)| p + q).collect()).collect();
        let f = layer_norm_rows(&h, &layer.ffn_norm);
        let (w1, w2) = (linear_f64(&layer.fc1), linear_f64(&layer.fc2));
        let ff: Rows = f.iter().map(|r| apply(&apply(r, &w1).into_iter().map(|v| v.max(0.0)).collect::<Vec<_>>(), &w2)).collect();
        h = h.iter().zip(&ff).map(|(x, y)| x.iter().zip(y).map(|(p, q)| p + q).collect()).collect();
    }
    layer_norm_rows(&h, &enc.final_norm)
}
