//! Which tensors go into a ggml file, in what order and type: openai-whisper's `state_dict`
//! order and names, cut from CTranslate2's variables (its fused q/k/v and k/v projections split by
//! rows, the always-zero key bias checked and dropped), shapes and dtypes checked on the way.
//!
//! Types follow whisper.cpp: f32 for 1-D tensors and [`KEEP_F32`]; f16 for the 3-D conv kernels
//! whatever the weight type; the weight type ([`WeightType::matrix_type`]) for every other 2-D
//! tensor, which is what whisper.cpp's quantize tool quantizes and whisper.cpp's loader expects.

use std::io::Write;

use crate::ct2::{self, Ct2Model, DType, Variable};
use crate::ggml::{ConvertError, Counting, Hparams, tensor, to_i32};
use crate::quant::{GgmlType, WeightType};

/// One output tensor: a name, dims (outermost first) and the source bytes it is cut from.
#[derive(Debug)]
pub(crate) struct TensorOut<'m> {
    name: String,
    dims: Vec<usize>,
    dtype: DType,
    data: &'m [u8],
    out: GgmlType,
}

impl TensorOut<'_> {
    pub(crate) fn out_type(&self) -> GgmlType {
        self.out
    }

    pub(crate) fn write<W: Write>(&self, w: &mut Counting<W>) -> Result<(), ConvertError> {
        w.i32(to_i32(self.dims.len(), || format!("rank of {}", self.name))?)?;
        w.i32(to_i32(self.name.len(), || format!("name length of {}", self.name))?)?;
        w.i32(self.out.id())?;
        for &d in self.dims.iter().rev() {
            w.i32(to_i32(d, || format!("a dim of {}", self.name))?)?;
        }
        w.write_all(self.name.as_bytes())?;
        match (self.dtype, self.out) {
            (DType::F16, GgmlType::F16) | (DType::F32, GgmlType::F32) => w.write_all(self.data)?,
            (dtype, out) => {
                // Row by row along the innermost dim, the one ggml quantizes along.
                let row = self.dims.last().copied().unwrap_or(1).max(1);
                let mut buf = Vec::with_capacity(out.row_bytes(row));
                for src in self.data.chunks_exact(row * dtype.size()) {
                    let values = ct2::decode_f32(dtype, src)
                        .ok_or_else(|| ConvertError::UnsupportedDtype { name: self.name.clone(), dtype })?;
                    buf.clear();
                    out.encode_row(&values, &mut buf);
                    w.write_all(&buf)?;
                }
            }
        }
        Ok(())
    }
}

/// Tensors whisper.cpp wants in f32 although they have two dims: the skip list of whisper.cpp's
/// quantize tool (`whisper_model_quantize`) and the f32 tensors of its converter.
const KEEP_F32: [&str; 4] =
    ["encoder.conv1.bias", "encoder.conv2.bias", "encoder.positional_embedding", "decoder.positional_embedding"];

/// Collects output tensors, checking names, dtypes and shapes on the way.
struct Planner<'m> {
    model: &'m Ct2Model,
    weights: WeightType,
    out: Vec<TensorOut<'m>>,
}

