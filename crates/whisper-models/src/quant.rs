//! GGML storage types of a ggml model's tensors and the block quantizers for them, byte for byte
//! what ggml's reference quantizers (`quantize_row_q8_0_ref`, `quantize_row_q5_1_ref` in
//! `ggml-quants.c`) write, which whisper.cpp's `quantize` tool uses.
//!
//! A quantized row is cut into blocks of [`BLOCK`] values along its innermost dimension:
//!
//! ```text
//! q8_0 (34 bytes): f16 d = max|x| / 127 | 32 × i8 q = round(x / d)                  x ≈ d·q
//! q5_1 (24 bytes): f16 d = (max − min) / 31 | f16 m = min | u32 qh | 16 × u8 qs      x ≈ d·q + m
//!                  q = round((x − m) / d) in 0..=31: low 4 bits of value j in qs[j] (j < 16)
//!                  or the high nibble of qs[j − 16]; bit 4 of value j in bit j of qh
//! ```

use std::fmt;
use std::str::FromStr;

use half::f16;

/// Values per quantization block (`QK8_0`, `QK5_1`).
pub const BLOCK: usize = 32;
/// Bytes of one q8_0 block (`sizeof(block_q8_0)`).
pub const Q8_0_BLOCK_BYTES: usize = 2 + BLOCK;
/// Bytes of one q5_1 block (`sizeof(block_q5_1)`).
pub const Q5_1_BLOCK_BYTES: usize = 2 + 2 + 4 + BLOCK / 2;

/// whisper.cpp's quantize tool adds `GGML_QNT_VERSION × GGML_QNT_VERSION_FACTOR` to the header
/// ftype of a quantized model; whisper.cpp reads the ftype modulo the factor.
const QNT_VERSION_OFFSET: usize = 2 * 1000;

/// How a model's large weight matrices are stored: the `--quantize` choice.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum WeightType {
    /// f16, as whisper.cpp's `convert-pt-to-ggml.py` writes.
    #[default]
    F16,
    /// GGML q8_0: 8.5 bits a weight.
    Q8_0,
    /// GGML q5_1: 6 bits a weight.
    Q5_1,
}

impl WeightType {
    pub const ALL: [Self; 3] = [Self::F16, Self::Q8_0, Self::Q5_1];

    /// The header's ftype (`GGML_FTYPE_MOSTLY_*`), with the quantization version the quantize
    /// tool adds for quantized types: 1, 2007, 2009.
    pub fn header_ftype(self) -> usize {
        match self {
            Self::F16 => 1,
            Self::Q8_0 => QNT_VERSION_OFFSET + 7,
            Self::Q5_1 => QNT_VERSION_OFFSET + 9,
        }
    }

    /// The type whisper.cpp expects of the 2-D weight matrices under this ftype.
    pub fn matrix_type(self) -> GgmlType {
        match self {
            Self::F16 => GgmlType::F16,
            Self::Q8_0 => GgmlType::Q8_0,
            Self::Q5_1 => GgmlType::Q5_1,
        }
    }

    pub fn as_str(self) -> &'static str {
        self.matrix_type().as_str()
    }
}

impl fmt::Display for WeightType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for WeightType {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL.into_iter().find(|w| w.as_str() == s).ok_or_else(|| {
            let known: Vec<&str> = Self::ALL.iter().map(|w| w.as_str()).collect();
            format!("unknown weight type {s:?}; expected one of {}", known.join(", "))
        })
    }
}

/// The storage type of one tensor in the file, with ggml's `ggml_type` ids.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GgmlType {
    F32,
    F16,
    Q5_1,
    Q8_0,
}

impl GgmlType {
    /// `GGML_TYPE_*`: the per-tensor type id in the file.
    pub fn id(self) -> i32 {
        match self {
            Self::F32 => 0,
            Self::F16 => 1,
            Self::Q5_1 => 7,
            Self::Q8_0 => 8,
        }
    }

