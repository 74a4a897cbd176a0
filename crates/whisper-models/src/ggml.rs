//! Converts a faster-whisper (CTranslate2) Whisper model directory into whisper.cpp's ggml
//! model file, in the layout and tensor order whisper.cpp's `convert-pt-to-ggml.py` writes. The
//! only expected difference from that script's output is the mel filter bank, computed here as
//! librosa does (openai-whisper's `mel_filters.npz` agrees with it to 2e-9).
//!
//! Output layout (little endian, `i32` everywhere):
//!
//! ```text
//! magic 0x67676d6c | 11 hparams | n_mels, n_bins, n_mels × n_bins f32 mel filters
//! n_tokens, n_tokens × { len, bytes }            regular tokens, before <|endoftext|>
//! per tensor: n_dims, name_len, ggml type (0 f32, 1 f16, 7 q5_1, 8 q8_0), dims innermost first, name, data
//! ```
//!
//! The 2-D weight matrices are f16 by default, or quantized ([`WeightType`]) as whisper.cpp's
//! `quantize` tool would quantize that f16 file: the same tensors, the same bytes (see [`crate::quant`]).
//!
//! Tensors follow openai-whisper's `state_dict` order. CTranslate2 fuses the self-attention
//! q/k/v projections and the cross-attention k/v projections: they are split by rows here, and
//! the key bias (always zero in Whisper, absent in whisper.cpp) is checked and dropped.

use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

use crate::ct2::{self, Ct2Error, Ct2Model, DType, Variable};
use crate::mel;
pub use crate::quant::WeightType;
use crate::tensors::plan_tensors;

/// `"ggml"` read as a little-endian `u32`.
pub const GGML_MAGIC: u32 = 0x6767_6d6c;
/// Rank of `<|endoftext|>` in the English-only vocabulary (one more in multilingual ones);
/// whisper.cpp derives every special token id from it.
pub const EOT_ENGLISH: usize = 50_256;
/// whisper.cpp treats a model as multilingual from this vocabulary size on.
pub const MULTILINGUAL_MIN_VOCAB: usize = 51_865;

const ENDOFTEXT: &[u8] = b"<|endoftext|>";