impl<'m> Planner<'m> {
    fn float(&self, name: &str, expected: &[usize]) -> Result<&'m Variable, ConvertError> {
        let v = tensor(self.model, name)?;
        if !v.dtype.is_float() {
            return Err(ConvertError::UnsupportedDtype { name: name.to_owned(), dtype: v.dtype });
        }
        if v.dims != expected {
            return Err(ConvertError::BadShape {
                name: name.to_owned(),
                found: v.dims.clone(),
                expected: expected.to_vec(),
            });
        }
        Ok(v)
    }

    fn push(&mut self, name: String, dims: Vec<usize>, dtype: DType, data: &'m [u8]) -> Result<(), ConvertError> {
        let out = match dims.len() {
            0 | 1 => GgmlType::F32,
            _ if KEEP_F32.contains(&name.as_str()) => GgmlType::F32,
            2 => self.weights.matrix_type(),
            _ => GgmlType::F16,
        };
        let row = dims.last().copied().unwrap_or(1);
        if row % out.block_size() != 0 {
            return Err(ConvertError::RowNotBlocks { name, row, weights: self.weights, block: out.block_size() });
        }
        self.out.push(TensorOut { name, dims, dtype, data, out });
        Ok(())
    }

    /// Copies `src` (of shape `dims`) to `dst` unchanged.
    fn copy(&mut self, src: &str, dst: &str, dims: &[usize]) -> Result<(), ConvertError> {
        let v = self.float(src, dims)?;
        self.push(dst.to_owned(), v.dims.clone(), v.dtype, &v.data)
    }

    /// `{src}/gamma|beta` → `{dst}.weight|bias`.
    fn layer_norm(&mut self, src: &str, dst: &str, n: usize) -> Result<(), ConvertError> {
        self.copy(&format!("{src}/gamma"), &format!("{dst}.weight"), &[n])?;
        self.copy(&format!("{src}/beta"), &format!("{dst}.bias"), &[n])
    }

    /// `{src}/weight|bias` → `{dst}.weight|bias` for a `[rows, cols]` linear layer.
    fn linear(&mut self, src: &str, dst: &str, rows: usize, cols: usize) -> Result<(), ConvertError> {
        self.copy(&format!("{src}/weight"), &format!("{dst}.weight"), &[rows, cols])?;
        self.copy(&format!("{src}/bias"), &format!("{dst}.bias"), &[rows])
    }

    /// Splits a linear layer fused by rows into `dsts.len()` layers of `n × n`. Entries flagged
    /// as the key projection lose their bias, which must be all zeros.
    fn fused(&mut self, src: &str, dsts: &[(&str, bool)], n: usize) -> Result<(), ConvertError> {
        let parts = dsts.len();
        let weight = self.float(&format!("{src}/weight"), &[parts * n, n])?;
        let bias_name = format!("{src}/bias");
        let bias = self.float(&bias_name, &[parts * n])?;
        let weights = split_rows(&weight.data, parts);
        let biases = split_rows(&bias.data, parts);
        for ((&(dst, is_key), w), b) in dsts.iter().zip(weights).zip(biases) {
            self.push(format!("{dst}.weight"), vec![n, n], weight.dtype, w)?;
            if is_key {
                if !is_all_zero(bias.dtype, b) {
                    return Err(ConvertError::NonZeroKeyBias(bias_name));
                }
            } else {
                self.push(format!("{dst}.bias"), vec![n], bias.dtype, b)?;
            }
        }
        Ok(())
    }

    /// Attention, its layer norm, the MLP and its layer norm of one residual block.
    fn self_attention(&mut self, src: &str, dst: &str, n: usize) -> Result<(), ConvertError> {
        let (q, k, v) = (format!("{dst}.attn.query"), format!("{dst}.attn.key"), format!("{dst}.attn.value"));
        self.fused(&format!("{src}/self_attention/linear_0"), &[(&q, false), (&k, true), (&v, false)], n)?;
        self.linear(&format!("{src}/self_attention/linear_1"), &format!("{dst}.attn.out"), n, n)?;
        self.layer_norm(&format!("{src}/self_attention/layer_norm"), &format!("{dst}.attn_ln"), n)
    }

    fn cross_attention(&mut self, src: &str, dst: &str, n: usize) -> Result<(), ConvertError> {
        self.linear(&format!("{src}/attention/linear_0"), &format!("{dst}.cross_attn.query"), n, n)?;
        let (k, v) = (format!("{dst}.cross_attn.key"), format!("{dst}.cross_attn.value"));
        self.fused(&format!("{src}/attention/linear_1"), &[(&k, true), (&v, false)], n)?;
        self.linear(&format!("{src}/attention/linear_2"), &format!("{dst}.cross_attn.out"), n, n)?;
        self.layer_norm(&format!("{src}/attention/layer_norm"), &format!("{dst}.cross_attn_ln"), n)
    }

    fn mlp(&mut self, src: &str, dst: &str, n: usize) -> Result<(), ConvertError> {
        self.linear(&format!("{src}/ffn/linear_0"), &format!("{dst}.mlp.0"), 4 * n, n)?;
        self.linear(&format!("{src}/ffn/linear_1"), &format!("{dst}.mlp.2"), n, 4 * n)?;
        self.layer_norm(&format!("{src}/ffn/layer_norm"), &format!("{dst}.mlp_ln"), n)
    }

    /// A conv bias `[n]` becomes `[n, 1]`, as whisper.cpp's converter reshapes it.
    fn conv(&mut self, src: &str, dst: &str, shape: [usize; 3]) -> Result<(), ConvertError> {
        self.copy(&format!("{src}/weight"), &format!("{dst}.weight"), &shape)?;
        let bias = self.float(&format!("{src}/bias"), &[shape[0]])?;
        self.push(format!("{dst}.bias"), vec![shape[0], 1], bias.dtype, &bias.data)
    }
}