    pub fn from_id(id: i32) -> Option<Self> {
        [Self::F32, Self::F16, Self::Q5_1, Self::Q8_0].into_iter().find(|t| t.id() == id)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::F32 => "f32",
            Self::F16 => "f16",
            Self::Q5_1 => "q5_1",
            Self::Q8_0 => "q8_0",
        }
    }

    /// Values per block: 1 for the float types.
    pub fn block_size(self) -> usize {
        match self {
            Self::F32 | Self::F16 => 1,
            Self::Q5_1 | Self::Q8_0 => BLOCK,
        }
    }

    /// Bytes per block (per value for the float types).
    pub fn block_bytes(self) -> usize {
        match self {
            Self::F32 => 4,
            Self::F16 => 2,
            Self::Q5_1 => Q5_1_BLOCK_BYTES,
            Self::Q8_0 => Q8_0_BLOCK_BYTES,
        }
    }

    pub fn is_quantized(self) -> bool {
        self.block_size() > 1
    }

    /// Bytes of a row of `n` values; `n` must be a multiple of [`Self::block_size`].
    pub fn row_bytes(self, n: usize) -> usize {
        n / self.block_size() * self.block_bytes()
    }

    /// Appends the encoding of `row` to `out`. Quantized types need a row length that is a
    /// multiple of [`BLOCK`]; the caller checks it (a shorter tail would be dropped).
    pub fn encode_row(self, row: &[f32], out: &mut Vec<u8>) {
        match self {
            Self::F32 => out.extend(row.iter().flat_map(|x| x.to_le_bytes())),
            Self::F16 => out.extend(row.iter().flat_map(|&x| f16::from_f32(x).to_le_bytes())),
            Self::Q8_0 => row.chunks_exact(BLOCK).for_each(|b| out.extend_from_slice(&q8_0_block(b))),
            Self::Q5_1 => row.chunks_exact(BLOCK).for_each(|b| out.extend_from_slice(&q5_1_block(b))),
        }
    }

    /// Reads back `bytes` of this type (whole blocks) as f32.
    pub fn decode(self, bytes: &[u8]) -> Vec<f32> {
        match self {
            Self::F32 => bytes.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect(),
            Self::F16 => bytes.chunks_exact(2).map(|c| f16::from_le_bytes([c[0], c[1]]).to_f32()).collect(),
            Self::Q8_0 => bytes.chunks_exact(Q8_0_BLOCK_BYTES).flat_map(dequantize_q8_0).collect(),
            Self::Q5_1 => bytes.chunks_exact(Q5_1_BLOCK_BYTES).flat_map(dequantize_q5_1).collect(),
        }
    }
}

impl fmt::Display for GgmlType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One q8_0 block of the [`BLOCK`] values in `x` (`quantize_row_q8_0_ref`).
pub fn q8_0_block(x: &[f32]) -> [u8; Q8_0_BLOCK_BYTES] {
    debug_assert_eq!(x.len(), BLOCK);
    let amax = x.iter().fold(0.0f32, |m, v| m.max(v.abs()));
    let d = amax / 127.0;
    let id = if d != 0.0 { 1.0 / d } else { 0.0 };
    let mut out = [0u8; Q8_0_BLOCK_BYTES];
    out[..2].copy_from_slice(&f16::from_f32(d).to_le_bytes());
    for (q, &v) in out[2..].iter_mut().zip(x) {
        // C's roundf: halves away from zero, as f32::round.
        *q = ((v * id).round() as i8) as u8;
    }
    out
}