/// Why a model could not be converted.
#[derive(Debug, thiserror::Error)]
pub enum ConvertError {
    #[error("model directory {dir} has no {file}")]
    MissingFile { dir: PathBuf, file: &'static str },
    #[error("invalid ctranslate2 model: {0}")]
    Ct2(#[from] Ct2Error),
    #[error("not a whisper model: spec is {0:?}")]
    NotWhisper(String),
    #[error("missing tensor {0}")]
    MissingTensor(String),
    #[error("tensor {name} is {dtype}; only float32, float16 and bfloat16 models convert (not quantized ones)")]
    UnsupportedDtype { name: String, dtype: DType },
    #[error("tensor {name} has shape {found:?}, expected {expected:?}")]
    BadShape { name: String, found: Vec<usize>, expected: Vec<usize> },
    #[error("tensor {name} has shape {found:?}, expected {rank} dims")]
    BadRank { name: String, found: Vec<usize>, rank: usize },
    #[error("hparam {0} is zero")]
    ZeroHparam(&'static str),
    #[error("tensor {0} is not an integer scalar")]
    BadScalar(String),
    #[error("key bias in {0} is not zero; whisper.cpp has no key bias")]
    NonZeroKeyBias(String),
    #[error("vocabulary has {found} tokens, more than the {n_vocab} rows of the token embedding")]
    VocabTooLarge { found: usize, n_vocab: usize },
    #[error("<|endoftext|> is at index {found:?} of the vocabulary, expected index {expected}")]
    BadEndOfText { found: Option<usize>, expected: usize },
    #[error("tensor {name} has rows of {row} values, which {weights} cannot store: not a multiple of {block}")]
    RowNotBlocks { name: String, row: usize, weights: WeightType, block: usize },
    #[error("{what} is {value}, too large for the ggml header")]
    TooLarge { what: String, value: usize },
    #[error("cannot write {path}: {source}")]
    Write { path: PathBuf, source: io::Error },
    /// An output error from [`write_ggml`], before the destination is known.
    #[error("cannot write the ggml output: {0}")]
    Output(#[from] io::Error),
}

/// The eleven header integers whisper.cpp reads after the magic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hparams {
    pub n_vocab: usize,
    pub n_audio_ctx: usize,
    pub n_audio_state: usize,
    pub n_audio_head: usize,
    pub n_audio_layer: usize,
    pub n_text_ctx: usize,
    pub n_text_state: usize,
    pub n_text_head: usize,
    pub n_text_layer: usize,
    pub n_mels: usize,
    /// How the big matrices are stored ([`WeightType::header_ftype`]): 1 for f16, as
    /// whisper.cpp's converter writes by default; 2007 for q8_0, 2009 for q5_1.
    pub ftype: usize,
}

impl Hparams {
    /// Reads the hyperparameters off the tensor shapes and the `num_heads` scalars; `ftype` is
    /// f16's.
    pub fn from_model(model: &Ct2Model) -> Result<Self, ConvertError> {
        let conv1 = tensor(model, "encoder/conv1/weight")?;
        let [n_audio_state, n_mels, _] = dims::<3>(conv1)?;
        let [n_audio_ctx, _] = dims::<2>(tensor(model, "encoder/position_encodings/encodings")?)?;
        let [n_vocab, n_text_state] = dims::<2>(tensor(model, "decoder/embeddings/weight")?)?;
        let [n_text_ctx, _] = dims::<2>(tensor(model, "decoder/position_encodings/encodings")?)?;
        Self {
            n_vocab,
            n_audio_ctx,
            n_audio_state,
            n_audio_head: scalar(model, "encoder/num_heads")?,
            n_audio_layer: count_layers(model, "encoder", "self_attention")?,
            n_text_ctx,
            n_text_state,
            n_text_head: scalar(model, "decoder/num_heads")?,
            n_text_layer: count_layers(model, "decoder", "self_attention")?,
            n_mels,
            ftype: 1,
        }
        .non_zero()
    }

    const NAMES: [&'static str; 11] = [
        "n_vocab",
        "n_audio_ctx",
        "n_audio_state",
        "n_audio_head",
        "n_audio_layer",
        "n_text_ctx",
        "n_text_state",
        "n_text_head",
        "n_text_layer",
        "n_mels",
        "ftype",
    ];

    fn non_zero(self) -> Result<Self, ConvertError> {
        match Self::NAMES.iter().zip(self.as_array()).find(|(_, v)| *v == 0) {
            Some((name, _)) => Err(ConvertError::ZeroHparam(name)),
            None => Ok(self),
        }
    }

    pub fn is_multilingual(&self) -> bool {
        self.n_vocab >= MULTILINGUAL_MIN_VOCAB
    }

    /// whisper.cpp's model size name for this encoder depth.
    pub fn model_type(&self) -> &'static str {
        match self.n_audio_layer {
            4 => "tiny",
            6 => "base",
            12 => "small",
            24 => "medium",
            32 => "large",
            _ => "unknown",
        }
    }

    fn as_array(&self) -> [usize; 11] {
        [
            self.n_vocab,
            self.n_audio_ctx,
            self.n_audio_state,
            self.n_audio_head,
            self.n_audio_layer,
            self.n_text_ctx,
            self.n_text_state,
            self.n_text_head,
            self.n_text_layer,
            self.n_mels,
            self.ftype,
        ]
    }
}

/// What a conversion produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportReport {
    /// Vocabulary size in the header (token embedding rows).
    pub n_vocab: usize,
    /// Regular tokens written to the file; whisper.cpp adds the special ones itself.
    pub n_tokens: usize,
    pub n_tensors: usize,
    /// How the 2-D weight matrices are stored.
    pub weights: WeightType,
    /// Tensors written in a quantized type (0 for f16).
    pub n_quantized: usize,
    pub bytes_written: u64,
    /// `"tiny"`, `"base"`, `"small"`, `"medium"`, `"large"` or `"unknown"`.
    pub model_type: &'static str,
    pub multilingual: bool,
    pub hparams: Hparams,
}

/// Converts the CTranslate2 model in `model_dir` (`model.bin`, `vocabulary.txt`) to a ggml file
/// at `out`, its 2-D weight matrices stored as `weights`. The file is written next to `out` under
/// a temporary name and renamed into place once complete, so a failed conversion leaves no
/// partial file.
pub fn import_ct2(model_dir: &Path, out: &Path, weights: WeightType) -> Result<ImportReport, ConvertError> {
    let model_path = existing_file(model_dir, "model.bin")?;
    let vocab_path = existing_file(model_dir, "vocabulary.txt")?;
    let model = Ct2Model::open(&model_path)?;
    let tokens = ct2::read_vocabulary(&vocab_path)?;

    let write_err = |source| ConvertError::Write { path: out.to_path_buf(), source };
    let dir = match out.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let mut tmp =
        tempfile::Builder::new().prefix(".ggml-import-").suffix(".tmp").tempfile_in(dir).map_err(write_err)?;
    let mut writer = BufWriter::with_capacity(1 << 20, tmp.as_file_mut());
    let report = write_ggml(&model, &tokens, weights, &mut writer).map_err(|e| match e {
        ConvertError::Output(source) => write_err(source),
        other => other,
    })?;
    writer.flush().map_err(write_err)?;
    drop(writer);
    // tempfile creates 0600 files; a model is no secret.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::Permissions::from_mode(0o644);
        tmp.as_file().set_permissions(mode).map_err(write_err)?;
    }
    tmp.as_file().sync_all().map_err(write_err)?;
    tmp.persist(out).map_err(|e| write_err(e.error))?;
    Ok(report)
}