/// All output tensors in openai-whisper's `state_dict` order, the 2-D weights as `weights`.
pub(crate) fn plan_tensors<'m>(
    model: &'m Ct2Model,
    hp: &Hparams,
    weights: WeightType,
) -> Result<Vec<TensorOut<'m>>, ConvertError> {
    let mut p = Planner { model, weights, out: Vec::new() };
    let (na, nt) = (hp.n_audio_state, hp.n_text_state);

    p.copy("encoder/position_encodings/encodings", "encoder.positional_embedding", &[hp.n_audio_ctx, na])?;
    p.conv("encoder/conv1", "encoder.conv1", [na, hp.n_mels, 3])?;
    p.conv("encoder/conv2", "encoder.conv2", [na, na, 3])?;
    for i in 0..hp.n_audio_layer {
        let (src, dst) = (format!("encoder/layer_{i}"), format!("encoder.blocks.{i}"));
        p.self_attention(&src, &dst, na)?;
        p.mlp(&src, &dst, na)?;
    }
    p.layer_norm("encoder/layer_norm", "encoder.ln_post", na)?;

    p.copy("decoder/position_encodings/encodings", "decoder.positional_embedding", &[hp.n_text_ctx, nt])?;
    p.copy("decoder/embeddings/weight", "decoder.token_embedding.weight", &[hp.n_vocab, nt])?;
    for i in 0..hp.n_text_layer {
        let (src, dst) = (format!("decoder/layer_{i}"), format!("decoder.blocks.{i}"));
        p.self_attention(&src, &dst, nt)?;
        p.cross_attention(&src, &dst, nt)?;
        p.mlp(&src, &dst, nt)?;
    }
    p.layer_norm("decoder/layer_norm", "decoder.ln", nt)?;
    Ok(p.out)
}

/// Cuts row-major `data` into `parts` equal slices along its first dimension.
pub(crate) fn split_rows(data: &[u8], parts: usize) -> impl Iterator<Item = &[u8]> {
    // Shapes are checked and hparams are non-zero, so the chunk size is too.
    data.chunks_exact((data.len() / parts.max(1)).max(1))
}

fn is_all_zero(dtype: DType, bytes: &[u8]) -> bool {
    ct2::decode_f32(dtype, bytes).is_some_and(|v| v.iter().all(|&x| x == 0.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_rows_cuts_fused_qkv_by_rows() {
        // [q; k; v] for n = 2: rows 0-1 are q, 2-3 k, 4-5 v.
        let fused: Vec<f32> = (0..12).map(|x| x as f32).collect();
        let bytes: Vec<u8> = fused.into_iter().flat_map(|x| half::f16::from_f32(x).to_le_bytes()).collect();
        let parts: Vec<Vec<f32>> =
            split_rows(&bytes, 3).map(|p| ct2::decode_f32(DType::F16, p).expect("f16")).collect();
        assert_eq!(parts, vec![vec![0.0, 1.0, 2.0, 3.0], vec![4.0, 5.0, 6.0, 7.0], vec![8.0, 9.0, 10.0, 11.0]]);
    }
}