/// One q5_1 block of the [`BLOCK`] values in `x` (`quantize_row_q5_1_ref`).
pub fn q5_1_block(x: &[f32]) -> [u8; Q5_1_BLOCK_BYTES] {
    debug_assert_eq!(x.len(), BLOCK);
    let (min, max) = x.iter().fold((f32::MAX, -f32::MAX), |(lo, hi), &v| (lo.min(v), hi.max(v)));
    let d = (max - min) / 31.0;
    let id = if d != 0.0 { 1.0 / d } else { 0.0 };
    // (uint8_t)(x + 0.5f): x is never negative, so truncating after adding a half rounds.
    let level = |v: f32| ((v - min) * id + 0.5) as u8;
    let mut out = [0u8; Q5_1_BLOCK_BYTES];
    out[..2].copy_from_slice(&f16::from_f32(d).to_le_bytes());
    out[2..4].copy_from_slice(&f16::from_f32(min).to_le_bytes());
    let mut qh = 0u32;
    for j in 0..BLOCK / 2 {
        let (lo, hi) = (level(x[j]), level(x[j + BLOCK / 2]));
        out[8 + j] = (lo & 0x0f) | ((hi & 0x0f) << 4);
        qh |= u32::from((lo & 0x10) >> 4) << j;
        qh |= u32::from((hi & 0x10) >> 4) << (j + BLOCK / 2);
    }
    out[4..8].copy_from_slice(&qh.to_le_bytes());
    out
}

/// The values of one q8_0 block (`dequantize_row_q8_0`).
pub fn dequantize_q8_0(block: &[u8]) -> impl Iterator<Item = f32> + '_ {
    let d = f16::from_le_bytes([block[0], block[1]]).to_f32();
    block[2..Q8_0_BLOCK_BYTES].iter().map(move |&q| f32::from(q as i8) * d)
}