fn existing_file(dir: &Path, file: &'static str) -> Result<PathBuf, ConvertError> {
    let path = dir.join(file);
    if path.is_file() { Ok(path) } else { Err(ConvertError::MissingFile { dir: dir.to_path_buf(), file }) }
}

/// Writes the ggml form of `model` with the decoded `vocabulary.txt` tokens to `w`, its 2-D
/// weight matrices stored as `weights`. Everything is validated before the first byte is written.
pub fn write_ggml<W: Write>(
    model: &Ct2Model,
    tokens: &[Vec<u8>],
    weights: WeightType,
    w: W,
) -> Result<ImportReport, ConvertError> {
    if !model.spec_name.starts_with("Whisper") {
        return Err(ConvertError::NotWhisper(model.spec_name.clone()));
    }
    let hp = Hparams { ftype: weights.header_ftype(), ..Hparams::from_model(model)? };
    let regular = regular_tokens(tokens, &hp)?;
    let plan = plan_tensors(model, &hp, weights)?;
    let filters = mel::mel_filters(mel::SAMPLE_RATE, mel::N_FFT, hp.n_mels);

    let mut w = Counting { inner: w, count: 0 };
    w.i32(GGML_MAGIC as i32)?;
    for (i, value) in hp.as_array().into_iter().enumerate() {
        w.i32(to_i32(value, || Hparams::NAMES[i].to_owned())?)?;
    }

    w.i32(to_i32(hp.n_mels, || "n_mels".into())?)?;
    w.i32(to_i32(mel::n_bins(mel::N_FFT), || "n_bins".into())?)?;
    for x in &filters {
        w.write_all(&x.to_le_bytes())?;
    }

    w.i32(to_i32(regular.len(), || "token count".into())?)?;
    for token in regular {
        w.i32(to_i32(token.len(), || "token length".into())?)?;
        w.write_all(token)?;
    }

    for t in &plan {
        t.write(&mut w)?;
    }
    w.flush()?;

    Ok(ImportReport {
        n_vocab: hp.n_vocab,
        n_tokens: regular.len(),
        n_tensors: plan.len(),
        weights,
        n_quantized: plan.iter().filter(|t| t.out_type().is_quantized()).count(),
        bytes_written: w.count,
        model_type: hp.model_type(),
        multilingual: hp.is_multilingual(),
        hparams: hp,
    })
}

/// The tokens before `<|endoftext|>`, which must sit where whisper.cpp expects it.
fn regular_tokens<'t>(tokens: &'t [Vec<u8>], hp: &Hparams) -> Result<&'t [Vec<u8>], ConvertError> {
    if tokens.len() > hp.n_vocab {
        return Err(ConvertError::VocabTooLarge { found: tokens.len(), n_vocab: hp.n_vocab });
    }
    let expected = EOT_ENGLISH + usize::from(hp.is_multilingual());
    match tokens.iter().position(|t| t == ENDOFTEXT) {
        Some(i) if i == expected => Ok(&tokens[..i]),
        found => Err(ConvertError::BadEndOfText { found, expected }),
    }
}

pub(crate) fn to_i32(value: usize, what: impl FnOnce() -> String) -> Result<i32, ConvertError> {
    i32::try_from(value).map_err(|_| ConvertError::TooLarge { what: what(), value })
}

pub(crate) fn tensor<'m>(model: &'m Ct2Model, name: &str) -> Result<&'m Variable, ConvertError> {
    model.get(name).ok_or_else(|| ConvertError::MissingTensor(name.to_owned()))
}

pub(crate) fn dims<const N: usize>(v: &Variable) -> Result<[usize; N], ConvertError> {
    <[usize; N]>::try_from(v.dims.as_slice()).map_err(|_| ConvertError::BadRank {
        name: v.name.clone(),
        found: v.dims.clone(),
        rank: N,
    })
}

pub(crate) fn scalar(model: &Ct2Model, name: &str) -> Result<usize, ConvertError> {
    tensor(model, name)?
        .scalar_i64()
        .and_then(|x| usize::try_from(x).ok())
        .ok_or_else(|| ConvertError::BadScalar(name.to_owned()))
}

pub(crate) fn count_layers(model: &Ct2Model, side: &str, probe: &str) -> Result<usize, ConvertError> {
    let name = |i: usize| format!("{side}/layer_{i}/{probe}/linear_0/weight");
    let n = (0..).take_while(|&i| model.get(&name(i)).is_some()).count();
    if n == 0 { Err(ConvertError::MissingTensor(name(0))) } else { Ok(n) }
}

/// A writer that counts the bytes that went through it.
pub(crate) struct Counting<W> {
    inner: W,
    count: u64,
}

impl<W: Write> Counting<W> {
    pub(crate) fn i32(&mut self, value: i32) -> io::Result<()> {
        self.write_all(&value.to_le_bytes())
    }
}

impl<W: Write> Write for Counting<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.count += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::quant::GgmlType;
    use ct2::Variable;

    fn f16_bytes(values: impl IntoIterator<Item = f32>) -> Vec<u8> {
        values.into_iter().flat_map(|x| half::f16::from_f32(x).to_le_bytes()).collect()
    }

    /// A small but complete Whisper model in CTranslate2 form: `layers` layers of width `n`.
    fn synthetic_model(n: usize, layers: usize, n_vocab: usize) -> Ct2Model {
        let mut m = Ct2Model::new("WhisperSpec", 3);
        let mut counter = 0.0f32;
        let mut add = |m: &mut Ct2Model, name: &str, dims: Vec<usize>| {
            let len: usize = dims.iter().product();
            let values = (0..len).map(|_| {
                counter = (counter + 0.25) % 8.0;
                counter
            });
            m.push_variable(Variable { name: name.into(), dims, dtype: DType::F16, data: f16_bytes(values) })
                .expect("unique");
        };
        let fused_bias = |parts: usize, key: usize| {
            let values = (0..parts * n).map(move |i| if i / n == key { 0.0 } else { 1.0 });
            f16_bytes(values)
        };
        let n_mels = 80;
        add(&mut m, "encoder/conv1/weight", vec![n, n_mels, 3]);
        add(&mut m, "encoder/conv1/bias", vec![n]);
        add(&mut m, "encoder/conv2/weight", vec![n, n, 3]);
        add(&mut m, "encoder/conv2/bias", vec![n]);
        add(&mut m, "encoder/position_encodings/encodings", vec![6, n]);
        add(&mut m, "decoder/position_encodings/encodings", vec![5, n]);
        add(&mut m, "decoder/embeddings/weight", vec![n_vocab, n]);
        for side in ["encoder", "decoder"] {
            let mut blocks = vec!["self_attention"];
            if side == "decoder" {
                blocks.push("attention");
            }
            for i in 0..layers {
                let l = format!("{side}/layer_{i}");
                for b in &blocks {
                    add(&mut m, &format!("{l}/{b}/layer_norm/gamma"), vec![n]);
                    add(&mut m, &format!("{l}/{b}/layer_norm/beta"), vec![n]);
                }
                add(&mut m, &format!("{l}/self_attention/linear_0/weight"), vec![3 * n, n]);
                m.push_variable(Variable {
                    name: format!("{l}/self_attention/linear_0/bias"),
                    dims: vec![3 * n],
                    dtype: DType::F16,
                    data: fused_bias(3, 1),
                })
                .expect("unique");
                add(&mut m, &format!("{l}/self_attention/linear_1/weight"), vec![n, n]);
                add(&mut m, &format!("{l}/self_attention/linear_1/bias"), vec![n]);
                if side == "decoder" {
                    add(&mut m, &format!("{l}/attention/linear_0/weight"), vec![n, n]);
                    add(&mut m, &format!("{l}/attention/linear_0/bias"), vec![n]);
                    add(&mut m, &format!("{l}/attention/linear_1/weight"), vec![2 * n, n]);
                    m.push_variable(Variable {
                        name: format!("{l}/attention/linear_1/bias"),
                        dims: vec![2 * n],
                        dtype: DType::F16,
                        data: fused_bias(2, 0),
                    })
                    .expect("unique");
                    add(&mut m, &format!("{l}/attention/linear_2/weight"), vec![n, n]);
                    add(&mut m, &format!("{l}/attention/linear_2/bias"), vec![n]);
                }
                add(&mut m, &format!("{l}/ffn/layer_norm/gamma"), vec![n]);
                add(&mut m, &format!("{l}/ffn/layer_norm/beta"), vec![n]);
                add(&mut m, &format!("{l}/ffn/linear_0/weight"), vec![4 * n, n]);
                add(&mut m, &format!("{l}/ffn/linear_0/bias"), vec![4 * n]);
                add(&mut m, &format!("{l}/ffn/linear_1/weight"), vec![n, 4 * n]);
                add(&mut m, &format!("{l}/ffn/linear_1/bias"), vec![n]);
            }
            add(&mut m, &format!("{side}/layer_norm/gamma"), vec![n]);
            add(&mut m, &format!("{side}/layer_norm/beta"), vec![n]);
        }
        for (name, heads) in [("encoder/num_heads", 2i16), ("decoder/num_heads", 2)] {
            m.push_variable(Variable {
                name: name.into(),
                dims: vec![],
                dtype: DType::I16,
                data: heads.to_le_bytes().to_vec(),
            })
            .expect("unique");
        }
        m.push_alias("decoder/projection/weight", "decoder/embeddings/weight").expect("target exists");
        m
    }

    /// An English-only vocabulary: dummy regular tokens, then `<|endoftext|>` and specials.
    fn english_vocab(n_vocab: usize) -> Vec<Vec<u8>> {
        let mut tokens: Vec<Vec<u8>> = (0..EOT_ENGLISH).map(|i| format!("t{i}").into_bytes()).collect();
        tokens.push(ENDOFTEXT.to_vec());
        while tokens.len() < n_vocab {
            tokens.push(format!("<|s{}|>", tokens.len()).into_bytes());
        }
        tokens
    }

    /// Minimal reader of the ggml header and tensor table, for checking the writer.
    struct Parsed {
        hparams: Vec<i32>,
        mel: (i32, i32, Vec<f32>),
        tokens: Vec<Vec<u8>>,
        tensors: Vec<(String, i32, Vec<i32>, Vec<u8>)>,
    }

    struct Cursor<'a>(&'a [u8]);

    impl<'a> Cursor<'a> {
        fn take(&mut self, n: usize) -> &'a [u8] {
            let (head, tail) = self.0.split_at(n);
            self.0 = tail;
            head
        }

        fn i32(&mut self) -> i32 {
            i32::from_le_bytes(self.take(4).try_into().expect("4 bytes"))
        }
    }

    fn parse_ggml(bytes: &[u8]) -> Parsed {
        let mut c = Cursor(bytes);
        assert_eq!(c.i32() as u32, GGML_MAGIC);
        let hparams: Vec<i32> = (0..11).map(|_| c.i32()).collect();
        let (rows, cols) = (c.i32(), c.i32());
        let mel = (0..rows * cols).map(|_| f32::from_le_bytes(c.take(4).try_into().expect("4 bytes"))).collect();
        let n_tokens = c.i32();
        let tokens = (0..n_tokens)
            .map(|_| {
                let len = c.i32() as usize;
                c.take(len).to_vec()
            })
            .collect();
        let mut tensors = Vec::new();
        while !c.0.is_empty() {
            let (n_dims, name_len, ftype) = (c.i32(), c.i32(), c.i32());
            let dims: Vec<i32> = (0..n_dims).map(|_| c.i32()).collect();
            let name = String::from_utf8(c.take(name_len as usize).to_vec()).expect("utf-8");
            let elems: i32 = dims.iter().product();
            let ty = GgmlType::from_id(ftype).unwrap_or_else(|| panic!("{name}: unknown type {ftype}"));
            let data = c.take(ty.row_bytes(elems as usize)).to_vec();
            tensors.push((name, ftype, dims, data));
        }
        Parsed { hparams, mel: (rows, cols, mel), tokens, tensors }
    }

    #[test]
    fn writes_a_synthetic_model_in_whisper_cpp_layout() {
        let (n, layers, n_vocab) = (8, 1, 51_864);
        let model = synthetic_model(n, layers, n_vocab);
        let mut out = Vec::new();
        let report = write_ggml(&model, &english_vocab(n_vocab), WeightType::F16, &mut out).expect("converts");
        assert_eq!(report.bytes_written, out.len() as u64);
        assert_eq!((report.n_vocab, report.n_tokens), (n_vocab, EOT_ENGLISH));
        assert_eq!(report.model_type, "unknown");
        assert!(!report.multilingual);
        // encoder 5 + 15 per layer + 2, decoder 2 + 24 per layer + 2
        assert_eq!(report.n_tensors, 5 + 15 * layers + 2 + 2 + 24 * layers + 2);

        let parsed = parse_ggml(&out);
        assert_eq!(parsed.hparams, vec![n_vocab as i32, 6, 8, 2, 1, 5, 8, 2, 1, 80, 1]);
        assert_eq!((parsed.mel.0, parsed.mel.1), (80, 201));
        assert_eq!(parsed.mel.2, mel::mel_filters(16_000, 400, 80));
        assert_eq!(parsed.tokens.len(), EOT_ENGLISH);
        assert_eq!(parsed.tokens[7], b"t7");
        assert_eq!(parsed.tensors.len(), report.n_tensors);

        let find = |name: &str| parsed.tensors.iter().find(|t| t.0 == name).unwrap_or_else(|| panic!("{name} written"));
        let conv_bias = find("encoder.conv1.bias");
        assert_eq!((conv_bias.1, conv_bias.2.clone()), (0, vec![1, 8]));
        let pos = find("decoder.positional_embedding");
        assert_eq!((pos.1, pos.2.clone()), (0, vec![8, 5]));
        let conv1 = find("encoder.conv1.weight");
        assert_eq!((conv1.1, conv1.2.clone()), (1, vec![3, 80, 8]));
        assert_eq!(find("encoder.blocks.0.mlp_ln.bias").1, 0);
        assert!(parsed.tensors.iter().all(|t| !t.0.ends_with("key.bias")));

        // The value projection is the last third of the fused rows, f16 kept as is.
        let fused = model.get("decoder/layer_0/self_attention/linear_0/weight").expect("present");
        let value = find("decoder.blocks.0.attn.value.weight");
        assert_eq!((value.1, value.2.clone()), (1, vec![8, 8]));
        assert_eq!(value.3, fused.data[2 * 8 * 8 * 2..]);
        let value_bias = find("decoder.blocks.0.cross_attn.value.bias");
        assert_eq!(ct2::decode_f32(DType::F32, &value_bias.3), Some(vec![1.0; 8]));
        // f16 → f32 widening of the positional embedding is exact.
        let src = model.get("decoder/position_encodings/encodings").and_then(Variable::to_f32_vec).expect("f16");
        assert_eq!(ct2::decode_f32(DType::F32, &pos.3), Some(src));
    }

    #[test]
    fn rejects_a_non_zero_key_bias_and_leaves_no_file() {
        let mut model = synthetic_model(4, 1, 51_864);
        let name = "encoder/layer_0/self_attention/linear_0/bias";
        let mut rebuilt = Ct2Model::new("WhisperSpec", 3);
        for v in model.variables() {
            let mut v = v.clone();
            if v.name == name {
                v.data = f16_bytes([0.5; 12]);
            }
            rebuilt.push_variable(v).expect("unique");
        }
        model = rebuilt;

        let dir = tempfile::tempdir().expect("tempdir");
        let mut bin = Vec::new();
        model.write_to(&mut bin).expect("serialises");
        std::fs::write(dir.path().join("model.bin"), bin).expect("write model");
        let vocab: String = english_vocab(51_864)
            .iter()
            .map(|t| {
                let mut s: String = t.iter().map(|&b| ct2::byte_to_unicode(b)).collect();
                s.push('\n');
                s
            })
            .collect();
        std::fs::write(dir.path().join("vocabulary.txt"), vocab).expect("write vocab");

        let out = dir.path().join("ggml.bin");
        let err = import_ct2(dir.path(), &out, WeightType::F16).expect_err("non-zero key bias");
        assert!(matches!(&err, ConvertError::NonZeroKeyBias(n) if n == name), "{err}");
        assert_eq!(err.to_string(), format!("key bias in {name} is not zero; whisper.cpp has no key bias"));
        let entries: Vec<_> =
            std::fs::read_dir(dir.path()).expect("list").map(|e| e.expect("entry").file_name()).collect();
        assert_eq!(entries.len(), 2, "only the inputs remain: {entries:?}");
    }

    #[test]
    fn reports_missing_files_and_tensors() {
        let dir = tempfile::tempdir().expect("tempdir");
        let err = import_ct2(dir.path(), &dir.path().join("x.bin"), WeightType::F16).expect_err("empty dir");
        assert!(matches!(err, ConvertError::MissingFile { file: "model.bin", .. }));

        let mut model = Ct2Model::new("WhisperSpec", 3);
        for v in synthetic_model(4, 1, 51_864).variables() {
            if v.name != "decoder/layer_0/attention/linear_2/weight" {
                model.push_variable(v.clone()).expect("unique");
            }
        }
        let err = write_ggml(&model, &english_vocab(51_864), WeightType::F16, io::sink()).expect_err("missing");
        assert_eq!(err.to_string(), "missing tensor decoder/layer_0/attention/linear_2/weight");

        let err = write_ggml(&Ct2Model::new("TransformerSpec", 1), &[], WeightType::F16, io::sink())
            .expect_err("not whisper");
        assert!(matches!(err, ConvertError::NotWhisper(_)));
    }

    #[test]
    fn checks_end_of_text_position() {
        let model = synthetic_model(4, 1, 51_864);
        let mut vocab = english_vocab(51_864);
        vocab.remove(0);
        let err = write_ggml(&model, &vocab, WeightType::F16, io::sink()).expect_err("eot moved");
        assert!(matches!(err, ConvertError::BadEndOfText { found: Some(50_255), expected: 50_256 }));
    }

    /// The 2-D matrices whisper.cpp's quantize tool quantizes, for one layer of each side.
    fn matrices_of_one_layer() -> Vec<String> {
        let mut names = vec!["decoder.token_embedding.weight".to_owned()];
        for (side, attentions) in [("encoder", &["attn"][..]), ("decoder", &["attn", "cross_attn"][..])] {
            for attn in attentions {
                for proj in ["query", "key", "value", "out"] {
                    names.push(format!("{side}.blocks.0.{attn}.{proj}.weight"));
                }
            }
            names.push(format!("{side}.blocks.0.mlp.0.weight"));
            names.push(format!("{side}.blocks.0.mlp.2.weight"));
        }
        names.sort();
        names
    }

    #[test]
    fn quantizes_the_matrices_whisper_cpp_quantizes_and_keeps_the_rest() {
        let (n, n_vocab) = (32, 51_864);
        let model = synthetic_model(n, 1, n_vocab);
        let vocab = english_vocab(n_vocab);
        let mut f16_file = Vec::new();
        write_ggml(&model, &vocab, WeightType::F16, &mut f16_file).expect("converts");
        let f16_tensors = parse_ggml(&f16_file).tensors;

        for (weights, ftype) in [(WeightType::Q8_0, 2007), (WeightType::Q5_1, 2009)] {
            let mut out = Vec::new();
            let report = write_ggml(&model, &vocab, weights, &mut out).expect("converts");
            assert_eq!((report.weights, report.n_quantized, report.bytes_written), (weights, 17, out.len() as u64));
            let parsed = parse_ggml(&out);
            assert_eq!(parsed.hparams[10], ftype, "{weights}");
            assert_eq!(parsed.hparams[..10], parse_ggml(&f16_file).hparams[..10]);

            let of_type = |ty: GgmlType| -> Vec<String> {
                let mut names: Vec<String> =
                    parsed.tensors.iter().filter(|t| t.1 == ty.id()).map(|t| t.0.clone()).collect();
                names.sort();
                names
            };
            assert_eq!(of_type(weights.matrix_type()), matrices_of_one_layer(), "{weights}");
            assert_eq!(of_type(GgmlType::F16), ["encoder.conv1.weight", "encoder.conv2.weight"], "{weights}");
            // Everything else keeps the f16 file's f32: 1-D tensors, conv biases, positional embeddings.
            let f32s = of_type(GgmlType::F32);
            assert_eq!(f32s.len(), parsed.tensors.len() - 17 - 2);
            for name in ["encoder.conv1.bias", "encoder.positional_embedding", "decoder.positional_embedding"] {
                assert!(f32s.iter().any(|n| n == name), "{name} stays f32");
            }
            // Same tensors, order and dims as the f16 file; f32 tensors byte for byte.
            for (q, f) in parsed.tensors.iter().zip(&f16_tensors) {
                assert_eq!((&q.0, &q.2), (&f.0, &f.2));
                if q.1 == 0 {
                    assert_eq!(q.3, f.3, "{}", q.0);
                }
            }
            assert_eq!(parsed.tensors.len(), f16_tensors.len());

            // A quantized matrix: each row of the source quantized along its n values.
            let value = parsed.tensors.iter().find(|t| t.0 == "decoder.blocks.0.attn.value.weight").expect("written");
            let fused = model.get("decoder/layer_0/self_attention/linear_0/weight").expect("present");
            let source = ct2::decode_f32(DType::F16, &fused.data[2 * n * n * 2..]).expect("f16");
            let mut expected = Vec::new();
            for row in source.chunks(n) {
                weights.matrix_type().encode_row(row, &mut expected);
            }
            assert_eq!(value.3, expected);
            let back = weights.matrix_type().decode(&value.3);
            let worst = source.iter().zip(&back).map(|(a, b)| (a - b).abs()).fold(0.0, f32::max);
            assert!(worst <= 8.0 / 31.0 / 2.0 + 0.01, "{weights}: off by {worst}");

            // The file shrinks by exactly the quantized elements' f16 bytes less their blocks.
            let elems: usize = parsed
                .tensors
                .iter()
                .filter(|t| t.1 == weights.matrix_type().id())
                .map(|t| t.2.iter().product::<i32>() as usize)
                .sum();
            assert_eq!(out.len(), f16_file.len() - 2 * elems + weights.matrix_type().row_bytes(elems));
        }
    }

    #[test]
    fn refuses_to_quantize_rows_that_are_not_whole_blocks() {
        let model = synthetic_model(8, 1, 51_864);
        let err = write_ggml(&model, &english_vocab(51_864), WeightType::Q8_0, io::sink()).expect_err("8-wide rows");
        assert!(
            matches!(&err, ConvertError::RowNotBlocks { name, row: 8, block: 32, weights: WeightType::Q8_0 }
                if name == "encoder.blocks.0.attn.query.weight"),
            "{err}"
        );
        assert_eq!(
            err.to_string(),
            "tensor encoder.blocks.0.attn.query.weight has rows of 8 values, which q8_0 cannot store: not a multiple of 32"
        );
    }

    /// The faster-whisper tiny.en directory `CT2_MODEL_DIR` names, if set (the tests on it skip
    /// otherwise).
    fn real_model_dir() -> Option<std::ffi::OsString> {
        let dir = std::env::var_os("CT2_MODEL_DIR");
        if dir.is_none() {
            eprintln!("skipping: CT2_MODEL_DIR is not set");
        }
        dir
    }

    /// Converts the real model when `CT2_MODEL_DIR` points at faster-whisper tiny.en.
    #[test]
    fn converts_real_tiny_en_when_available() {
        let Some(dir) = real_model_dir() else { return };
        let out_dir = tempfile::tempdir().expect("tempdir");
        let out = out_dir.path().join("ggml-tiny.en.bin");
        let report = import_ct2(Path::new(&dir), &out, WeightType::F16).expect("converts");
        assert_eq!(report.n_tensors, 167);
        assert_eq!(report.n_vocab, 51_864);
        assert_eq!(report.n_tokens, 50_256);
        assert_eq!(report.model_type, "tiny");
        assert!(!report.multilingual);
        assert_eq!(report.bytes_written, 77_704_698);
        assert_eq!(std::fs::metadata(&out).expect("written").len(), 77_704_698);
    }

    /// The real tiny.en in q8_0 when `CT2_MODEL_DIR` is set: the size the layout predicts.
    #[test]
    fn converts_real_tiny_en_to_q8_0_when_available() {
        let Some(dir) = real_model_dir() else { return };
        let out_dir = tempfile::tempdir().expect("tempdir");
        let out = out_dir.path().join("ggml-tiny.en-q8_0.bin");
        let report = import_ct2(Path::new(&dir), &out, WeightType::Q8_0).expect("converts");
        let hp = report.hparams;
        assert_eq!((report.n_tensors, report.n_quantized, hp.ftype), (167, 65, 2007));
        // The f16 file's size, less 2 bytes an element of every 2-D matrix, plus 34 per 32 of them:
        // self-attention (4 n²) and MLP (8 n²) per encoder layer, those and cross-attention (4 n²)
        // per decoder layer, and the token embedding.
        let matrices = hp.n_audio_layer * 12 * hp.n_audio_state.pow(2)
            + hp.n_text_layer * 16 * hp.n_text_state.pow(2)
            + hp.n_vocab * hp.n_text_state;
        let predicted = 77_704_698 - 2 * matrices + matrices / 32 * 34;
        assert_eq!(predicted, 43_550_778);
        assert_eq!(report.bytes_written, predicted as u64);
        assert_eq!(std::fs::metadata(&out).expect("written").len(), predicted as u64);
        let bytes = std::fs::read(&out).expect("read back");
        assert_eq!(parse_ggml(&bytes).hparams[10], 2007);
    }
}