/// The values of one q5_1 block (`dequantize_row_q5_1`).
pub fn dequantize_q5_1(block: &[u8]) -> impl Iterator<Item = f32> + '_ {
    let d = f16::from_le_bytes([block[0], block[1]]).to_f32();
    let m = f16::from_le_bytes([block[2], block[3]]).to_f32();
    let qh = u32::from_le_bytes([block[4], block[5], block[6], block[7]]);
    let qs = &block[8..Q5_1_BLOCK_BYTES];
    (0..BLOCK).map(move |j| {
        let nibble = if j < BLOCK / 2 { qs[j] & 0x0f } else { qs[j - BLOCK / 2] >> 4 };
        let high = ((qh >> j) & 1) as u8;
        f32::from(nibble | (high << 4)) * d + m
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A row with both signs, a zero and a value that rounds halfway.
    fn known_row() -> Vec<f32> {
        (0..BLOCK).map(|i| (i as f32 - 12.0) * 0.125).collect()
    }

    #[test]
    fn q8_0_block_layout_is_ggmls() {
        let row = known_row();
        let block = q8_0_block(&row);
        // max |x| = 19 × 0.125 = 2.375 at i = 31; d = 2.375 / 127.
        let d = 2.375f32 / 127.0;
        assert_eq!(block[..2], f16::from_f32(d).to_le_bytes());
        let expected: Vec<u8> = row.iter().map(|&x| ((x * (1.0 / d)).round() as i8) as u8).collect();
        assert_eq!(block[2..], expected[..]);
        // Spot checks: the largest value is +127, zero is 0, the first is -12 × 0.125 / d.
        assert_eq!(block[2 + 31] as i8, 127);
        assert_eq!(block[2 + 12] as i8, 0);
        assert_eq!(block[2] as i8, -80, "-1.5 / (2.375 / 127) = -80.2");
        assert_eq!(block.len(), 34);
    }

    #[test]
    fn q8_0_round_trips_within_half_a_step() {
        let row: Vec<f32> = (0..4 * BLOCK).map(|i| ((i * 37 % 101) as f32 - 50.0) * 0.013).collect();
        let mut bytes = Vec::new();
        GgmlType::Q8_0.encode_row(&row, &mut bytes);
        assert_eq!(bytes.len(), GgmlType::Q8_0.row_bytes(row.len()));
        assert_eq!(bytes.len(), 4 * 34);
        let back = GgmlType::Q8_0.decode(&bytes);
        for (block, (orig, deq)) in row.chunks(BLOCK).zip(back.chunks(BLOCK)).enumerate() {
            let amax = orig.iter().fold(0.0f32, |m, v| m.max(v.abs()));
            // d as stored (f16), plus the f16 rounding of d scaled up to 127 steps.
            let d = f16::from_f32(amax / 127.0).to_f32();
            let tolerance = d / 2.0 + 127.0 * (d - amax / 127.0).abs() + 1e-6;
            for (x, y) in orig.iter().zip(deq) {
                assert!((x - y).abs() <= tolerance, "block {block}: {x} came back as {y} (d = {d})");
            }
        }
    }

    #[test]
    fn a_zero_block_quantizes_to_zeros() {
        let zeros = [0.0f32; BLOCK];
        assert_eq!(q8_0_block(&zeros), [0u8; Q8_0_BLOCK_BYTES]);
        assert!(dequantize_q8_0(&q8_0_block(&zeros)).all(|x| x == 0.0));
        assert_eq!(q5_1_block(&zeros), [0u8; Q5_1_BLOCK_BYTES]);
        // A constant block: d = 0, everything at the minimum.
        let sevens = [7.0f32; BLOCK];
        assert!(dequantize_q5_1(&q5_1_block(&sevens)).all(|x| x == 7.0));
    }

    #[test]
    fn q5_1_round_trips_within_half_a_step() {
        let row = known_row();
        let block = q5_1_block(&row);
        // min -1.5, max 2.375: d = 3.875 / 31 = 0.125, every value on a level.
        assert_eq!(block[..2], f16::from_f32(0.125).to_le_bytes());
        assert_eq!(block[2..4], f16::from_f32(-1.5).to_le_bytes());
        // Levels are 0..=31 in order: the upper half (16..=31) all have bit 4 set.
        assert_eq!(u32::from_le_bytes([block[4], block[5], block[6], block[7]]), 0xffff_0000);
        assert_eq!(block[8], 0x00, "levels 0 and 16: low nibbles 0 and 0");
        assert_eq!(block[9], 0x11, "levels 1 and 17");
        assert_eq!(dequantize_q5_1(&block).collect::<Vec<_>>(), row, "exact: every value is on a level");

        let row: Vec<f32> = (0..BLOCK).map(|i| ((i * 29 % 31) as f32 - 9.3) * 0.071).collect();
        let (min, max) = row.iter().fold((f32::MAX, f32::MIN), |(a, b), &v| (a.min(v), b.max(v)));
        let step = (max - min) / 31.0;
        for (x, y) in row.iter().zip(dequantize_q5_1(&q5_1_block(&row))) {
            // Half a step, plus the f16 rounding of d (times 31 levels) and of m.
            assert!((x - y).abs() <= step / 2.0 + 31.0 * step * 1e-3 + min.abs() * 1e-3, "{x} came back as {y}");
        }
    }

    #[test]
    fn header_ftypes_and_type_ids_are_ggmls() {
        assert_eq!(WeightType::F16.header_ftype(), 1);
        assert_eq!(WeightType::Q8_0.header_ftype(), 2007);
        assert_eq!(WeightType::Q5_1.header_ftype(), 2009);
        assert_eq!((GgmlType::F32.id(), GgmlType::F16.id(), GgmlType::Q5_1.id(), GgmlType::Q8_0.id()), (0, 1, 7, 8));
        assert_eq!(GgmlType::from_id(8), Some(GgmlType::Q8_0));
        assert_eq!("q8_0".parse::<WeightType>(), Ok(WeightType::Q8_0));
        assert_eq!(WeightType::default(), WeightType::F16);
        assert!("q4_0".parse::<WeightType>().unwrap_err().contains("f16, q8_0, q5_1"));
        assert_eq!(GgmlType::Q8_0.row_bytes(384), 12 * 34);
        assert_eq!(GgmlType::Q5_1.row_bytes(384), 12 * 24);
    }
}
